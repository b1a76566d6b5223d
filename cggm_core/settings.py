"""Typed, bounded settings shared by datasets, methods and the trainer.

Every knob a job can turn is a :class:`Setting`: a name that is unique across the whole catalog,
a type, a default, bounds (or a list of choices) and one line of help. The CLI (`--set k=v`), the
backend's catalog and the dashboard's form are all generated from these declarations, so a new
method or dataset brings its settings everywhere by declaring them once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

SettingType = Literal["int", "float", "str", "bool"]


class SettingError(ValueError):
    """A setting's name or value is not allowed; the message names what is."""


@dataclass(frozen=True)
class Setting:
    name: str
    type: SettingType
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    # Free-form strings (comma lists such as `views`) are checked by the owner's own validator.
    pattern_help: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def describe_allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        if self.type == "bool":
            return "true or false"
        if self.type in ("int", "float"):
            lo = "-inf" if self.min is None else _fmt(self.min)
            hi = "inf" if self.max is None else _fmt(self.max)
            return f"{'an integer' if self.type == 'int' else 'a number'} in [{lo}, {hi}]"
        return self.pattern_help or "a string"

    def parse(self, raw: Any) -> Any:
        """Convert a CLI string or JSON value to this setting's type and check its bounds."""
        value = self._convert(raw)
        if self.choices is not None and value not in self.choices:
            raise SettingError(f"setting '{self.name}': {raw!r} is not allowed; expected {self.describe_allowed()}")
        if self.type in ("int", "float"):
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingError(f"setting '{self.name}': {raw!r} is not a finite number")
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                raise SettingError(
                    f"setting '{self.name}': {raw!r} is out of bounds; expected {self.describe_allowed()}"
                )
        return value

    def _convert(self, raw: Any) -> Any:
        bad = SettingError(f"setting '{self.name}': {raw!r} is not {self.describe_allowed()}")
        if self.type == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(raw, str) and raw.lower() in ("0", "false", "no", "off"):
                return False
            raise bad
        if self.type == "int":
            if isinstance(raw, bool):
                raise bad
            if isinstance(raw, int):
                return raw
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            if isinstance(raw, str):
                try:
                    return int(raw.strip())
                except ValueError:
                    raise bad from None
            raise bad
        if self.type == "float":
            if isinstance(raw, bool):
                raise bad
            if isinstance(raw, (int, float)):
                return float(raw)
            if isinstance(raw, str):
                try:
                    return float(raw.strip())
                except ValueError:
                    raise bad from None
            raise bad
        if not isinstance(raw, str):
            raise bad
        value = raw.strip()
        control = next((c for c in value if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F), None)
        if control is not None:
            raise SettingError(f"setting '{self.name}': {raw!r} contains the control character {control!r}")
        return value

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default, "help": self.help}
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def defaults(settings: list[Setting]) -> dict[str, Any]:
    return {s.name: s.default for s in settings}
