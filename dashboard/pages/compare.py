"""Compare page `/compare?runs=1,2,3`: the balance view, the settings that differ, final metrics (best
marked; grouped with mean ± std and n), parallel coordinates for a sweep, small multiples and overlays.

The server sends what to draw and the raw points into `cmp-data`; the browser draws them, so
smoothing, x axis, scale, shared/independent axes and bands never wait for the server.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import ALL, MATCH, ClientsideFunction, Input, Output, State, clientside_callback, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import api, catalog, figures
from dashboard.balance import best_balanced, metric_of, probe_scores, unimodal_ceilings, weak_modality
from dashboard.compare_view import default_overlay_keys, final_table, overlay, probe_bars, sid, small_multiples
from dashboard.components import GRAPH_CONFIG, chart_panel, export_href, query_choice, view_controls
from dashboard.configs import differing_rows, differing_settings
from dashboard.decode import Series
from dashboard.families import SCALES
from dashboard.groups import SEED_REPEATS, group_runs, grouping_options
from dashboard.payload import encode_all
from dashboard.run_view import run_context
from dashboard.tables import final_metrics, run_label

dash.register_page(__name__, path="/compare", title="Compare — CGGM Monitor", name="Compare")

# Points per series: an overlay is a panel wide; a small multiple's column is 1/n of it, so it
# needs fewer (10 runs × a dozen keys stay a small first load).
OVERLAY_POINTS = 600
SMALL_MULTIPLE_POINTS = 1200
MAX_RUNS = 20


def parse_ids(text: str | None) -> list[int]:
    out: list[int] = []
    for part in (text or "").replace(" ", ",").split(","):
        if part.strip().isdigit() and int(part) not in out:
            out.append(int(part))
    return out[:MAX_RUNS]


def layout(runs: str | None = None, **query: Any) -> html.Div:
    ids = parse_ids(runs)
    keys = [k for k in str(query.get("keys", "")).split(",") if k]
    return html.Div(
        [
            html.H2(f"Compare runs {', '.join(map(str, ids))}" if ids else "Compare: select runs on the Runs page"),
            dcc.Store(id="cmp-ids", data=ids),
            dcc.Store(id="cmp-query", data=dict(query)),
            dcc.Store(id="cmp-data"),
            dcc.Store(id="cmp-url"),
            # Every chart here comes with the first callback's answer; this one, empty and hidden, is in
            # the layout so that plotly.js (~1 s to load and compile here) starts loading at once.
            dcc.Graph(
                id="cmp-preload",
                style={"display": "none"},
                config={"displayModeBar": False},
                figure={"data": [], "layout": {}},
            ),
            view_controls(
                "cmp",
                query,
                [
                    dcc.Checklist(
                        id="cmp-shared",
                        options=[{"label": " shared y axes (side by side)", "value": "shared"}],
                        value=["shared"] if query.get("axes") == "shared" else [],
                        inline=True,
                    ),
                    html.Div(
                        [
                            html.Label("group runs by "),
                            dcc.Dropdown(
                                id="cmp-group",
                                value=query.get("group") or None,
                                # The URL's choice is an option from the start: Dash would drop an unknown value.
                                options=[{"label": query["group"], "value": query["group"]}]
                                if query.get("group")
                                else [],
                                placeholder="no grouping",
                                style={"width": 260},
                            ),
                            dcc.RadioItems(
                                id="cmp-band",
                                options=[
                                    {"label": " mean ± std", "value": "std"},
                                    {"label": " min–max", "value": "minmax"},
                                ],
                                value=query_choice(query, "band", ["std", "minmax"], "std"),
                                inline=True,
                            ),
                        ],
                        className="row",
                    ),
                ],
            ),
            html.Div(
                [
                    html.Label("overlay metrics"),
                    dcc.Dropdown(
                        id="cmp-overlay-keys",
                        multi=True,
                        value=keys or None,
                        placeholder="keys to overlay",
                        style={"width": 600},
                    ),
                ],
                className="row",
            ),
            html.Div(id="cmp-balance"),
            html.H3("Settings that differ"),
            dash_table.DataTable(id="cmp-diff", data=[], columns=[], style_cell={"textAlign": "left", "fontSize": 13}),
            html.H3("Final metrics"),
            html.P(
                "Best of each row in bold (by the metric's direction: higher accuracy, lower loss).", className="help"
            ),
            dash_table.DataTable(id="cmp-final", data=[], columns=[], style_cell={"textAlign": "left", "fontSize": 13}),
            html.Div(id="cmp-parallel"),
            html.H3("Side by side"),
            html.Div(id="cmp-multiples"),
            html.H3("Overlays"),
            html.Div(id="cmp-overlays", className="panels"),
        ]
    )


def _graph_panels(specs: list[dict[str, Any]], query: dict[str, Any], csv: dict[str, str]) -> list[Any]:
    return [
        chart_panel(
            "cmp",
            s["id"],
            scale=query_choice(query, f"scale.{s['id']}", SCALES, s["scale"]),
            csv_href=csv.get(s["id"]),
            title=s.get("title", ""),
        )
        for s in specs
    ]


def _balance_section(
    runs: list[dict[str, Any]],
    specs: list[dict[str, Any]],
    query: dict[str, Any],
    data_settings: list[str],
    everyone: list[dict[str, Any]],
) -> list[Any]:
    scores = {int(r["id"]): probe_scores(r) for r in runs}
    weak = weak_modality(runs)
    lines: list[Any] = []
    if weak is not None:
        lines.append(html.Li(f"weak modality: {weak} (lowest mean probe score over these runs)"))
    ranking = best_balanced(runs)
    if ranking:
        best = ranking[0]
        label = run_label(next(r for r in runs if int(r["id"]) == best.run_id))
        lines.append(
            html.Li(
                f"best balanced: {label} — probe gap {best.gap:.3f} between its strongest and weakest modality "
                f"(weakest at {best.weakest:.3f})",
                id="cmp-best-balanced",
            )
        )
    ceilings: list[Any] = []
    for r in runs:
        if (r.get("config") or {}).get("method") == "unimodal":
            continue
        for c in unimodal_ceilings(r, everyone, data_settings):
            ceilings.append(html.Li(c.text(run_label(r)), className="ceiling"))
    if not ceilings:
        ceilings = [
            html.Li(
                "No finished unimodal run of the same data to compare against: start one per modality "
                "(method unimodal, same dataset, data settings and data_seed) to see each modality's ceiling.",
                className="help",
            )
        ]
    # What the probes report: each task's batch metric ε (dice, sign_acc), not the run's headline metric.
    metric = " / ".join(dict.fromkeys(metric_of(r) for r in runs))
    out: list[Any] = [
        html.H3("Balance"),
        html.Ul(lines),
        html.H4("Each modality against its own unimodal ceiling (probe)"),
        html.Ul(ceilings, id="cmp-ceilings"),
        html.Div(_graph_panels(specs, query, {}), className="panels"),
    ]
    if any(scores.values()):
        out.append(
            html.Div(
                dcc.Graph(id="cmp-probe-bars", config=GRAPH_CONFIG, figure=probe_bars(runs, scores, metric)),
                className="panel",
            )
        )
    return out


def _parallel(runs: list[dict[str, Any]], swept: list[str]) -> list[Any]:
    metric = (runs[0].get("summary") or {}).get("metric", "acc")
    prow = [{"config": r.get("config") or {}, "metrics": final_metrics(r)} for r in runs]
    figure = figures.build_parallel_figure(prow, swept, f"val/{metric}")
    return [html.Div(dcc.Graph(id="cmp-parallel-fig", config=GRAPH_CONFIG, figure=figure), className="panel")]


@dash.callback(
    Output("cmp-parallel", "children", allow_duplicate=True),
    Input("cmp-parallel-show", "n_clicks"),
    State("cmp-ids", "data"),
    prevent_initial_call=True,
)
def show_parallel(n_clicks: int | None, ids: list[int]) -> list[Any]:
    if not n_clicks:  # the button was just added to the page (Dash calls for new components too)
        raise PreventUpdate
    runs = [api.client().get_run(i) for i in ids]
    return _parallel(runs, differing_settings({str(r["id"]): r.get("config") or {} for r in runs}))


OUTPUTS = {
    "data": Output("cmp-data", "data"),
    "diff": Output("cmp-diff", "data"),
    "diff_columns": Output("cmp-diff", "columns"),
    "final": Output("cmp-final", "data"),
    "final_columns": Output("cmp-final", "columns"),
    "final_styles": Output("cmp-final", "style_data_conditional"),
    "parallel": Output("cmp-parallel", "children"),
    "multiples": Output("cmp-multiples", "children"),
    "overlays": Output("cmp-overlays", "children"),
    "balance": Output("cmp-balance", "children"),
    "overlay_options": Output("cmp-overlay-keys", "options"),
    "overlay_value": Output("cmp-overlay-keys", "value"),
    "group_options": Output("cmp-group", "options"),
}


@dash.callback(
    output=OUTPUTS,
    inputs={
        "ids": Input("cmp-ids", "data"),
        "overlay_keys": Input("cmp-overlay-keys", "value"),
        "group_by": Input("cmp-group", "value"),
        "_backend": Input("backend-epoch", "data"),
        "query": State("cmp-query", "data"),
    },
)
def render(ids: list[int], overlay_keys: list[str] | None, group_by: str | None, _backend: Any, query: dict | None):
    query = query or {}
    client = api.client()
    runs = [client.get_run(i) for i in ids]
    empty = {name: [] for name in OUTPUTS} | {"data": None, "overlay_value": dash.no_update}
    if not runs:
        return empty
    families = catalog.families()
    cat = catalog.catalog()
    configs = {str(r["id"]): r.get("config") or {} for r in runs}
    keys_by_run = {int(r["id"]): client.keys(int(r["id"])) for r in runs}
    all_keys = sorted({k for ks in keys_by_run.values() for k in ks})
    overlay_keys = [k for k in (overlay_keys or []) if k in all_keys] or default_overlay_keys(all_keys, families)
    groups = group_runs(runs, group_by) if group_by else None

    multiples = small_multiples(families, runs, keys_by_run)
    overlays = [overlay(families, k, runs, groups, present=keys_by_run) for k in overlay_keys]
    weak = weak_modality(runs)
    balance_specs = []
    if weak is not None:
        for key, title in ((f"acc/{weak}", f"acc/{weak} — the weak modality's aux accuracy, per run"),):
            if key in all_keys:
                balance_specs.append(
                    overlay(families, key, runs, groups, panel_id="cmp-bal-weak", title=title, present=keys_by_run)
                )
    if "imbalance/acc_gap" in all_keys:
        balance_specs.append(
            overlay(
                families,
                "imbalance/acc_gap",
                runs,
                groups,
                panel_id="cmp-bal-gap",
                title="imbalance/acc_gap — the modality gap over time, per run",
                present=keys_by_run,
            )
        )

    wide: dict[int, set[str]] = {int(r["id"]): set() for r in runs}  # drawn a panel wide
    narrow: dict[int, set[str]] = {int(r["id"]): set() for r in runs}  # drawn in one column of n
    for specs, into in ((multiples, narrow), ([*overlays, *balance_specs], wide)):
        for spec in specs:
            for t in spec["traces"]:
                rid, _, key = t["sid"].partition("|")
                into[int(rid)].add(key)
    column_points = max(100, SMALL_MULTIPLE_POINTS // len(runs))
    series: dict[str, Any] = {}
    contexts: dict[str, Any] = {}
    for r in runs:
        rid = int(r["id"])
        fetched: dict[str, Series] = {}
        wide_keys = sorted(wide[rid] | ({"epoch"} & set(keys_by_run[rid])))
        narrow_keys = sorted(narrow[rid] - set(wide_keys))
        for keys, points in ((wide_keys, OVERLAY_POINTS), (narrow_keys, column_points)):
            if keys:
                fetched.update(client.metrics(rid, keys=keys, max_points=points))
        epochs = fetched.pop("epoch", None)
        contexts[str(rid)] = run_context(r, epochs)
        series.update(encode_all({sid(rid, k): s for k, s in fetched.items()}, rid))

    data = {
        "token": "cmp",
        "run_id": None,
        "runs": contexts,
        "series": series,
        "panels": [*multiples, *overlays, *balance_specs],
    }
    rows, columns, styles = final_table(families, runs, groups)
    parallel: list[Any] = []
    swept = differing_settings(configs)
    if len(runs) >= 3 and swept:
        # Drawn at once for a sweep (its runs share the sweep tag), on request otherwise: parcoords is
        # WebGL, ~1.7 s of a page's load with software GL (bench/dashboard_pages.py).
        tags = [{t for t in r.get("tags") or [] if t.startswith("sweep-")} for r in runs]
        if set.intersection(*tags):
            parallel = _parallel(runs, swept)
        else:
            parallel = [
                html.Button(f"Parallel coordinates of {', '.join(swept)}", id="cmp-parallel-show", className="link")
            ]
    datasets = {d["name"]: [s["name"] for s in d.get("settings", [])] for d in cat.get("datasets", [])}
    data_settings = datasets.get(str(configs[str(runs[0]["id"])].get("dataset")), [])
    everyone = client.list_runs() if balance_specs or weak is not None else []
    csv = {
        s["id"]: export_href("/export/compare.csv", sorted({t["sid"] for t in s["traces"]}))
        for s in [*multiples, *overlays]
    }
    return {
        "data": data,
        "diff": differing_rows(configs),
        "diff_columns": [{"id": "setting", "name": "setting"}]
        + [{"id": str(r["id"]), "name": run_label(r)} for r in runs],
        "final": rows,
        "final_columns": columns,
        "final_styles": styles,
        "parallel": parallel,
        "multiples": _graph_panels(multiples, query, csv),
        "overlays": _graph_panels(overlays, query, csv),
        "balance": _balance_section(runs, balance_specs, query, data_settings, everyone),
        "overlay_options": all_keys,
        "overlay_value": overlay_keys,
        "group_options": [{"label": o, "value": o} for o in grouping_options(list(configs.values()))],
    }


clientside_callback(
    ClientsideFunction("cggm", "drawComparePanel"),
    Output({"type": "cmp-graph", "name": MATCH}, "figure"),
    Input("cmp-data", "data"),
    Input("cmp-smoothing", "value"),
    Input("cmp-xmode", "value"),
    Input({"type": "cmp-scale", "name": MATCH}, "value"),
    Input("cmp-shared", "value"),
    Input("cmp-band", "value"),
    Input({"type": "cmp-vis", "name": MATCH}, "data"),
    State({"type": "cmp-graph", "name": MATCH}, "id"),
)

clientside_callback(
    ClientsideFunction("cggm", "compareUrl"),
    Output("cmp-url", "data"),
    Input("cmp-smoothing", "value"),
    Input("cmp-xmode", "value"),
    Input("cmp-shared", "value"),
    Input("cmp-band", "value"),
    Input("cmp-group", "value"),
    Input("cmp-overlay-keys", "value"),
    Input({"type": "cmp-scale", "name": ALL}, "value"),
    State({"type": "cmp-scale", "name": ALL}, "id"),
    State("cmp-data", "data"),
    prevent_initial_call=True,
)

__all__ = ["SEED_REPEATS", "layout", "parse_ids"]
