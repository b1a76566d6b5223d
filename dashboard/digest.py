"""A run's exact statistics at full resolution: B blow-ups and negatives, who led and how often.

The charts draw downsampled series (min-max buckets keep extremes, so counting blow-ups on them
would overstate their share); these numbers come from every stored point instead. A digest is
built once per run with one read per key, kept per run in this process, and brought up to date
by reading only the points after its last step. Finished runs never change, so their digest is
final.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .decode import Series
from .dominance import DominanceTally

DOMINANCE_METRICS = ("acc", "grad_norm")  # the probe's per-modality families the strip judges
COEF_PREFIX = "coef"
# Where a coefficient is a blow-up worth flagging (DESIGN §4: |B| ~ 1e7 when S = 0).
COEF_BLOWUP = 100.0
FULL_READ_TIMEOUT_S = 120.0


class MetricsReader(Protocol):
    def metrics(
        self,
        run_id: int,
        keys: Iterable[str] | None = ...,
        since_step: int | None = ...,
        max_points: int | None = ...,
        timeout_s: float | None = ...,
    ) -> dict[str, Series]: ...


@dataclass
class CoefStats:
    total: int = 0
    blowups: int = 0
    negatives: int = 0
    nonfinite: int = 0

    def fold(self, values: Iterable[float]) -> None:
        for v in values:
            self.total += 1
            if not math.isfinite(v):
                self.nonfinite += 1
                continue
            self.blowups += abs(v) > COEF_BLOWUP
            self.negatives += v < 0

    def describe(self) -> str:
        n = max(self.total, 1)
        return (
            f"|B|>{COEF_BLOWUP:g}: {self.blowups} ({self.blowups / n:.1%}), "
            f"B<0: {self.negatives} ({self.negatives / n:.1%}), non-finite: {self.nonfinite} "
            f"of {self.total:,} (every stored point)"
        )


@dataclass
class RunDigest:
    run_id: int
    last: dict[str, int] = field(default_factory=dict)  # last step folded in, per key
    coef: CoefStats = field(default_factory=CoefStats)
    dominance: dict[str, DominanceTally] = field(
        default_factory=lambda: {m: DominanceTally(m) for m in DOMINANCE_METRICS}
    )
    coef_min: float = math.inf
    coef_max: float = -math.inf
    final: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @staticmethod
    def wanted(keys: Iterable[str]) -> list[str]:
        out = []
        for k in keys:
            head, sep, rest = k.partition("/")
            if sep and "/" not in rest and (head in DOMINANCE_METRICS or head == COEF_PREFIX):
                out.append(k)
        return sorted(out)

    def refresh(self, client: MetricsReader, keys: Iterable[str], finished: bool) -> bool:
        """Read what is new since the last refresh and fold it in; True if anything changed."""
        if self.final:
            return False
        with self.lock:
            groups: dict[int | None, list[str]] = {}
            for k in self.wanted(keys):
                groups.setdefault(self.last.get(k), []).append(k)
            changed = False
            for since, group in groups.items():
                # One key per read on a first read: a full-resolution series can be long.
                for chunk in [[k] for k in group] if since is None else [group]:
                    new = client.metrics(self.run_id, keys=chunk, since_step=since, timeout_s=FULL_READ_TIMEOUT_S)
                    changed |= self._fold(new)
            self.final = finished
            return changed

    def _fold(self, new: Mapping[str, Series]) -> bool:
        fresh: dict[str, Series] = {}
        for key, s in new.items():
            last = self.last.get(key)
            s = s.after(last) if last is not None else s
            if not len(s):
                continue
            fresh[key] = s
            self.last[key] = s.steps[-1]
            if key.startswith(COEF_PREFIX + "/"):
                self.coef.fold(s.values)
                finite = [v for v in s.values if math.isfinite(v)]
                if finite:
                    self.coef_min = min(self.coef_min, *finite)
                    self.coef_max = max(self.coef_max, *finite)
        for tally in self.dominance.values():
            tally.fold(fresh)
        return bool(fresh)

    def to_json(self, eps: str | None = None) -> dict[str, Any]:
        """What the page's clientside code reads: panel title extras and the 'now' lines (`eps`:
        the name of ε for the run's task, run_view.eps_label)."""
        return {
            "coef": self.coef.describe() if self.coef.total else "",
            "now": [self.dominance[m].describe(eps if m == "acc" else None) for m in DOMINANCE_METRICS],
            "shares": {m: t.shares() for m, t in self.dominance.items()},
        }


class Digests:
    """One digest per run in this process (LRU, bounded)."""

    def __init__(self, max_runs: int = 64) -> None:
        self._by_run: OrderedDict[tuple[int, float | None], RunDigest] = OrderedDict()
        self._lock = threading.Lock()
        self.max_runs = max_runs

    def get(self, run_id: int, created_at: float | None = None) -> RunDigest:
        """The digest of a run; `created_at` tells a new run apart from a deleted one that had its id."""
        key = (run_id, created_at)
        with self._lock:
            d = self._by_run.get(key)
            if d is None:
                d = self._by_run[key] = RunDigest(run_id)
            self._by_run.move_to_end(key)
            while len(self._by_run) > self.max_runs:
                self._by_run.popitem(last=False)
            return d

    def forget(self, run_id: int) -> None:
        with self._lock:
            for key in [k for k in self._by_run if k[0] == run_id]:
                del self._by_run[key]


DIGESTS = Digests()
