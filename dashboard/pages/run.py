"""Run page `/runs/<id>`: status, progress, Stop; summary card; dominance strip; a panel per key family; config; log.

The server sends what to draw and the raw points into `run-data`; the browser draws
(assets/cggm_plot.js), so smoothing, x axis and scale toggles never wait for the server. A live
tick sends only the points after what the page holds (`live_session`: the page acknowledges the
response it applied) and the text outputs that changed; the interval stops when the run ends.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from typing import Any
from urllib.parse import parse_qs

import dash
from dash import (
    MATCH,
    ClientsideFunction,
    Input,
    Output,
    State,
    clientside_callback,
    dash_table,
    dcc,
    html,
)

from dashboard import api, catalog
from dashboard import app as app_module
from dashboard.api import ApiError
from dashboard.components import GRAPH_CONFIG, chart_panel, export_href, query_choice, view_controls
from dashboard.configs import format_setting
from dashboard.decode import Series
from dashboard.digest import DIGESTS
from dashboard.families import SCALES
from dashboard.figures import placeholder_figure
from dashboard.live_session import SESSIONS, Cursor
from dashboard.payload import encode_all, encode_delta, encode_value
from dashboard.progress import EPOCH_KEY, Progress, run_timing
from dashboard.run_view import dominance_spec, downsample_note, drawn_keys, eps_label, run_context, run_panels
from dashboard.summary import summary_card

dash.register_page(__name__, path_template="/runs/<run_id>", title="Run — CGGM Monitor", name="Run")

ACTIVE = {"queued", "running", "stopping"}
# Per series on a full render; the server keeps each bucket's extremes and the first and last
# point. 1,500 points per trace keep a 10-key page's first render small (bench/dashboard_load.py).
MAX_POINTS = 1500
FULL_RENDER_TIMEOUT_S = 60.0  # a long run's first read may take seconds; live ticks keep the short one
LOG_LINES = 200
SUMMARY_POLL_MS = 5000


def layout(run_id: str | None = None, **query: Any) -> html.Div:
    try:
        rid = int(run_id or "")
    except ValueError:
        return html.Div([html.H2("No such run"), html.P(f"'{run_id}' is not a run id.", className="error")])
    return html.Div(
        [
            dcc.Store(id="run-id", data=rid),
            dcc.Store(id="run-query", data=dict(query)),
            dcc.Store(id="run-data"),
            dcc.Store(id="run-delta"),
            dcc.Store(id="run-ack"),
            dcc.Store(id="run-reload"),
            dcc.Store(id="run-digest"),
            dcc.Store(id="run-summary-hash"),
            dcc.Store(id="run-url"),
            dcc.Interval(id="run-poll", interval=app_module.settings["poll_interval_ms"], disabled=True),
            dcc.Interval(id="run-summary-poll", interval=SUMMARY_POLL_MS, disabled=True),
            html.Div(
                [
                    html.H2(f"Run {rid}", id="run-title"),
                    html.Span("…", id="run-status", className="status"),
                    html.Span("", id="run-progress"),
                    html.Progress(id="run-progress-bar", max=1, value=0, style={"width": 200}),
                    html.Span("", id="run-timing"),
                    html.Button("Stop", id="run-stop", disabled=True),
                    html.Span("", id="run-stop-result"),
                ],
                className="row",
            ),
            html.Div("", id="run-error", className="error"),
            html.Div("", id="run-waiting", className="waiting"),  # why a queued run waits (no worker can run it)
            html.Div(id="run-summary", className="summary"),
            view_controls("run", query),
            html.Ul(id="run-dominance-now"),
            html.Div(
                dcc.Graph(
                    id={"type": "run-strip", "name": "run-dominance"},
                    config=GRAPH_CONFIG,
                    figure=placeholder_figure("dominance: which modality leads, over time", height=180),
                ),
                className="panel",
            ),
            html.Div(id="run-panels", className="panels"),
            html.H3("Config"),
            dash_table.DataTable(
                id="run-config",
                columns=[{"id": "setting", "name": "setting"}, {"id": "value", "name": "value"}],
                data=[],
                style_cell={"textAlign": "left", "fontSize": 13},
                page_action="none",
            ),
            html.H3("Log"),
            html.Pre([], id="run-log", className="log"),
        ]
    )


# ---- the text outputs both the full render and a tick set --------------------------------------

TEXT_OUTPUTS = {
    "title": ("run-title", "children"),
    "status": ("run-status", "children"),
    "status_class": ("run-status", "className"),
    "progress": ("run-progress", "children"),
    "progress_value": ("run-progress-bar", "value"),
    "timing": ("run-timing", "children"),
    "error": ("run-error", "children"),
    "waiting": ("run-waiting", "children"),
    "stop_disabled": ("run-stop", "disabled"),
    "poll_disabled": ("run-poll", "disabled"),
    "summary_poll_disabled": ("run-summary-poll", "disabled"),
}


def _texts(run: dict[str, Any], progress: Progress) -> dict[str, Any]:
    fraction, progress_text = progress.fraction(run.get("config") or {})
    if run["status"] == "finished":
        fraction = 1.0
    active = run["status"] in ACTIVE
    return {
        "title": f"Run {run['id']}: {run.get('name', '')}",
        "status": run["status"],
        "status_class": f"status status-{run['status']}",
        "progress": progress_text,
        "progress_value": fraction or 0,
        "timing": run_timing(run, fraction),
        "error": run.get("error") or "",
        "waiting": run.get("waiting_reason") or "",  # absent from older backends
        "stop_disabled": run["status"] not in ("queued", "running"),  # nothing left to stop
        "poll_disabled": not active,
        "summary_poll_disabled": not active,
    }


def _events(client: api.ApiClient, run_id: int, after: int) -> tuple[list[str], int]:
    events = client.events(run_id, after_id=after)
    lines = [f"{time.strftime('%H:%M:%S', time.localtime(e['time']))} {e['level']:7} {e['message']}\n" for e in events]
    return lines, (events[-1]["id"] if events else after)


def _panel_components(run_id: int, specs: list[dict[str, Any]], query: dict[str, Any]) -> list[Any]:
    out = []
    for spec in specs:
        scale = query_choice(query, f"scale.{spec['family']}", SCALES, spec["scale"])
        href = export_href(f"/export/runs/{run_id}.csv", spec["keys"])
        out.append(chart_panel("run", spec["id"], scale=scale, csv_href=href, title=spec["title"]))
    return out


def _not_found(run_id: int, message: str) -> dict[str, Any]:
    out: dict[str, Any] = {name: dash.no_update for name in FULL_OUTPUTS}
    out.update(
        title=f"Run {run_id} not found",
        status="not found",
        status_class="status status-failed",
        error=message,
        poll_disabled=True,
        summary_poll_disabled=True,
        stop_disabled=True,
        panels=[],
    )
    return out


FULL_OUTPUTS: dict[str, Output] = {
    "data": Output("run-data", "data"),
    "ack": Output("run-ack", "data"),
    "panels": Output("run-panels", "children"),
    "config": Output("run-config", "data"),
    "log": Output("run-log", "children"),
    **{name: Output(cid, prop) for name, (cid, prop) in TEXT_OUTPUTS.items()},
}


@dash.callback(
    output=FULL_OUTPUTS,
    inputs={
        "run_id": Input("run-id", "data"),
        "_reload": Input("run-reload", "data"),
        "_backend": Input("backend-epoch", "data"),
        "query": State("run-query", "data"),
        "search": State("run-url", "data"),
    },
)
def render_run(
    run_id: int, _reload: Any, _backend: Any, query: dict[str, Any] | None, search: str | None
) -> dict[str, Any]:
    # Rendered again (a new panel, a restart): the view as the address bar has it now.
    if search is not None:
        query = {k: v[-1] for k, v in parse_qs(search).items()}
    client = api.client()
    try:
        run = client.get_run(run_id)
    except ApiError as e:
        if e.status == 404:
            return _not_found(run_id, f"There is no run {run_id} (it may have been deleted). {e.message}")
        raise
    families = catalog.families()
    wanted = drawn_keys(families, client.keys(run_id))
    fetched = (
        client.metrics(run_id, keys=wanted, max_points=MAX_POINTS, timeout_s=FULL_RENDER_TIMEOUT_S) if wanted else {}
    )
    epochs = fetched.pop(EPOCH_KEY, None)
    config = run.get("config") or {}
    log_every = config.get("log_every") if isinstance(config.get("log_every"), int) else None
    notes = {
        k: downsample_note(s, MAX_POINTS, log_every, per_step=families.info(k).family.when == "step")
        for k, s in fetched.items()
    }
    specs = run_panels(families, fetched, notes)
    dom = dominance_spec(families, fetched, eps_label(run, catalog.catalog()))
    lines, events_after = _events(client, run_id, 0)
    lines = lines[-LOG_LINES:]
    progress = Progress()
    progress.track({**fetched, **({EPOCH_KEY: epochs} if epochs is not None else {})})
    texts = _texts(run, progress)
    last = {k: s.steps[-1] for k, s in fetched.items() if len(s)}
    if epochs is not None and len(epochs):
        last[EPOCH_KEY] = epochs.steps[-1]
    cursor = Cursor(
        last=last,
        events_after=events_after,
        log_lines=len(lines),
        sent=texts,
        specs={spec["id"]: spec for spec in specs},
        dominance=dom,
        progress=progress,
    )
    session = SESSIONS.start(run_id, cursor)
    data = {
        "token": session.token,
        "seq": 0,
        "run_id": run_id,
        "text_outputs": TEXT_OUTPUTS,
        "log": lines,
        "log_max": LOG_LINES,
        "runs": {str(run_id): run_context(run, epochs)},
        "series": encode_all(fetched, run_id),
        "panels": specs,
        "dominance": dom,
        "rev": 0,
    }
    return {
        "data": data,
        "ack": {"token": session.token, "seq": 0},
        "panels": _panel_components(run_id, specs, query or {}),
        "config": [{"setting": k, "value": format_setting(v)} for k, v in config.items()],
        "log": lines,
        **texts,
    }


# A tick has one output: Dash sends every output's id up with each request, so the text outputs
# travel inside the delta and the browser sets them (set_props in cggm_dash.js merge), only those
# that changed. A family seen for the first time needs a new panel: the page renders again (a
# component added by a tick would be added twice when two ticks started from one state).
TICK_OUTPUTS: dict[str, Output] = {"delta": Output("run-delta", "data")}


@dash.callback(
    output=TICK_OUTPUTS,
    inputs={"_n": Input("run-poll", "n_intervals"), "ack": State("run-ack", "data"), "run_id": State("run-id", "data")},
    prevent_initial_call=True,
)
def tick_run(_n: int | None, ack: dict[str, Any] | None, run_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {name: dash.no_update for name in TICK_OUTPUTS}
    ack = ack or {}
    session = SESSIONS.get(ack.get("token"), run_id)
    base_seq = int(ack.get("seq", -1))
    base = session.base(base_seq) if session else None
    if session is None or base is None:
        out["delta"] = {"reload": True}  # this server does not know the page's state (restarted?)
        return out
    client = api.client()
    with session.lock:
        run = client.get_run(run_id)
        families = catalog.families()
        groups: dict[int | None, list[str]] = {}
        for k in drawn_keys(families, client.keys(run_id)):
            groups.setdefault(base.last.get(k), []).append(k)
        fresh: dict[str, Series] = {}
        for since, group in groups.items():
            for k, s in client.metrics(run_id, keys=group, since_step=since).items():
                s = s.after(base.last[k]) if k in base.last else s
                if len(s):
                    fresh[k] = s
        last = base.last | {k: s.steps[-1] for k, s in fresh.items()}
        progress = copy.deepcopy(base.progress)
        progress.track(fresh)
        epochs_new = fresh.pop(EPOCH_KEY, None)
        delta: dict[str, Any] = {"token": session.token, "base": base_seq, "groups": encode_delta(fresh)}
        if epochs_new is not None:
            delta["epochs"] = {str(run_id): {"s": epochs_new.steps, "v": [encode_value(v) for v in epochs_new.values]}}
        # A key or family seen for the first time: its panel's spec goes again (a new panel: its component too).
        keys_now = [k for k in last if k != EPOCH_KEY]
        notes = {t["sid"]: spec["note"] for spec in base.specs.values() for t in spec["traces"] if spec["note"]}
        specs = {spec["id"]: spec for spec in run_panels(families, keys_now, notes)}
        if set(specs) - set(base.specs):
            out["delta"] = {"reload": True}
            return out
        changed = [spec for pid, spec in specs.items() if base.specs.get(pid) != spec]
        if changed:
            delta["panels"] = changed
        dom = dominance_spec(families, keys_now, eps_label(run, catalog.catalog()))
        if dom != base.dominance:
            delta["dominance"] = dom
        lines, events_after = _events(client, run_id, base.events_after)
        if lines:
            delta["log"] = lines
        texts = _texts(run, progress)
        changed_texts = {name: value for name, value in texts.items() if base.sent.get(name) != value}
        if changed_texts:
            delta["texts"] = changed_texts
        delta["seq"] = session.commit(
            base.advanced(
                last=last,
                events_after=events_after,
                log_lines=min(base.log_lines + len(lines), LOG_LINES),
                sent=texts,
                specs=specs,
                dominance=dom,
                progress=progress,
            )
        )
    out["delta"] = delta
    return out


# ---- the summary card and the digest (exact statistics), refreshed every few seconds while running


@dash.callback(
    Output("run-summary", "children"),
    Output("run-digest", "data"),
    Output("run-dominance-now", "children"),
    Output("run-summary-hash", "data"),
    Input("run-id", "data"),
    Input("run-summary-poll", "n_intervals"),
    Input("run-status", "children"),
    State("run-summary-hash", "data"),
)
def refresh_summary(run_id: int, _n: int | None, _status: str | None, sent_hash: str | None):
    client = api.client()
    try:
        run = client.get_run(run_id)
    except ApiError as e:
        if e.status == 404:
            return [], {}, [], None
        raise
    families = catalog.families()
    keys = client.keys(run_id)
    digest = DIGESTS.get(run_id, run.get("created_at"))
    digest.refresh(client, keys, finished=run["status"] not in ACTIVE)
    eps = eps_label(run, catalog.catalog())
    doc = digest.to_json(eps)
    latest = client.latest(run_id) if not run.get("summary") else {}
    card = summary_card(run, digest, families, latest, eps)
    # Sent again only when it changed: a running run's page asks every few seconds.
    digest_hash = hashlib.sha1(json.dumps([doc, repr(card)], sort_keys=True, default=str).encode()).hexdigest()[:16]
    if digest_hash == sent_hash:
        return dash.no_update, dash.no_update, dash.no_update, dash.no_update
    return card, doc, [html.Li(line) for line in doc["now"]], digest_hash


@dash.callback(
    Output("run-stop-result", "children"),
    Input("run-stop", "n_clicks"),
    State("run-id", "data"),
    prevent_initial_call=True,
)
def stop(_n: int, run_id: int) -> str:
    run = api.client().stop_run(run_id)
    return f"stop requested: {run['status']}"


# ---- drawing, in the browser ----------------------------------------------------------------------

clientside_callback(
    ClientsideFunction("cggm", "merge"),
    Output("run-data", "data", allow_duplicate=True),
    Output("run-ack", "data", allow_duplicate=True),
    Input("run-delta", "data"),
    State("run-data", "data"),
    prevent_initial_call=True,
)

clientside_callback(
    ClientsideFunction("cggm", "drawRunPanel"),
    Output({"type": "run-graph", "name": MATCH}, "figure"),
    Input("run-data", "data"),
    Input("run-smoothing", "value"),
    Input("run-xmode", "value"),
    Input({"type": "run-scale", "name": MATCH}, "value"),
    Input("run-digest", "data"),
    Input({"type": "run-vis", "name": MATCH}, "data"),
    State({"type": "run-graph", "name": MATCH}, "id"),
)

clientside_callback(
    ClientsideFunction("cggm", "drawDominance"),
    Output({"type": "run-strip", "name": "run-dominance"}, "figure"),
    Input("run-data", "data"),
    Input("run-xmode", "value"),
)

clientside_callback(
    ClientsideFunction("cggm", "runUrl"),
    Output("run-url", "data"),
    Input("run-smoothing", "value"),
    Input("run-xmode", "value"),
    Input({"type": "run-scale", "name": dash.ALL}, "value"),
    State({"type": "run-scale", "name": dash.ALL}, "id"),
    State("run-data", "data"),
    prevent_initial_call=True,
)
