"""The dominance strip's live side: buffer per-modality points until a step is complete, then mark its leader.

A step is judged only once every modality has reported it (points of one step may arrive in two
reads); the newest leader and how often each modality has led feed the 'now' line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import figures
from .decode import Series
from .dominance import Dominance, dominance, modalities_of

DOMINANCE_METRICS = ("acc", "grad_norm")

Op = tuple[Any, ...]


@dataclass
class DominanceBuffers:
    mods: list[str] = field(default_factory=list)
    plan: list[list[str]] = field(default_factory=list)  # trace order: [[metric, modality], ...]
    # {metric: {step: {modality: value}}} for steps not every modality has reported yet
    buf: dict[str, dict[int, dict[str, float]]] = field(default_factory=lambda: {m: {} for m in DOMINANCE_METRICS})
    last: dict[str, int] = field(default_factory=dict)  # newest judged step per metric
    now: dict[str, tuple[str, float | None]] = field(default_factory=dict)  # newest leader and margin
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # steps led, per metric and modality

    @classmethod
    def start(cls, series: Mapping[str, Series]) -> tuple[DominanceBuffers, list[Dominance]]:
        mods = sorted(set(modalities_of(series, "acc")) | set(modalities_of(series, "grad_norm")))
        buffers = cls(mods=mods, plan=figures.dominance_plan(mods))
        doms = [dominance(series, m) for m in DOMINANCE_METRICS]
        for d in doms:
            buffers.remember(d)
        return buffers, doms

    def remember(self, d: Dominance) -> None:
        """Keep the newest leader and how often each modality has led, for the 'now' line."""
        if not d.steps:
            return
        self.last[d.metric] = d.steps[-1]
        margin = d.margins[-1]
        self.now[d.metric] = (d.leaders[-1], margin if math.isfinite(margin) else None)
        counts = self.counts.setdefault(d.metric, {})
        for lead in d.leaders:
            counts[lead] = counts.get(lead, 0) + 1

    def update(self, fresh: Mapping[str, Series]) -> list[Op]:
        """New points → ops on the strip's figure (add a modality's traces, extend its marks)."""
        ops: list[Op] = []
        # Modalities first seen now (the page opened before any point was logged): add their traces.
        seen = set(modalities_of(fresh, "acc")) | set(modalities_of(fresh, "grad_norm"))
        for m in sorted(seen - set(self.mods)):
            self.mods.append(m)
            for metric in DOMINANCE_METRICS:
                self.plan.append([metric, m])
                ops.append(("add", figures.dominance_trace(metric, m, self.mods).to_plotly_json()))
        for metric in DOMINANCE_METRICS:
            buf = self.buf[metric]
            for key, s in fresh.items():
                head, _, m = key.partition("/")
                if head != metric or "/" in m or m not in self.mods:
                    continue
                for step, v in zip(s.steps, s.values, strict=False):
                    buf.setdefault(step, {})[m] = v
            if not buf or len(self.mods) < 2:
                continue
            as_series: dict[str, Series] = {}
            for step in sorted(buf):
                for m, v in buf[step].items():
                    s = as_series.setdefault(f"{metric}/{m}", Series())
                    s.steps.append(step)
                    s.values.append(v)
                    s.times.append(0.0)
            d = dominance(as_series, metric)
            complete = set(d.steps)
            for step in list(buf):
                # Complete steps are drawn; incomplete ones older than the newest complete one never will be.
                if step in complete or (d.steps and step < d.steps[-1]) or len(buf[step]) == len(self.mods):
                    del buf[step]
            self.remember(d)
            for m in self.mods:
                pts = figures.dominance_points(d, m)
                if pts["x"]:
                    ops.append(("extend", self.plan.index([metric, m]), pts))
        return ops

    def describe_now(self) -> list[str]:
        """One line per measure: 'accuracy: m0 leads by +0.120 now (led 80% of steps)'."""
        lines = []
        for metric in DOMINANCE_METRICS:
            name = figures.DOMINANCE_ROWS[metric]
            now = self.now.get(metric)
            if not now:
                lines.append(f"{name}: no data yet")
                continue
            lead, margin = now
            counts = self.counts.get(metric, {})
            share = counts.get(lead, 0) / max(sum(counts.values()), 1)
            lines.append(
                f"{name}: {lead} leads by {figures.format_margin(metric, margin)} now (led {share:.0%} of steps)"
            )
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "mods": self.mods,
            "plan": self.plan,
            # JSON object keys are strings: steps travel as text and come back as ints.
            "buf": {metric: {str(st): row for st, row in b.items()} for metric, b in self.buf.items()},
            "last": self.last,
            "now": {metric: list(v) for metric, v in self.now.items()},
            "counts": self.counts,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DominanceBuffers:
        return cls(
            mods=list(doc["mods"]),
            plan=[list(p) for p in doc["plan"]],
            buf={metric: {int(st): dict(row) for st, row in b.items()} for metric, b in doc["buf"].items()},
            last=dict(doc["last"]),
            now={metric: (v[0], v[1]) for metric, v in doc["now"].items()},
            counts={metric: dict(c) for metric, c in doc["counts"].items()},
        )
