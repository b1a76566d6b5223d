"""Run page `/runs/<id>`: status, progress, Stop; dominance strip; a panel per metric family; config; log.

A full render (page load, view controls) and the live ticks are two callbacks with the same
named outputs. A tick reads only points after the last step drawn per key (the `LiveState` in
`run-live`) and appends them with `Patch()`; the interval is disabled once the run ends.
"""

from __future__ import annotations

import time
from typing import Any

import dash
from dash import Input, Output, Patch, State, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import api, live
from dashboard import app as app_module
from dashboard.components import graph_id, panel, view_controls
from dashboard.configs import format_setting
from dashboard.live_state import LiveState, View
from dashboard.panels import BY_ID, PANEL_IDS
from dashboard.progress import timing
from dashboard.safety import safe_callback

dash.register_page(__name__, path_template="/runs/<run_id>", title="Run — CGGM Monitor", name="Run")

ACTIVE = {"queued", "running", "stopping"}
# Per series on a full render; the server keeps each bucket's extremes and the first and last
# point. 1,500 points per trace keep a 10-key page's first render small (bench/dashboard_load.py).
MAX_POINTS = 1500
FULL_RENDER_TIMEOUT_S = 60.0  # a long run's first read may take seconds; live ticks keep the short one
LOG_LINES = 200


def layout(run_id: str | None = None, **_query: Any) -> html.Div:
    try:
        rid = int(run_id or "")
    except ValueError:
        return html.Div([html.H2("No such run"), html.P(f"'{run_id}' is not a run id.")])
    return html.Div(
        [
            dcc.Store(id="run-id", data=rid),
            dcc.Store(id="run-live"),
            dcc.Interval(id="run-poll", interval=app_module.settings["poll_interval_ms"], disabled=False),
            html.Div(
                [
                    html.H2(f"Run {rid}", id="run-title"),
                    html.Span("…", id="run-status", className="status"),
                    html.Span("", id="run-progress"),
                    html.Progress(id="run-progress-bar", max=1, value=0, style={"width": 200}),
                    html.Span("", id="run-timing"),
                    html.Button("Stop", id="run-stop"),
                    html.Span("", id="run-stop-result"),
                ],
                className="row",
            ),
            html.Div("", id="run-error", className="error"),
            view_controls("run"),
            html.Ul(id="run-dominance-now"),
            panel("run-dominance"),
            html.Div([panel(f"run-panel-{pid}", BY_ID[pid].title) for pid in PANEL_IDS], className="panels"),
            html.H3("Config"),
            dash_table.DataTable(
                id="run-config",
                columns=[{"id": "setting", "name": "setting"}, {"id": "value", "name": "value"}],
                data=[],
                style_cell={"textAlign": "left", "fontSize": 13},
                page_action="none",
            ),
            html.H3("Log"),
            html.Pre("", id="run-log", className="log"),
        ]
    )


def _patch(ops: list[live.Op]) -> Any:
    if not ops:
        return dash.no_update
    p = Patch()
    for op in ops:
        if op[0] == "extend":
            _, i, pts = op
            for field, values in pts.items():
                p["data"][i][field].extend(values)
        elif op[0] == "add":
            p["data"].append(op[1])
        elif op[0] == "layout":
            _, path, value = op
            target = p["layout"]
            parts = path.split(".")
            for part in parts[:-1]:
                target = target[part]
            target[parts[-1]] = value
    return p


def _config_rows(run: dict[str, Any]) -> list[dict[str, str]]:
    return [{"setting": k, "value": format_setting(v)} for k, v in (run.get("config") or {}).items()]


OUTPUTS: dict[str, Output] = {
    **{f"panel:{pid}": Output(graph_id(f"run-panel-{pid}"), "figure") for pid in PANEL_IDS},
    "dominance": Output(graph_id("run-dominance"), "figure"),
    "state": Output("run-live", "data"),
    "dominance_now": Output("run-dominance-now", "children"),
    "config": Output("run-config", "data"),
    "poll_disabled": Output("run-poll", "disabled"),
    "title": Output("run-title", "children"),
    "status": Output("run-status", "children"),
    "status_class": Output("run-status", "className"),
    "progress": Output("run-progress", "children"),
    "progress_value": Output("run-progress-bar", "value"),
    "timing": Output("run-timing", "children"),
    "error": Output("run-error", "children"),
    "log": Output("run-log", "children"),
    "stop_disabled": Output("run-stop", "disabled"),
}
VIEW_INPUTS = {"smoothing": "run-smoothing", "x_mode": "run-xmode", "log_y": "run-logy"}


# Two callbacks on purpose: Dash drops the response of a callback when a newer request for the same
# callback is sent, so a live tick arriving during a slow first render (a long run) used to throw
# that render away, forever (bench/dashboard_load.py). The full render and the ticks are separate.
@dash.callback(
    output=OUTPUTS,
    inputs={
        "run_id": Input("run-id", "data"),
        **{name: Input(cid, "value") for name, cid in VIEW_INPUTS.items()},
    },
)
@safe_callback
def render_run(run_id: int, smoothing: float, x_mode: str, log_y: list[str]) -> dict[str, Any]:
    view = View.from_controls(smoothing, x_mode, log_y)
    client = api.client()
    run = client.get_run(run_id)
    wanted = live.wanted_keys(client.keys(run_id))
    series = (
        client.metrics(run_id, keys=wanted, max_points=MAX_POINTS, timeout_s=FULL_RENDER_TIMEOUT_S) if wanted else {}
    )
    figs, dom_fig, state = live.initial_render(series, view, run.get("started_at") or run.get("created_at"))
    out = {f"panel:{pid}": figs[pid] for pid in PANEL_IDS}
    out["dominance"] = dom_fig
    out["config"] = _config_rows(run)
    return {**out, **_status_outputs(client, run, state)}


@dash.callback(
    output={name: Output(o.component_id, o.component_property, allow_duplicate=True) for name, o in OUTPUTS.items()},
    inputs={
        "_n": Input("run-poll", "n_intervals"),
        "run_id": State("run-id", "data"),
        **{name: State(cid, "value") for name, cid in VIEW_INPUTS.items()},
        "state_doc": State("run-live", "data"),
    },
    prevent_initial_call=True,
)
@safe_callback
def tick_run(
    _n: int | None, run_id: int, smoothing: float, x_mode: str, log_y: list[str], state_doc: dict | None
) -> dict[str, Any]:
    view = View.from_controls(smoothing, x_mode, log_y)
    state = LiveState.from_json(state_doc) if state_doc else None
    if state is None or state.view != view:
        raise PreventUpdate  # the full render has not landed yet (or is being redone for a new view)
    client = api.client()
    run = client.get_run(run_id)
    new: dict[str, Any] = {}
    for since, keys in live.fetch_groups(state, client.keys(run_id)):
        new.update(client.metrics(run_id, keys=keys, since_step=since))
    ops, dom_ops = live.apply_update(state, new)
    out: dict[str, Any] = {f"panel:{pid}": _patch(ops[pid]) for pid in PANEL_IDS}
    out["dominance"] = _patch(dom_ops)
    out["config"] = dash.no_update
    return {**out, **_status_outputs(client, run, state)}


def _status_outputs(client: api.ApiClient, run: dict[str, Any], state: LiveState) -> dict[str, Any]:
    """The outputs both callbacks set from the run and the state: status, progress, timing, log."""
    events = client.events(run["id"], after_id=state.events_after)
    if events:
        state.events_after = events[-1]["id"]
        lines = [
            f"{time.strftime('%H:%M:%S', time.localtime(e['time']))} {e['level']:7} {e['message']}" for e in events
        ]
        state.log = (state.log + lines)[-LOG_LINES:]
    fraction, progress_text = state.progress.fraction(run.get("config") or {})
    if run["status"] == "finished":
        fraction = 1.0
    return {
        "state": state.to_json(),
        "dominance_now": [html.Li(line) for line in state.dom.describe_now()],
        "poll_disabled": run["status"] not in ACTIVE,
        "title": f"Run {run['id']}: {run.get('name', '')}",
        "status": run["status"],
        "status_class": f"status status-{run['status']}",
        "progress": progress_text,
        "progress_value": fraction or 0,
        "timing": timing(run, fraction),
        "error": run.get("error") or "",
        "log": "\n".join(state.log),
        "stop_disabled": run["status"] not in ("queued", "running"),  # nothing left to stop
    }


@dash.callback(
    Output("run-stop-result", "children"),
    Input("run-stop", "n_clicks"),
    State("run-id", "data"),
    prevent_initial_call=True,
)
@safe_callback
def stop(_n: int, run_id: int) -> str:
    run = api.client().stop_run(run_id)
    return f"stop requested: {run['status']}"
