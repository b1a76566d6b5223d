"""Runs page `/`: every run in a filterable, sortable table; select several → Compare; delete, rename, tag, note."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import api
from dashboard.safety import safe_callback
from dashboard.tables import run_rows

dash.register_page(__name__, path="/", title="Runs — CGGM Monitor", name="Runs")

REFRESH_MS = 3000
COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("status", "status"),
    ("waiting", "waiting for"),
    ("dataset", "dataset"),
    ("method", "method"),
    ("settings", "key settings"),
    ("final", "final val"),
    ("test", "test"),
    ("dominant", "dominant"),
    ("tags", "tags"),
    ("created", "created"),
    ("duration", "duration"),
]


def layout(**_query: Any) -> html.Div:
    return html.Div(
        [
            html.H2("Runs"),
            html.Div(
                [
                    dcc.Link("New run", href="/new"),
                    html.A("Compare selected", id="runs-compare-link", href="/compare", className="compare"),
                    html.Button("Delete selected", id="runs-delete"),
                    html.Span("", id="runs-action-result"),
                ],
                className="row",
            ),
            dash_table.DataTable(
                id="runs-table",
                columns=[
                    {"id": cid, "name": name, "presentation": "markdown"} if cid == "id" else {"id": cid, "name": name}
                    for cid, name in COLUMNS
                ],
                data=[],
                row_selectable="multi",
                selected_rows=[],
                filter_action="native",
                sort_action="native",
                sort_mode="multi",
                page_action="native",
                page_size=50,
                markdown_options={"link_target": "_self"},
                style_cell={"textAlign": "left", "fontSize": 13, "maxWidth": 260, "overflow": "hidden"},
                style_header={"fontWeight": "bold"},
            ),
            html.H3("Edit selected run"),
            html.Div(
                [
                    dcc.Input(id="runs-edit-name", placeholder="name", debounce=False),
                    dcc.Input(id="runs-edit-tags", placeholder="tags, comma-separated"),
                    dcc.Textarea(id="runs-edit-notes", placeholder="notes", style={"width": 400, "height": 50}),
                    html.Button("Save", id="runs-edit-save"),
                ],
                className="row",
            ),
            dcc.Interval(id="runs-refresh", interval=REFRESH_MS),
            dcc.Store(id="runs-version", data=0),
        ]
    )


@dash.callback(
    Output("runs-table", "data"),
    Output("runs-table", "selected_rows"),
    Input("runs-refresh", "n_intervals"),
    Input("runs-version", "data"),
    State("runs-table", "data"),
    State("runs-table", "selected_rows"),
)
@safe_callback
def refresh_runs(_n: int | None, _version: int, old_rows: list[dict] | None, selected: list[int] | None):
    client = api.client()
    rows = run_rows(client.list_runs(), client.catalog())
    # Keep the selection by run id: new runs at the top shift every row index.
    chosen = {old_rows[i]["run_id"] for i in (selected or []) if old_rows and i < len(old_rows)}
    return rows, [i for i, r in enumerate(rows) if r["run_id"] in chosen]


def _selected_ids(rows: list[dict] | None, selected: list[int] | None) -> list[int]:
    return [rows[i]["run_id"] for i in (selected or []) if rows and i < len(rows)]


@dash.callback(
    Output("runs-compare-link", "href"),
    Output("runs-edit-name", "value"),
    Output("runs-edit-tags", "value"),
    Output("runs-edit-notes", "value"),
    Input("runs-table", "selected_rows"),
    State("runs-table", "data"),
)
def on_select(selected: list[int] | None, rows: list[dict] | None):
    ids = _selected_ids(rows, selected)
    href = "/compare?runs=" + ",".join(str(i) for i in ids)
    if len(ids) == 1 and rows:
        row = next(r for r in rows if r["run_id"] == ids[0])
        return href, row["name"], row["tags"], row["notes"]
    return href, "", "", ""


@dash.callback(
    Output("runs-version", "data"),
    Output("runs-action-result", "children"),
    Input("runs-delete", "n_clicks"),
    Input("runs-edit-save", "n_clicks"),
    State("runs-table", "data"),
    State("runs-table", "selected_rows"),
    State("runs-edit-name", "value"),
    State("runs-edit-tags", "value"),
    State("runs-edit-notes", "value"),
    State("runs-version", "data"),
    prevent_initial_call=True,
)
@safe_callback
def act_on_selection(_del, _save, rows, selected, name, tags, notes, version):
    ids = _selected_ids(rows, selected)
    if not ids:
        return dash.no_update, "select one or more runs first"
    client = api.client()
    if dash.ctx.triggered_id == "runs-delete":
        for run_id in ids:
            client.delete_run(run_id)
        return version + 1, f"deleted {len(ids)} run(s)"
    if dash.ctx.triggered_id == "runs-edit-save":
        if len(ids) != 1:
            return dash.no_update, "select exactly one run to edit"
        tag_list = [t.strip() for t in (tags or "").split(",") if t.strip()]
        client.update_run(ids[0], name=name or None, tags=tag_list, notes=notes or "")
        return version + 1, f"saved run {ids[0]}"
    raise PreventUpdate
