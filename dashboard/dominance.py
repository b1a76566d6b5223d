"""Dominance: which modality leads a per-modality metric at each step, and by how much."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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


def describe_dominance(d: Dominance) -> str:
    now = d.now()
    if now is None:
        return f"{d.metric}: no data yet"
    lead, margin = now
    if d.metric == "grad_norm":
        by = "∞" if math.isinf(margin) else f"×{margin:.2f}"
        return f"grad norm: {lead} leads {by}"
    share = d.leaders.count(lead) / len(d.leaders)
    return f"accuracy: {lead} leads by {margin:+.3f} (leads at {share:.0%} of steps)"
