"""Series on their way to the browser, where the figures are drawn (assets/cggm_plot.js).

`{"s": steps, "v": values, "t": times}` per series. Values are rounded to 8 significant digits
(what a chart can show; the CSV export reads the stored values in full) and non-finite ones
travel as the strings "NaN", "Infinity", "-Infinity", as from the backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .decode import Series

SIGNIFICANT_DIGITS = 8


def encode_value(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return float(f"{v:.{SIGNIFICANT_DIGITS}g}")


def encode_series(s: Series, run_id: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "s": list(s.steps),
        "v": [encode_value(v) for v in s.values],
        "t": [round(t, 3) for t in s.times],
    }
    if run_id is not None:
        out["r"] = run_id
    return out


def encode_all(series: Mapping[str, Series], run_id: int | None = None) -> dict[str, dict[str, Any]]:
    return {sid: encode_series(s, run_id) for sid, s in series.items()}


def encode_delta(series: Mapping[str, Series]) -> list[dict[str, Any]]:
    """New points of a live tick, keys with the same steps and times grouped:
    [{"s": steps, "t": times, "v": {key: values}}]. Per-step keys share a group, so a tick of 20
    keys × 1 step is ~0.5 KB instead of ~1.2 KB.
    """
    groups: dict[tuple[tuple[int, ...], tuple[float, ...]], dict[str, Any]] = {}
    for key in sorted(series):
        s = series[key]
        if not len(s):
            continue
        times = tuple(round(t, 3) for t in s.times)
        sig = (tuple(s.steps), times)
        g = groups.setdefault(sig, {"s": list(s.steps), "t": list(times), "v": {}})
        g["v"][key] = [encode_value(v) for v in s.values]
    return list(groups.values())
