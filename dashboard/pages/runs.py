"""Runs page `/`: every run in a filterable, sortable table (metrics as numbers: `>0.96` filters);
select several → Compare; group by any setting (seed repeats above all) with mean ± std and n;
delete (confirmed, with a 10 s undo), rename, tag, note. An empty backend shows how to start.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, dash_table, dcc, html
from dash.dash_table.Format import Format, Scheme

from dashboard import api, catalog
from dashboard.deletions import UNDO_S, Deletions
from dashboard.groups import group_runs, grouping_options, stat
from dashboard.tables import run_rows

dash.register_page(__name__, path="/", title="Runs — CGGM Monitor", name="Runs")

REFRESH_MS = 3000
NUMBER = Format(precision=4, scheme=Scheme.fixed)
COLUMNS: list[dict[str, Any]] = [
    {"id": "id", "name": "id", "presentation": "markdown"},
    {"id": "name", "name": "name"},
    {"id": "status", "name": "status"},
    {"id": "waiting", "name": "waiting for"},
    {"id": "dataset", "name": "dataset"},
    {"id": "method", "name": "method"},
    {"id": "settings", "name": "key settings"},
    {"id": "metric", "name": "metric"},
    {"id": "final", "name": "final val", "type": "numeric", "format": NUMBER},
    {"id": "best", "name": "best val", "type": "numeric", "format": NUMBER},
    {"id": "test", "name": "test", "type": "numeric", "format": NUMBER},
    {"id": "dominant", "name": "dominant"},
    {"id": "tags", "name": "tags"},
    {"id": "created", "name": "created"},
    {"id": "duration", "name": "duration"},
]

DELETIONS = Deletions(lambda run_id: api.client().delete_run(run_id))


def layout(**_query: Any) -> html.Div:
    return html.Div(
        [
            html.H2("Runs"),
            html.Div(
                [
                    html.H3("No runs yet"),
                    html.P(
                        "Start a first run from the New run page: pick a dataset and a method, press Start; a "
                        "worker (cggm up starts one) trains it and its page shows it live. Runs of your own "
                        "scripts appear here too (cggm train --server URL)."
                    ),
                    dcc.Link("Start your first run →", href="/new", id="runs-empty-start", className="button primary"),
                ],
                id="runs-empty",
                className="empty",
                style={"display": "none"},
            ),
            html.Div(
                [
                    dcc.Link("New run", href="/new"),
                    html.A("Compare selected", id="runs-compare-link", href="/compare", className="compare"),
                    html.Button("Delete selected", id="runs-delete"),
                    html.Span("", id="runs-action-result"),
                    html.Button("Undo", id="runs-undo", style={"display": "none"}),
                    html.Label("group by"),
                    dcc.Dropdown(id="runs-group", placeholder="no grouping", style={"width": 240}),
                ],
                className="row",
            ),
            dcc.ConfirmDialog(id="runs-confirm-delete"),
            dcc.Store(id="runs-undo-token"),
            html.Div(id="runs-groups"),
            dash_table.DataTable(
                id="runs-table",
                columns=COLUMNS,
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
                # Key settings wrap instead of being cut off.
                style_cell_conditional=[
                    {"if": {"column_id": "settings"}, "whiteSpace": "normal", "height": "auto", "minWidth": 220}
                ],
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
            dcc.Interval(id="runs-undo-close", interval=int(UNDO_S * 1000), disabled=True, max_intervals=1),
            dcc.Store(id="runs-version", data=0),
        ]
    )


@dash.callback(
    Output("runs-table", "data"),
    Output("runs-table", "selected_rows"),
    Output("runs-empty", "style"),
    Output("runs-group", "options"),
    Output("runs-groups", "children"),
    Input("runs-refresh", "n_intervals"),
    Input("runs-version", "data"),
    Input("runs-group", "value"),
    Input("backend-epoch", "data"),
    State("runs-table", "data"),
    State("runs-table", "selected_rows"),
)
def refresh_runs(_n, _version, group_by, _backend, old_rows, selected):
    client = api.client()
    hidden = DELETIONS.hidden()
    runs = [r for r in client.list_runs() if int(r["id"]) not in hidden]
    failures = DELETIONS.take_failures()
    if failures:
        dash.set_props("runs-action-result", {"children": "; ".join(failures)})
    rows = run_rows(runs, catalog.catalog())
    # Keep the selection by run id: new runs at the top shift every row index.
    chosen = {old_rows[i]["run_id"] for i in (selected or []) if old_rows and i < len(old_rows)}
    empty = {"display": "block"} if not runs and not hidden else {"display": "none"}
    options = grouping_options([r.get("config") or {} for r in runs]) if len(runs) > 1 else []
    return (
        rows,
        [i for i, r in enumerate(rows) if r["run_id"] in chosen],
        empty,
        options,
        _groups_table(runs, rows, group_by),
    )


def _groups_table(runs: list[dict], rows: list[dict], group_by: str | None) -> list[Any]:
    if not group_by or not runs:
        return []
    by_id = {r["run_id"]: r for r in rows}
    out = []
    for g in group_runs(runs, group_by):
        cells = [by_id[i] for i in g.run_ids]
        final, test = stat([c["final"] for c in cells]), stat([c["test"] for c in cells])
        out.append(
            {
                "group": g.label,
                "n": len(g.run_ids),
                "runs": ", ".join(str(i) for i in g.run_ids),
                "final val": final.text() if final else "",
                "test": test.text() if test else "",
            }
        )
    return [
        html.H3(f"Grouped by {group_by}"),
        dash_table.DataTable(
            id="runs-groups-table",
            data=out,
            columns=[{"id": c, "name": c} for c in ("group", "n", "runs", "final val", "test")],
            style_cell={"textAlign": "left", "fontSize": 13},
        ),
    ]


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
    Output("runs-confirm-delete", "message"),
    Output("runs-confirm-delete", "displayed"),
    Output("runs-action-result", "children", allow_duplicate=True),
    Input("runs-delete", "n_clicks"),
    State("runs-table", "data"),
    State("runs-table", "selected_rows"),
    prevent_initial_call=True,
)
def ask_delete(_n, rows, selected):
    ids = _selected_ids(rows, selected)
    if not ids:
        return dash.no_update, False, "select one or more runs first"
    names = [f"{r['run_id']} ({r['name']})" for r in rows if r["run_id"] in ids]
    msg = f"Delete {len(ids)} run(s) with their metrics and logs: {', '.join(names)}? You can undo for {UNDO_S:g} s."
    return msg, True, ""


@dash.callback(
    Output("runs-version", "data"),
    Output("runs-action-result", "children", allow_duplicate=True),
    Output("runs-undo", "style"),
    Output("runs-undo-token", "data"),
    Output("runs-undo-close", "disabled"),
    Output("runs-undo-close", "n_intervals"),
    Input("runs-confirm-delete", "submit_n_clicks"),
    Input("runs-undo", "n_clicks"),
    Input("runs-undo-close", "n_intervals"),
    State("runs-table", "data"),
    State("runs-table", "selected_rows"),
    State("runs-undo-token", "data"),
    State("runs-version", "data"),
    prevent_initial_call=True,
)
def delete_or_undo(_confirm, _undo, closed, rows, selected, token, version):
    shown, hidden = {"display": "inline-block"}, {"display": "none"}
    trigger = dash.ctx.triggered_id
    if trigger == "runs-confirm-delete":
        ids = _selected_ids(rows, selected)
        if not ids:
            return dash.no_update, "select one or more runs first", hidden, None, True, 0
        pending = DELETIONS.schedule(ids)
        text = f"deleted {len(ids)} run(s): {', '.join(map(str, ids))} — undo within {UNDO_S:g} s"
        return version + 1, text, shown, pending.token, False, 0
    if trigger == "runs-undo":
        if token and DELETIONS.undo(token):
            return version + 1, "delete undone", hidden, None, True, 0
        return version + 1, "too late to undo: the runs are deleted", hidden, None, True, 0
    # The undo window closed.
    return version + 1, dash.no_update, hidden, None, True, 0


@dash.callback(
    Output("runs-version", "data", allow_duplicate=True),
    Output("runs-action-result", "children", allow_duplicate=True),
    Input("runs-edit-save", "n_clicks"),
    State("runs-table", "data"),
    State("runs-table", "selected_rows"),
    State("runs-edit-name", "value"),
    State("runs-edit-tags", "value"),
    State("runs-edit-notes", "value"),
    State("runs-version", "data"),
    prevent_initial_call=True,
)
def save_edit(_save, rows, selected, name, tags, notes, version):
    ids = _selected_ids(rows, selected)
    if len(ids) != 1:
        return dash.no_update, "select exactly one run to edit"
    tag_list = [t.strip() for t in (tags or "").split(",") if t.strip()]
    api.client().update_run(ids[0], name=name or None, tags=tag_list, notes=notes or "")
    return version + 1, f"saved run {ids[0]}"
