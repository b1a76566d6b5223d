"""The New run form's presets: which of the catalog's presets fit the chosen data and method, the
values each fills in, and how each field stands against the preset (pure; unit-tested).

A catalog preset is {name, help, datasets, method, trainer, methods, models} (cggm_core.presets).
Its `datasets` are the data sets it is for; an empty list means any data set (the per-method
recipes, `<method>-official`). A preset is for one method only when it says so (`method`; None:
any), or, from a catalog without `method`, when it is for any data set and named
`<method>-official`; the data-set recipes (`mosi`, `brats`) fit every
method and give a method's or a model's values only when the job uses that method or model, as
`config.resolve` applies them on the backend. Explicit settings win there, and here: the form
fills a field from the preset once, and what the user types after is what is posted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .configs import format_setting
from .form_values import check_setting

OFFICIAL_SUFFIX = "-official"


def preset_method(preset: Mapping[str, Any]) -> str | None:
    """The one method a preset is for, or None when it fits every method."""
    if "method" in preset:  # the catalog says (None: any method)
        named = preset["method"]
        return str(named) if named else None
    name = str(preset.get("name", ""))  # an older catalog: the naming rule
    if not preset.get("datasets") and name.endswith(OFFICIAL_SUFFIX):
        return name[: -len(OFFICIAL_SUFFIX)]
    return None


def fits(preset: Mapping[str, Any], dataset: str | None, method: str | None) -> bool:
    """Whether the preset may be posted with this dataset and method (the backend refuses the rest)."""
    datasets = preset.get("datasets") or []
    if datasets and dataset not in datasets:
        return False
    only = preset_method(preset)
    return only is None or only == method


def presets_for(catalog: Mapping[str, Any], dataset: str | None, method: str | None) -> list[dict[str, Any]]:
    """The catalog's presets that fit, in catalog order."""
    return [p for p in catalog.get("presets", []) if fits(p, dataset, method)]


def find(catalog: Mapping[str, Any], name: str | None) -> dict[str, Any] | None:
    for p in catalog.get("presets", []):
        if p.get("name") == name:
            return p
    return None


def preset_values(preset: Mapping[str, Any] | None, method: str | None, model: str | None) -> dict[str, Any]:
    """Every value the preset sets for a job of this method and model (trainer, then method, then model)."""
    if not preset:
        return {}
    return {
        **(preset.get("trainer") or {}),
        **((preset.get("methods") or {}).get(method or "", {})),
        **((preset.get("models") or {}).get(model or "", {})),
    }


def same_value(setting: Mapping[str, Any], raw: Any, preset_value: Any) -> bool:
    """Whether a field's text holds the preset's value (as the form writes and parses values)."""
    value, err = check_setting(setting, raw)
    if err is not None or value is None:
        return False
    return format_setting(value) == format_setting(preset_value)


def field_values(
    settings: Sequence[Mapping[str, Any]],
    current: Mapping[str, Any],
    before: Mapping[str, Any],
    now: Mapping[str, Any],
    *,
    preset_changed: bool,
) -> dict[str, Any]:
    """What each field holds when the form is drawn again (by name; typed or a field's raw value).

    `current`: the fields as they are (absent: a field not on the form yet); `before`: the values
    of the preset the fields were filled from; `now`: the chosen preset's values. A new preset fills
    every field it sets; a field the old preset had filled and the user left alone goes back to its
    default; what the user typed stays, unless the new preset sets that field. With the preset
    unchanged (a new dataset, method or model) a field keeps what it holds, and a field new to the
    form takes the preset's value, or its default.
    """
    out: dict[str, Any] = {}
    for s in settings:
        name = s["name"]
        default = s.get("default")
        if name not in current:
            out[name] = now.get(name, default)
            continue
        value = current[name]
        if preset_changed:
            if name in now:
                value = now[name]
            elif name in before and same_value(s, value, before[name]):
                value = default
        out[name] = value
    return out


def marks(
    settings: Sequence[Mapping[str, Any]], values: Mapping[str, Any], current: Mapping[str, Any], preset: str | None
) -> dict[str, tuple[str, str]]:
    """Per setting the preset sets: (row class, badge text) — "from preset mosi", or the user's
    override with the preset's value beside it. Settings the preset does not set get ("", "")."""
    out: dict[str, tuple[str, str]] = {}
    for s in settings:
        name = s["name"]
        if not preset or name not in values:
            out[name] = ("", "")
        elif same_value(s, current.get(name), values[name]):
            out[name] = ("from-preset", f"from preset {preset}")
        else:
            out[name] = ("preset-overridden", f"yours (preset {preset}: {format_setting(values[name])})")
    return out
