"""Dominance: which modality leads a per-modality metric at each step, and by how much."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .decode import Series


@dataclass(frozen=True)
class Dominance:
    """Which modality leads a per-modality metric at each step, and by how much."""

    metric: str  # "acc" or "grad_norm"
    steps: list[int]
    leaders: list[str]
    margins: list[float]  # acc: leader − runner-up (absolute); grad_norm: leader / runner-up (ratio)

    def now(self) -> tuple[str, float] | None:
        if not self.steps:
            return None
        return self.leaders[-1], self.margins[-1]


def modalities_of(keys: Iterable[str], prefix: str) -> list[str]:
    """['acc/m0', 'acc/m1', 'val/acc'] with prefix 'acc' → ['m0', 'm1'] (one level only)."""
    out = []
    for k in keys:
        head, sep, rest = k.partition("/")
        if sep and head == prefix and rest and "/" not in rest:
            out.append(rest)
    return sorted(out)


def dominance(series: Mapping[str, Series], metric: str) -> Dominance:
    """Leader by `metric/<m>` at every step where all modalities have a finite value.

    Accuracy margins are differences (0.9 vs 0.6 → 0.3); gradient-norm margins are ratios
    (3.0 vs 1.0 → 3.0), because norms of different encoders differ by orders of magnitude.
    """
    mods = modalities_of(series, metric)
    by_step: dict[int, dict[str, float]] = {}
    for m in mods:
        s = series[f"{metric}/{m}"]
        for step, v in zip(s.steps, s.values, strict=False):
            by_step.setdefault(step, {})[m] = v
    steps, leaders, margins = [], [], []
    if len(mods) >= 2:
        for step in sorted(by_step):
            row = by_step[step]
            if len(row) != len(mods) or not all(math.isfinite(v) for v in row.values()):
                continue
            ranked = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))
            (lead, v1), (_, v2) = ranked[0], ranked[1]
            margin = _margin(metric, v1, v2)
            steps.append(step)
            leaders.append(lead)
            margins.append(margin)
    return Dominance(metric, steps, leaders, margins)


def _margin(metric: str, lead: float, second: float) -> float:
    if metric == "grad_norm":
        return lead / second if second > 0 else math.inf
    return lead - second


def format_margin(metric: str, margin: float | None) -> str:
    if margin is None or not math.isfinite(margin):
        return "×∞" if metric == "grad_norm" else "?"
    if metric == "grad_norm":
        return f"×{margin:.3g}"
    return f"{margin:+.3f}"


ROW_NAMES = {"acc": "accuracy", "grad_norm": "grad norm"}


@dataclass
class DominanceTally:
    """Exact share of steps each modality led, folded in as points arrive (full resolution).

    A step is judged once every modality has reported it: points of one step may arrive in two
    reads, so incomplete steps wait in `pending` (those older than a judged step never complete).
    """

    metric: str
    modalities: list[str] = field(default_factory=list)
    pending: dict[int, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    judged: int = 0
    now: tuple[str, float] | None = None  # newest leader and margin
    last_step: int | None = None

    def fold(self, series: Mapping[str, Series]) -> None:
        for m in modalities_of(series, self.metric):
            if m not in self.modalities:
                self.modalities.append(m)
                self.modalities.sort()
        for key, s in series.items():
            head, _, m = key.partition("/")
            if head != self.metric or "/" in m:
                continue
            for step, v in zip(s.steps, s.values, strict=False):
                self.pending.setdefault(step, {})[m] = v
        if len(self.modalities) < 2:
            return
        as_series: dict[str, Series] = {}
        for step in sorted(self.pending):
            for m, v in self.pending[step].items():
                s = as_series.setdefault(f"{self.metric}/{m}", Series())
                s.steps.append(step)
                s.values.append(v)
                s.times.append(0.0)
        d = dominance(as_series, self.metric)
        for lead in d.leaders:
            self.counts[lead] = self.counts.get(lead, 0) + 1
        self.judged += len(d.steps)
        if d.steps:
            self.now = (d.leaders[-1], d.margins[-1])
            self.last_step = d.steps[-1]
        done = set(d.steps)
        for step in list(self.pending):
            complete = len(self.pending[step]) == len(self.modalities)
            if step in done or complete or (self.last_step is not None and step < self.last_step):
                del self.pending[step]

    def describe(self, name: str | None = None) -> str:
        """'accuracy: kar leads by +0.458 now (led 96% of steps)'; `name` instead of the metric's row name."""
        name = name or ROW_NAMES.get(self.metric, self.metric)
        if self.now is None:
            return f"{name}: no data yet"
        lead, margin = self.now
        share = self.counts.get(lead, 0) / max(self.judged, 1)
        return f"{name}: {lead} leads by {format_margin(self.metric, margin)} now (led {share:.0%} of steps)"

    def shares(self) -> dict[str, float]:
        return {m: self.counts.get(m, 0) / self.judged for m in self.modalities} if self.judged else {}
