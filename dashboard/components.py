"""Layout pieces shared by pages: view controls (smoothing, x axis, log scale) and the graph config."""

from __future__ import annotations

from typing import Any

from dash import MATCH, Input, Output, State, callback, dcc, html

from .figures import figure_to_csv

# Plotly's own toImage button is the PNG export; keep it, drop the clutter.
GRAPH_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "toImageButtonOptions": {"format": "png", "scale": 2},
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
}


def view_controls(prefix: str, with_symlog: bool = False) -> html.Div:
    """Smoothing slider, x axis (step / time since start / wall time), log y. Ids: '<prefix>-smoothing' etc."""
    options = [{"label": " log y", "value": "log"}]
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
                        value=0,
                        marks={0: "0", 0.6: "0.6", 0.9: "0.9", 0.99: "0.99"},
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
                        options=[
                            {"label": " step", "value": "step"},
                            {"label": " time since start", "value": "relative"},
                            {"label": " wall time", "value": "wall"},
                        ],
                        value="step",
                        inline=True,
                    ),
                ]
            ),
            dcc.Checklist(id=f"{prefix}-logy", options=options, value=[], inline=True),
        ],
        className="controls",
    )


def graph_id(name: str) -> dict[str, str]:
    """Graphs have pattern ids so that one CSV callback serves every graph on every page."""
    return {"type": "graph", "name": name}


def panel(name: str, title: str = "", figure: Any = None) -> html.Div:
    """A graph with a CSV button (what the graph shows) beside Plotly's own PNG button."""
    return html.Div(
        [
            dcc.Graph(
                id=graph_id(name),
                config=GRAPH_CONFIG,
                figure=figure if figure is not None else {"layout": {"title": {"text": title}, "height": 300}},
            ),
            html.Button("CSV", id={"type": "csv-button", "name": name}, className="csv"),
            dcc.Download(id={"type": "csv-download", "name": name}),
        ],
        className="panel",
    )


@callback(
    Output({"type": "csv-download", "name": MATCH}, "data"),
    Input({"type": "csv-button", "name": MATCH}, "n_clicks"),
    State({"type": "graph", "name": MATCH}, "figure"),
    State({"type": "graph", "name": MATCH}, "id"),
    prevent_initial_call=True,
)
def export_csv(_n: int, figure: dict[str, Any] | None, gid: dict[str, str]) -> dict[str, Any]:
    return dcc.send_string(figure_to_csv(figure or {}), f"{gid['name']}.csv")
