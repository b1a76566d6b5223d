"""The New-run form's logic: which settings a dataset + method has, and the runs a sweep makes."""

from __future__ import annotations

import itertools
from typing import Any

from .configs import format_setting
from .form_values import parse_value_list

MAX_SWEEP_RUNS = 100


def settings_for(catalog: dict[str, Any], dataset: str | None, method: str | None) -> list[tuple[str, dict]]:
    """[(section, setting)] of the chosen dataset, then method, then the trainer."""
    out: list[tuple[str, dict]] = []
    for section, items in (("dataset", catalog.get("datasets", [])), ("method", catalog.get("methods", []))):
        chosen = dataset if section == "dataset" else method
        for item in items:
            if item["name"] == chosen:
                out.extend((section, s) for s in item.get("settings", []))
    out.extend(("trainer", s) for s in catalog.get("trainer", []))
    return out


def build_configs(
    base: dict[str, Any],
    kinds: dict[str, str],
    sweeps: list[tuple[str | None, str | None]],
    methods: list[str] | None,
    method_settings: dict[str, list[str]],
) -> list[tuple[str, dict[str, Any]]]:
    """(label, config) per run: the cartesian product of the sweep values (and methods).

    A method other than the form's own is sent without the form's method settings (its defaults
    apply), since setting names are unique per method.
    """
    axes: list[list[tuple[str, Any]]] = []
    for name, text in sweeps:
        if name and text and text.strip():
            try:
                values = parse_value_list(text, kinds.get(name, "str"))
            except ValueError as e:
                raise ValueError(f"sweep values of {name}: {e}") from None
            axes.append([(name, v) for v in values])
    if methods and len(methods) > 0:
        axes.append([("method", m) for m in methods])
    out: list[tuple[str, dict[str, Any]]] = []
    for combo in itertools.product(*axes) if axes else [()]:
        config = dict(base)
        for name, v in combo:
            config[name] = v
        if config["method"] != base["method"]:
            for n in method_settings.get(base["method"], []):
                if n not in dict(combo):
                    config.pop(n, None)
        label = " ".join(f"{n}={format_setting(v)}" for n, v in combo)
        out.append((label, config))
    if len(out) > MAX_SWEEP_RUNS:
        raise ValueError(f"the sweep makes {len(out)} runs; at most {MAX_SWEEP_RUNS} at once")
    return out
