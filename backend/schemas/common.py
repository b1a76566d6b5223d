"""Pieces shared by the schema families: JSON made safe for strict JSON, validation-error shape."""

from __future__ import annotations

import math
from typing import Any


def json_safe(o: Any) -> Any:
    """Replace non-finite floats by the tracking convention's strings ("NaN", "Infinity", "-Infinity").

    Python's json module parses the non-standard tokens NaN/Infinity; storing them as floats
    would make the response unserialisable later (strict JSON), so they are turned into strings.
    """
    if isinstance(o, float) and not math.isfinite(o):
        return "NaN" if math.isnan(o) else ("Infinity" if o > 0 else "-Infinity")
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    return o


def field_error(loc: list[str | int], msg: str, value: Any = None, kind: str = "value_error") -> dict[str, Any]:
    """One entry of a 422 `detail` list, in the same shape FastAPI uses for its own errors."""
    entry: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg}
    if value is not None:
        text = repr(value)
        entry["input"] = text if len(text) <= 200 else text[:200] + "…"
    return entry
