"""What the run page draws, as data: a panel spec per key family, the dominance strip, the run context.

Specs say *what* (series, names, colours, default scale, notes; text escaped for Plotly); the
browser decides *how* (assets/cggm_plot.js: smoothing, x axis, scale). Pure: unit-tested.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .colors import modality_color, run_color
from .decode import Series
from .digest import DOMINANCE_METRICS
from .families import Families
from .progress import EPOCH_KEY
from .text import plotly_text

PANEL_PREFIX = "run-panel-"


def panel_id(family_name: str) -> str:
    return PANEL_PREFIX + family_name


def downsample_note(s: Series, max_points: int, log_every: int | None, per_step: bool = True) -> str:
    """'downsampled to 1,336 of ~100,000 points' when the backend sent fewer points than it holds.

    The backend keeps each bucket's extremes and the first and last point, and does not say how
    many points the series holds (a backend that sends `count` gets an exact figure). For a key
    logged every `log_every` steps the total is estimated from the step range (hence '~'); for
    others (per epoch) only a read that came back near the cap is called downsampled.
    """
    n = len(s)
    if s.count is not None:
        return f"downsampled to {n:,} of {s.count:,} points" if s.count > n else ""
    if n < 2 or n <= max_points // 2:
        return ""
    if not per_step:
        return f"downsampled to {n:,} points" if n >= max_points - 2 else ""
    every = log_every if log_every and log_every > 0 else 1
    total = (s.steps[-1] - s.steps[0]) // every + 1
    return f"downsampled to {n:,} of ~{total:,} points" if total > n else ""


def run_panels(families: Families, keys: Iterable[str], notes: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """A spec per drawn family, in catalog order (catch-alls last); `notes`: per key, e.g. downsampling."""
    keys = list(keys)
    mods = families.modalities(keys)
    notes = notes or {}
    specs = []
    for family, fkeys in families.group(keys):
        traces = []
        for i, key in enumerate(fkeys):
            info = families.info(key)
            color = modality_color(info.modality, mods) if info.modality is not None else run_color(i)
            label = plotly_text(info.label)
            traces.append({"sid": key, "name": label, "color": color, "group": label})
        specs.append(
            {
                "id": panel_id(family.name),
                "family": family.name,
                "title": plotly_text(family.title),
                "scale": family.scale,
                "traces": traces,
                "note": "; ".join(sorted({notes[k] for k in fkeys if notes.get(k)})),
                "title_from": "coef" if family.name == "coef" else None,
                "zero_line": family.scale == "symlog",
                "keys": fkeys,
            }
        )
    return specs


def eps_label(run: Mapping[str, Any], catalog: Mapping[str, Any]) -> str:
    """What `acc/<m>` (ε, the aux heads' batch metric) is for this run's task, for the dominance
    readout and strip: "accuracy" for classification, else the metric's name ("dice", "sign_acc").

    The run's summary says it once finished; before, the task comes from the config's `task`
    setting or the dataset's default task, and the catalog's tasks give its batch metric.
    """
    summary = run.get("summary") or {}
    metric = summary.get("batch_metric")
    if not metric:
        config = run.get("config") or {}
        task = config.get("task") or next(
            (d.get("task") for d in catalog.get("datasets", []) if d.get("name") == config.get("dataset")), None
        )
        metric = next((t.get("metric") for t in catalog.get("tasks", []) if t.get("name") == task), None)
    return "accuracy" if metric in (None, "acc") else plotly_text(str(metric))


def dominance_spec(families: Families, keys: Iterable[str], eps: str = "accuracy") -> dict[str, Any]:
    """Which series the strip judges, per measure and modality, each modality's colour, and the
    rows' names (`eps`: what ε is for the run's task, eps_label)."""
    keys = list(keys)
    mods = families.modalities(keys)
    sids: dict[str, dict[str, str]] = {m: {} for m in DOMINANCE_METRICS}
    for key in keys:
        info = families.info(key)
        if info.family.name in DOMINANCE_METRICS and info.modality is not None:
            sids[info.family.name][info.modality] = key
    return {
        "mods": [{"name": plotly_text(m), "key": m, "color": modality_color(m, mods)} for m in mods],
        "sids": sids,
        "rows": [["acc", eps], ["grad_norm", "grad norm"]],
    }


def run_context(run: Mapping[str, Any], epoch_series: Series | None) -> dict[str, Any]:
    """t0 (for 'time since start') and the epochs (for 'x by epoch') of a run."""
    config = run.get("config") or {}
    per_epoch = None
    if config.get("train_size") and config.get("batch_size"):
        per_epoch = math.ceil(config["train_size"] / config["batch_size"])
    ctx: dict[str, Any] = {"t0": run.get("started_at") or run.get("created_at"), "per_epoch": per_epoch}
    if epoch_series is not None and len(epoch_series):
        ctx["epochs"] = {
            "s": list(epoch_series.steps),
            "v": [v if math.isfinite(v) else None for v in epoch_series.values],
        }
    return ctx


def drawn_keys(families: Families, keys: Iterable[str]) -> list[str]:
    """The keys a run page reads: those a chart draws, and the epoch counter (x by epoch, progress)."""
    return sorted(k for k in keys if k == EPOCH_KEY or families.info(k).family.drawn)
