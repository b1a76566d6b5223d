"""The run page's live state, one typed object: what is drawn, so that a tick knows what to append.

It travels between ticks in a `dcc.Store` as JSON (`to_json` / `from_json`); only `dashboard.live`
changes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .dominance_live import DominanceBuffers
from .progress import Progress
from .smoothing import EmaState


@dataclass(frozen=True)
class View:
    smoothing: float = 0.0
    x_mode: str = "step"
    log_y: bool = False

    @classmethod
    def from_controls(cls, smoothing: float | None, x_mode: str | None, log_y: list[str] | None) -> View:
        return cls(float(smoothing or 0.0), x_mode or "step", "log" in (log_y or []))


@dataclass
class CoefState:
    stats: dict[str, int] = field(default_factory=lambda: {"total": 0, "blowups": 0, "negatives": 0, "nonfinite": 0})
    range: tuple[float, float] = (0.0, 0.0)  # finite values seen, always including 0


@dataclass
class LiveState:
    view: View
    t0: float | None
    plans: dict[str, list[list[str]]]  # per panel, trace order: [[key, "raw"|"smooth"], ...]
    last: dict[str, int] = field(default_factory=dict)  # last step drawn per key
    ema: dict[str, EmaState] = field(default_factory=dict)  # per smoothed key, to continue its curve
    coef: CoefState = field(default_factory=CoefState)
    dom: DominanceBuffers = field(default_factory=DominanceBuffers)
    progress: Progress = field(default_factory=Progress)
    events_after: int = 0
    log: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "view": {"smoothing": self.view.smoothing, "x_mode": self.view.x_mode, "log_y": self.view.log_y},
            "t0": self.t0,
            "plans": self.plans,
            "last": self.last,
            "ema": {k: [e.last, e.count] for k, e in self.ema.items()},
            "coef": {"stats": self.coef.stats, "range": list(self.coef.range)},
            "dom": self.dom.to_json(),
            "progress": vars(self.progress),
            "events_after": self.events_after,
            "log": self.log,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> LiveState:
        return cls(
            view=View(**doc["view"]),
            t0=doc["t0"],
            plans={pid: [list(p) for p in plan] for pid, plan in doc["plans"].items()},
            last=dict(doc["last"]),
            ema={k: EmaState(v[0], v[1]) for k, v in doc["ema"].items()},
            coef=CoefState(dict(doc["coef"]["stats"]), (doc["coef"]["range"][0], doc["coef"]["range"][1])),
            dom=DominanceBuffers.from_json(doc["dom"]),
            progress=Progress(**doc["progress"]),
            events_after=int(doc["events_after"]),
            log=list(doc["log"]),
        )
