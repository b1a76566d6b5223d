"""Layout pieces shared by pages: view controls, a chart panel (scale toggle, CSV of the full series), the graph config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from dash import dcc, html

from .figures import placeholder_figure

# Plotly's own toImage button is the PNG export; keep it, drop the clutter and anything that
# sends data to Plotly's cloud ("Edit in Chart Studio" / "Share chart").
GRAPH_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "showSendToCloud": False,
    "showEditInChartStudio": False,
    "toImageButtonOptions": {"format": "png", "scale": 2},
    "modeBarButtonsToRemove": ["lasso2d", "select2d", "sendDataToCloud", "editInChartStudio"],
}

X_MODES = [("step", "step"), ("epoch", "epoch"), ("relative", "time since start"), ("wall", "wall time")]
SCALES = [("linear", "lin"), ("log", "log"), ("symlog", "symlog")]
# Marks far enough apart at the slider's width that their labels never touch (issue: "0.90.99").
SMOOTHING_MARKS = {0: "0", 0.25: "0.25", 0.5: "0.5", 0.75: "0.75", 0.99: "0.99"}


def query_float(query: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    try:
        v = float(query.get(name, default))
    except (TypeError, ValueError):
        return default
    return v if lo <= v <= hi else default


def query_choice(query: Mapping[str, Any], name: str, allowed: Sequence[str], default: str) -> str:
    v = query.get(name)
    return v if isinstance(v, str) and v in allowed else default


def view_controls(prefix: str, query: Mapping[str, Any], extra: Sequence[Any] = ()) -> html.Div:
    """Smoothing (EMA) and x axis; ids '<prefix>-smoothing', '<prefix>-xmode'. Initial values from the URL."""
    return html.Div(
        [
            html.Div(
                [
                    html.Label("smoothing (EMA)"),
                    dcc.Slider(
                        id=f"{prefix}-smoothing",
                        min=0,
                        max=0.99,
                        step=0.01,
                        value=query_float(query, "smoothing", 0.0, 0.0, 0.99),
                        marks=SMOOTHING_MARKS,
                        tooltip={"placement": "bottom"},
                        updatemode="mouseup",
                    ),
                ],
                className="slider",
            ),
            html.Div(
                [
                    html.Label("x axis "),
                    dcc.RadioItems(
                        id=f"{prefix}-xmode",
                        options=[{"label": f" {label}", "value": v} for v, label in X_MODES],
                        value=query_choice(query, "x", [v for v, _ in X_MODES], "step"),
                        inline=True,
                    ),
                ]
            ),
            *extra,
        ],
        className="controls",
    )


def chart_panel(graph_type: str, name: str, *, scale: str, csv_href: str | None, title: str = "") -> html.Div:
    """A graph with its own y-scale toggle and a link to the CSV of its full series (Plotly's PNG button stays).

    Until the browser draws it, the graph shows its `title` (Plotly-escaped) and "drawing…".
    """
    header: list[Any] = [
        dcc.RadioItems(
            id={"type": f"{graph_type}-scale", "name": name},
            options=[{"label": f" {label}", "value": v} for v, label in SCALES],
            value=scale,
            inline=True,
            className="scale",
        ),
    ]
    if csv_href:
        header.append(html.A("CSV", href=csv_href, className="csv", download="", target="_blank"))
    return html.Div(
        [
            html.Div(header, className="panel-head"),
            dcc.Graph(
                id={"type": f"{graph_type}-graph", "name": name},
                config=GRAPH_CONFIG,
                figure=placeholder_figure(title),
            ),
            # Set by the browser when a panel far down the page comes into view (assets/cggm_dash.js).
            dcc.Store(id={"type": f"{graph_type}-vis", "name": name}),
        ],
        className="panel",
    )


def export_href(path: str, keys: Sequence[str], **params: Any) -> str:
    """/export/… link with repeated keys= (a key may hold a comma)."""
    pairs = [("keys", k) for k in keys] + [(k, v) for k, v in params.items() if v is not None]
    return f"{path}?{urlencode(pairs)}" if pairs else path
