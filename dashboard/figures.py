"""Figures built on the server: the static ones of Compare (a sweep's parallel coordinates), and
the placeholder a chart shows until the browser draws it.

Line charts are drawn in the browser from raw series (assets/cggm_plot.js), so that smoothing and
scale toggles need no round trip; what stays here has no toggle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from .configs import format_setting
from .text import plotly_text

DRAWING = "drawing…"
MISSING = "—"  # a setting a run does not have (another method's), shown as its own category


def build_parallel_figure(runs: Sequence[Mapping[str, Any]], settings: Sequence[str], metric: str) -> go.Figure:
    """Parallel coordinates of a sweep: one line per run, an axis per differing setting, the metric last.

    `runs` items: {"config", "metrics": {name: value}}. A setting is a numeric axis only when every
    run has a number for it; otherwise a category axis whose ticks are the values as written
    (a method sweep: "cggm", "ogm_ge"; a setting only some methods have: "—" for the others).
    """
    dims: list[dict[str, Any]] = []
    for name in settings:
        raw = [r["config"].get(name) for r in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
            dims.append({"label": plotly_text(name), "values": raw})
            continue
        text = [MISSING if v is None else format_setting(v) for v in raw]
        cats = sorted(set(text), key=lambda t: (t == MISSING, t))
        dims.append(
            {
                "label": plotly_text(name),
                "values": [cats.index(t) for t in text],
                "tickvals": list(range(len(cats))),
                "ticktext": [plotly_text(c) for c in cats],
                "range": [-0.5, len(cats) - 0.5] if len(cats) == 1 else [0, len(cats) - 1],
            }
        )
    scores = [_finite_or_none(r.get("metrics", {}).get(metric)) for r in runs]
    dims.append({"label": plotly_text(metric), "values": [s if s is not None else float("nan") for s in scores]})
    colour = [s if s is not None else 0.0 for s in scores]
    fig = go.Figure(go.Parcoords(dimensions=dims, line={"color": colour, "colorscale": "Viridis", "showscale": True}))
    fig.update_layout(
        title={"text": f"sweep: settings vs {plotly_text(metric)}", "font": {"size": 14}},
        height=360,
        margin={"l": 60, "r": 60, "t": 70, "b": 30},
    )
    return fig


def _finite_or_none(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def placeholder_figure(title: str, text: str = DRAWING, height: int = 300) -> dict[str, Any]:
    """A chart not drawn yet: its title and why it is empty ("drawing…"), no axes.

    Plotly draws an empty figure as axes from −1 to 6 with no title, which reads as a chart with no
    data. The browser replaces this with the real figure, or with "scroll to draw" for a panel far
    down the page (assets/cggm_dash.js draws it when it comes near); the same shape as
    cggmPlot.placeholderFigure in assets/cggm_plot.js. `title` is already Plotly-escaped.
    """
    hidden = {"visible": False, "showgrid": False, "zeroline": False}
    return {
        "data": [],
        "layout": {
            "title": {"text": title, "font": {"size": 14}},
            "height": height,
            "margin": {"l": 60, "r": 10, "t": 40, "b": 40},
            "xaxis": hidden,
            "yaxis": hidden,
            "annotations": [
                {
                    "text": text,
                    "showarrow": False,
                    "xref": "paper",
                    "yref": "paper",
                    "x": 0.5,
                    "y": 0.5,
                    "font": {"size": 13, "color": "#888"},
                    "name": "placeholder",
                }
            ],
        },
    }
