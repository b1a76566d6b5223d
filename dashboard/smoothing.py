"""TensorBoard's debiased EMA, resumable, so that live points continue the same smoothed curve."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class EmaState:
    """State of TensorBoard's debiased EMA, so that live points continue the same curve.

    s_t = w·s_{t−1} + (1−w)·x_t with s_0 = 0, shown as s_t / (1 − w^t), t counting finite points.
    """

    last: float = 0.0
    count: int = 0


def smooth(values: Sequence[float], weight: float, state: EmaState | None = None) -> tuple[list[float], EmaState]:
    """Debiased EMA of `values`; non-finite points give nan and leave the state untouched.

    `weight` in [0, 1): 0 returns the values unchanged. Pass the returned state back in to
    continue a series with new points exactly as if it had been smoothed in one go.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight {weight} is outside [0, 1)")
    st = EmaState(state.last, state.count) if state is not None else EmaState()
    out: list[float] = []
    for x in values:
        if not math.isfinite(x):
            out.append(math.nan)
            continue
        st.last = weight * st.last + (1.0 - weight) * x
        st.count += 1
        debias = 1.0 - weight**st.count
        out.append(st.last / debias if debias > 0 else x)
    return out, st
