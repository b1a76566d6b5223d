"""The run page's panel registry: which panel draws which metric key, and how a panel is built."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import plotly.graph_objects as go

from . import figures
from .decode import Series


def _one_level(prefix: str) -> Callable[[str], bool]:
    def match(key: str) -> bool:
        head, sep, rest = key.partition("/")
        return bool(sep) and head == prefix and "/" not in rest

    return match


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    matches: Callable[[str], bool]
    symlog: bool = False  # coefficients: CGGM's blow-ups and negative B stay visible


# Order = order on the page; first match wins.
PANELS: list[Panel] = [
    Panel("acc", "acc/* — aux-head accuracy per modality (ε_m)", _one_level("acc")),
    Panel("grad_norm", "grad_norm/* — encoder gradient norm per modality", _one_level("grad_norm")),
    Panel("coef", "coef/* — balancing coefficient", _one_level("coef"), symlog=True),
    Panel("cos", "cos/* — cos(g_m, g_Ω)", _one_level("cos")),
    Panel("losses", "losses", lambda k: k == "train/loss" or k.startswith("loss/")),
    Panel("train", "train/* — fused model on the batch", lambda k: k.startswith("train/") and k != "train/loss"),
    Panel("imbalance", "imbalance/*", lambda k: k.startswith("imbalance/")),
    Panel("contrib", "val/contrib/* — Shapley contribution per modality", lambda k: k.startswith("val/contrib/")),
    Panel("val", "val/* — validation", lambda k: k.startswith("val/")),
]
PANEL_IDS = [p.id for p in PANELS]
BY_ID = {p.id: p for p in PANELS}


def panel_of(key: str) -> str | None:
    for p in PANELS:
        if p.matches(key):
            return p.id
    return None


def group_keys(keys: list[str]) -> dict[str, list[str]]:
    """{panel id: its keys, sorted}, every panel present (empty panels draw an empty figure)."""
    by_panel: dict[str, list[str]] = {pid: [] for pid in PANEL_IDS}
    for key in sorted(keys):
        pid = panel_of(key)
        if pid is not None:
            by_panel[pid].append(key)
    return by_panel


def panel_figure(
    pid: str,
    series: Mapping[str, Series],
    keys: list[str],
    *,
    smoothing: float,
    x_mode: str,
    log_y: bool,
    t0: float | None,
) -> go.Figure:
    chosen = {k: series[k] for k in keys}
    if BY_ID[pid].symlog:
        return figures.build_coefficient_figure(chosen, smoothing=smoothing, x_mode=x_mode, t0=t0)
    return figures.build_metric_figure(
        chosen, title=BY_ID[pid].title, keys=keys, smoothing=smoothing, x_mode=x_mode, t0=t0, log_y=log_y
    )
