"""Symmetric log scale: CGGM's |B| ~ 1e7 blow-ups and negative B on one readable axis."""

from __future__ import annotations

import math


def symlog(v: float) -> float:
    """sign(v)·log10(1+|v|): linear near 0, logarithmic for CGGM's |B| ~ 1e7 blow-ups, keeps the sign."""
    if math.isnan(v):
        return math.nan
    if math.isinf(v):
        return v
    return math.copysign(math.log10(1.0 + abs(v)), v)


def symlog_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Tick positions (in symlog space) and labels (real values) covering real values [lo, hi]."""
    top = max(abs(lo), abs(hi), 1.0)
    decades = min(int(math.ceil(math.log10(top))), 30)
    reals: list[float] = [0.0]
    for d in range(decades + 1):
        v = 10.0**d
        if v <= top * 10:
            if hi > 0 or v <= 1:
                reals.append(v)
            if lo < 0 or v <= 1:
                reals.append(-v)
    reals = sorted(set(reals))
    return [symlog(r) for r in reals], [format_real(r) for r in reals]


def format_real(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.0e}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    return f"{v:g}"
