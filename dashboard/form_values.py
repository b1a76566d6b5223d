"""Form text to typed setting values: one value, or a sweep's list of values."""

from __future__ import annotations

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
    if kind == "int":
        f = float(text)
        if not f.is_integer():
            raise ValueError(f"{text!r} is not an integer")
        return int(f)
    if kind == "float":
        return float(text)
    return str(text)
