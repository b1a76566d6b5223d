"""Decoding the backend's series: {"series": {key: {steps, values, times}}} into typed `Series`.

Non-finite values travel as the strings "NaN", "Infinity", "-Infinity" (cggm_core.tracking).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode_value(v: Any) -> float:
    """The backend sends non-finite values as the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(v, str):
        if v not in _NON_FINITE:
            raise ValueError(f"value {v!r} is neither a number nor one of NaN, Infinity, -Infinity")
        return _NON_FINITE[v]
    if v is None:
        return math.nan
    return float(v)


@dataclass
class Series:
    """One metric's points, values decoded to floats (non-finite kept as nan/±inf)."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    count: int | None = None  # points stored, when the backend says (a downsampled read holds fewer)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Series:
        return cls(
            steps=[int(s) for s in doc.get("steps", [])],
            values=[decode_value(v) for v in doc.get("values", [])],
            times=[float(t) for t in doc.get("times", [])],
            count=int(doc["count"]) if isinstance(doc.get("count"), int) else None,
        )

    def __len__(self) -> int:
        return len(self.steps)

    def after(self, step: int) -> Series:
        """Only the points strictly after `step` (dedupe of incremental reads)."""
        keep = [i for i, s in enumerate(self.steps) if s > step]
        return Series([self.steps[i] for i in keep], [self.values[i] for i in keep], [self.times[i] for i in keep])


def parse_series(doc: Mapping[str, Any]) -> dict[str, Series]:
    """{"series": {key: {steps, values, times}}} → {key: Series}."""
    return {k: Series.from_json(v) for k, v in doc.get("series", {}).items()}
