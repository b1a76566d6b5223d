"""Run page `/runs/<id>`: status, progress, Stop; dominance strip; a panel per metric family; config; log.

One callback does both the full render (page load, view controls) and the live tick, so that a
tick can never land on figures drawn for another view. A tick reads only points after the last
step drawn per key and appends them with `Patch()`; the interval is disabled once the run ends.
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
from dashboard.safety import safe_callback
from dashboard.series import format_setting

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
            html.Div("", id="run-waiting", className="waiting"),  # why a queued run waits (no worker can run it)
            view_controls("run"),
            html.Ul(id="run-dominance-now"),
            panel("run-dominance"),
            html.Div([panel(f"run-panel-{pid}", live.PANEL_TITLES[pid]) for pid in live.PANEL_IDS], className="panels"),
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


def _timing(run: dict[str, Any], fraction: float | None) -> str:
    start = run.get("started_at")
    if not start:
        return "not started"
    end = run.get("ended_at") or time.time()
    elapsed = max(end - start, 0.0)
    text = f"elapsed {_hms(elapsed)}"
    if run.get("status") == "running" and fraction and 0 < fraction < 1:
        text += f" · ETA {_hms(elapsed * (1 - fraction) / fraction)}"
    return text


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _config_rows(run: dict[str, Any]) -> list[dict[str, str]]:
    return [{"setting": k, "value": format_setting(v)} for k, v in (run.get("config") or {}).items()]


N_OUT = len(live.PANEL_IDS)


OUTPUTS = [
    *[Output(graph_id(f"run-panel-{pid}"), "figure") for pid in live.PANEL_IDS],
    Output(graph_id("run-dominance"), "figure"),
    Output("run-live", "data"),
    Output("run-dominance-now", "children"),
    Output("run-config", "data"),
    Output("run-poll", "disabled"),
    Output("run-title", "children"),
    Output("run-status", "children"),
    Output("run-status", "className"),
    Output("run-progress", "children"),
    Output("run-progress-bar", "value"),
    Output("run-timing", "children"),
    Output("run-error", "children"),
    Output("run-log", "children"),
    Output("run-stop", "disabled"),
    Output("run-waiting", "children"),
]


# Two callbacks on purpose: Dash drops the response of a callback when a newer request for the same
# callback is sent, so a live tick arriving during a slow first render (a long run) used to throw
# that render away, forever (bench/dashboard_load.py). The full render and the ticks are separate.
@dash.callback(
    *OUTPUTS,
    Input("run-id", "data"),
    Input("run-smoothing", "value"),
    Input("run-xmode", "value"),
    Input("run-logy", "value"),
    State("run-live", "data"),
)
@safe_callback
def render_run(run_id: int, smoothing: float, x_mode: str, log_y: list[str], state: dict | None):
    return _update(run_id, smoothing, x_mode, log_y, state, full=True)


@dash.callback(
    *[Output(o.component_id, o.component_property, allow_duplicate=True) for o in OUTPUTS],
    Input("run-poll", "n_intervals"),
    State("run-id", "data"),
    State("run-smoothing", "value"),
    State("run-xmode", "value"),
    State("run-logy", "value"),
    State("run-live", "data"),
    prevent_initial_call=True,
)
@safe_callback
def tick_run(_n: int | None, run_id: int, smoothing: float, x_mode: str, log_y: list[str], state: dict | None):
    view = {"smoothing": float(smoothing or 0.0), "x_mode": x_mode or "step", "log_y": "log" in (log_y or [])}
    if state is None or state.get("view") != view:
        raise PreventUpdate  # the full render has not landed yet (or is being redone for a new view)
    return _update(run_id, smoothing, x_mode, log_y, state, full=False)


def _update(run_id: int, smoothing: float, x_mode: str, log_y: list[str], state: dict | None, full: bool) -> tuple:
    client = api.client()
    run = client.get_run(run_id)
    active = run["status"] in ACTIVE
    view = {"smoothing": float(smoothing or 0.0), "x_mode": x_mode or "step", "log_y": "log" in (log_y or [])}
    if full:
        keys = client.keys(run_id)
        wanted = [k for k in keys if live.panel_of(k) is not None or k == live.EPOCH_KEY]
        series = (
            client.metrics(run_id, keys=wanted, max_points=MAX_POINTS, timeout_s=FULL_RENDER_TIMEOUT_S)
            if wanted
            else {}
        )
        t0 = run.get("started_at") or run.get("created_at")
        figs, dom_fig, state = live.initial_render(series, view, t0)
        state["events_after"] = 0
        state["log"] = []
        panel_out = [figs[pid] for pid in live.PANEL_IDS]
        dom_out: Any = dom_fig
        config_out: Any = _config_rows(run)
    else:
        assert state is not None
        new: dict[str, Any] = {}
        for since, keys in live.fetch_groups(state, client.keys(run_id)):
            new.update(client.metrics(run_id, keys=keys, since_step=since))
        ops, dom_ops, state = live.apply_update(state, new)
        panel_out = [_patch(ops[pid]) for pid in live.PANEL_IDS]
        dom_out = _patch(dom_ops)
        config_out = dash.no_update
    events = client.events(run_id, after_id=state.get("events_after", 0))
    if events:
        state["events_after"] = events[-1]["id"]
        lines = [
            f"{time.strftime('%H:%M:%S', time.localtime(e['time']))} {e['level']:7} {e['message']}" for e in events
        ]
        state["log"] = (state.get("log", []) + lines)[-LOG_LINES:]
    fraction, progress_text = live.progress(run.get("config") or {}, state["progress"])
    if run["status"] == "finished":
        fraction = 1.0
    return (
        *panel_out,
        dom_out,
        state,
        [html.Li(line) for line in live.describe_now(state)],
        config_out,
        not active,
        f"Run {run_id}: {run.get('name', '')}",
        run["status"],
        f"status status-{run['status']}",
        progress_text,
        fraction or 0,
        _timing(run, fraction),
        run.get("error") or "",
        "\n".join(state.get("log", [])),
        run["status"] not in ("queued", "running"),  # nothing left to stop
        run.get("waiting_reason") or "",  # absent from older backends
    )


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
