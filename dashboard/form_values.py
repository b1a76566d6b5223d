"""Form text to typed setting values: one value, or a sweep's list of values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def parse_value_list(text: str, kind: str) -> list[Any]:
    """A sweep's values, comma- or space-separated, converted to the setting's type.

    Raises ValueError naming the bad item. `str` settings split on ';' because their own values
    may hold commas (e.g. strengths "3,1").
    """
    sep = ";" if kind == "str" else None
    raw = [t.strip() for t in (text.split(sep) if sep else text.replace(",", " ").split())]
    raw = [t for t in raw if t]
    if not raw:
        raise ValueError("expected at least one value")
    out: list[Any] = []
    for t in raw:
        try:
            out.append(convert(t, kind))
        except ValueError:
            raise ValueError(f"{t!r} is not a valid {kind}") from None
    return out


def convert(text: Any, kind: str) -> Any:
    """A form field's text → the setting's type (the backend validates bounds)."""
    if kind == "bool":
        if isinstance(text, bool):
            return text
        t = str(text).strip().lower()
        if t in ("true", "1", "yes", "on"):
            return True
        if t in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{text!r} is not a boolean")
    if kind in ("int", "float"):
        try:
            f = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{text!r} is not a number") from None
        # float() reads "nan", "inf", "1e999": a setting needs a finite number (and JSON has no NaN).
        if not math.isfinite(f):
            raise ValueError(f"{text!r} is not a finite number")
        if kind == "float":
            return f
        if not f.is_integer():
            raise ValueError(f"{text!r} is not an integer")
        return int(f)
    return str(text)


def check_setting(setting: Mapping[str, Any], raw: Any) -> tuple[Any, str | None]:
    """(value, None) or (None, message) for one form field: type, finiteness, choices, bounds.

    The message is what the form shows beside the field; the backend checks again on POST.
    """
    kind = str(setting.get("type", "str"))
    if isinstance(raw, list):  # a multi-select (a comma list such as views)
        raw = ",".join(str(x) for x in raw)
    if raw is None or (isinstance(raw, str) and not raw.strip() and kind != "str"):
        return None, None  # empty: the default applies
    try:
        value = convert(raw, kind)
    except ValueError as e:
        return None, str(e)
    choices = setting.get("choices")
    if choices and value not in choices:
        return None, f"{value!r} is not one of {', '.join(map(str, choices))}"
    multi = setting.get("multi_choices")
    if multi and isinstance(value, str):
        unknown = [v for v in value.split(",") if v and v not in multi]
        if unknown:
            return None, f"unknown: {', '.join(unknown)}; allowed: {', '.join(multi)}"
        if not [v for v in value.split(",") if v]:
            return None, "choose at least one"
    lo, hi = setting.get("min"), setting.get("max")
    if kind in ("int", "float") and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        return None, f"{raw} is outside [{_bound(lo, '−∞')}, {_bound(hi, '∞')}]"
    return value, None


def _bound(v: Any, missing: str) -> str:
    if v is None:
        return missing
    return str(int(v)) if float(v).is_integer() else f"{v:g}"
