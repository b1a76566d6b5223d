"""Method registry: name → Method class. Adding a method is one file plus one line here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..settings import SettingError
from .agm import AGM
from .base import Method, StepState
from .cggm import CGGM
from .gblending import GBlending
from .joint import Joint
from .mla import MLA
from .mmpareto import MMPareto
from .mslr import MSLR
from .ogm_ge import OGMGE
from .pmr import PMR
from .uniform import Uniform
from .unimodal import Unimodal

METHODS: dict[str, type[Method]] = {
    m.name: m for m in (Joint, Unimodal, CGGM, OGMGE, AGM, MMPareto, Uniform, GBlending, PMR, MSLR, MLA)
}


def resolve_method_settings(name: str, given: Mapping[str, Any], modalities: list[str] | None = None) -> dict[str, Any]:
    """Defaults overlaid with `given` (parsed and bounds-checked); unknown names are errors."""
    cls = METHODS[name]
    by_name = {s.name: s for s in cls.settings}
    out = {s.name: s.default for s in cls.settings}
    for key, raw in given.items():
        if key not in by_name:
            allowed = ", ".join(by_name) or "none"
            raise SettingError(f"unknown setting {key!r} for method {name!r}; allowed: {allowed}")
        out[key] = by_name[key].parse(raw)
    cls.check(out, modalities)
    return out


__all__ = ["METHODS", "Method", "StepState", "resolve_method_settings"]
