"""The New-run form's logic: which settings a dataset + method has, and the runs a sweep makes."""

from __future__ import annotations

import itertools
from typing import Any

from .configs import format_setting
from .form_values import parse_value_list

MAX_SWEEP_RUNS = 100


def settings_for(
    catalog: dict[str, Any], dataset: str | None, method: str | None, model: str | None = None
) -> list[tuple[str, dict]]:
    """[(section, setting)] of the chosen dataset, then method, then model (the dataset's own when
    None), then the trainer."""
    model = model or default_model(catalog, dataset)
    out: list[tuple[str, dict]] = []
    for section, chosen in (("dataset", dataset), ("method", method), ("model", model)):
        for item in catalog.get(f"{section}s", []):
            if item["name"] == chosen:
                out.extend((section, s) for s in item.get("settings", []))
    out.extend(("trainer", s) for s in catalog.get("trainer", []))
    return out


def default_model(catalog: dict[str, Any], dataset: str | None) -> str | None:
    for d in catalog.get("datasets", []):
        if d["name"] == dataset:
            return d.get("default_model")
    return None


def models_for(catalog: dict[str, Any], dataset: str | None) -> list[str]:
    """The models that read the dataset's kinds of inputs and serve its (default) task; the
    backend checks the pair again at POST, with the dataset's settings (a `task` setting)."""
    ds = next((d for d in catalog.get("datasets", []) if d["name"] == dataset), None)
    if ds is None:
        return []
    kinds = set(ds.get("input_kinds") or [])
    out = []
    for m in catalog.get("models", []):
        reads = set(m.get("input_kinds") or [])
        tasks = m.get("tasks")
        if kinds <= reads and (tasks is None or ds.get("task") in tasks):
            out.append(m["name"])
    default = ds.get("default_model")
    if default and default not in out:
        out.insert(0, default)  # the dataset's own always fits
    return out


def sections(
    settings: list[tuple[str, dict]], dataset: str | None, method: str | None, model: str | None = None
) -> list[tuple[str, list[dict], bool]]:
    """(title, settings, open) per form section: the data, the method, the model, training; advanced ones folded."""
    by = {
        "dataset": [s for sec, s in settings if sec == "dataset" and not s.get("advanced")],
        "method": [s for sec, s in settings if sec == "method" and not s.get("advanced")],
        "model": [s for sec, s in settings if sec == "model" and not s.get("advanced")],
        "trainer": [s for sec, s in settings if sec == "trainer" and not s.get("advanced")],
        "advanced": [s for sec, s in settings if s.get("advanced")],
    }
    out = [
        (f"Data: {dataset}", by["dataset"], True),
        (f"Method: {method}", by["method"], True),
        (f"Model: {model}" if model else "Model", by["model"], True),
        ("Training", by["trainer"], True),
        ("Advanced", by["advanced"], False),
    ]
    return [(title, items, is_open) for title, items, is_open in out if items]


def visible(setting: dict[str, Any], values: dict[str, Any]) -> bool:
    """False for a setting the chosen options ignore (`shown_when`: e.g. stable-only ones under `paper`)."""
    when = setting.get("shown_when") or {}
    return all(str(values.get(name)) in [str(v) for v in allowed] for name, allowed in when.items())


def seed_values(text: Any) -> list[int]:
    """'repeat with seeds 0…k': k as typed → [0, …, k]; empty → no repeat."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return []
    try:
        k = int(str(text).strip())
    except ValueError:
        raise ValueError(f"seeds 0…k: {text!r} is not a whole number") from None
    if not 0 <= k < MAX_SWEEP_RUNS:
        raise ValueError(f"seeds 0…k: k = {k} is outside [0, {MAX_SWEEP_RUNS - 1}]")
    return list(range(k + 1))


def build_configs(
    base: dict[str, Any],
    kinds: dict[str, str],
    sweeps: list[tuple[str | None, str | None]],
    methods: list[str] | None,
    method_settings: dict[str, list[str]],
    seeds: list[int] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(label, config) per run: the cartesian product of the sweep values (and methods, and seeds).

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
    if seeds:
        axes.append([("seed", k) for k in seeds])
    total = 1
    for a in axes:
        total *= len(a)
    if total > MAX_SWEEP_RUNS:
        raise ValueError(f"the sweep makes {total} runs; at most {MAX_SWEEP_RUNS} at once")
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
