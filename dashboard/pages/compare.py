"""Compare page `/compare?runs=1,2,3`: small multiples and overlays per metric, the settings that
differ, final metrics, and parallel coordinates for a sweep."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, dash_table, dcc, html

from dashboard import api, figures
from dashboard.components import panel, view_controls
from dashboard.configs import differing_rows, differing_settings
from dashboard.decode import Series
from dashboard.safety import safe_callback
from dashboard.tables import final_metrics, final_rows, run_label

dash.register_page(__name__, path="/compare", title="Compare — CGGM Monitor", name="Compare")

FAMILIES = ["acc", "grad_norm", "coef", "cos"]
MAX_POINTS = 2000


def parse_ids(text: str | None) -> list[int]:
    out: list[int] = []
    for part in (text or "").replace(" ", ",").split(","):
        if part.strip().isdigit() and int(part) not in out:
            out.append(int(part))
    return out


def layout(runs: str | None = None, **_query: Any) -> html.Div:
    ids = parse_ids(runs)
    return html.Div(
        [
            html.H2(f"Compare runs {', '.join(map(str, ids))}" if ids else "Compare: select runs on the Runs page"),
            dcc.Store(id="cmp-ids", data=ids),
            view_controls("cmp"),
            html.Div(
                [
                    html.Label("overlay metrics"),
                    dcc.Dropdown(
                        id="cmp-overlay-keys", multi=True, placeholder="keys to overlay", style={"width": 600}
                    ),
                ],
                className="row",
            ),
            html.H3("Settings that differ"),
            dash_table.DataTable(id="cmp-diff", data=[], columns=[], style_cell={"textAlign": "left", "fontSize": 13}),
            html.H3("Final metrics"),
            dash_table.DataTable(id="cmp-final", data=[], columns=[], style_cell={"textAlign": "left", "fontSize": 13}),
            html.Div(id="cmp-parallel"),
            html.H3("Side by side"),
            html.Div(id="cmp-multiples"),
            html.H3("Overlays"),
            html.Div(id="cmp-overlays", className="panels"),
        ]
    )


def _columns(runs: list[dict[str, Any]], first: str) -> list[dict[str, str]]:
    return [{"id": first, "name": first}] + [{"id": str(r["id"]), "name": run_label(r)} for r in runs]


@dash.callback(
    Output("cmp-diff", "data"),
    Output("cmp-diff", "columns"),
    Output("cmp-final", "data"),
    Output("cmp-final", "columns"),
    Output("cmp-parallel", "children"),
    Output("cmp-multiples", "children"),
    Output("cmp-overlays", "children"),
    Output("cmp-overlay-keys", "options"),
    Output("cmp-overlay-keys", "value"),
    Input("cmp-ids", "data"),
    Input("cmp-smoothing", "value"),
    Input("cmp-xmode", "value"),
    Input("cmp-logy", "value"),
    Input("cmp-overlay-keys", "value"),
    State("cmp-overlay-keys", "options"),
)
@safe_callback
def render(ids, smoothing, x_mode, log_y, overlay_keys, overlay_options):
    client = api.client()
    runs = [client.get_run(i) for i in ids]
    if not runs:
        return [], [], [], [], [], [], [], [], []
    configs = {str(r["id"]): r.get("config") or {} for r in runs}
    diff = differing_rows(configs)
    finals = final_rows(runs)
    smoothing = float(smoothing or 0.0)
    x_mode = x_mode or "step"
    log = "log" in (log_y or [])
    all_keys = sorted({k for r in runs for k in client.keys(r["id"])})
    if overlay_keys is None or not overlay_options:
        overlay_keys = [k for k in all_keys if k in ("train/loss",) or (k.startswith("val/") and k.count("/") == 1)][:4]
    wanted = [k for k in all_keys if k.split("/")[0] in FAMILIES and k.count("/") == 1] + list(overlay_keys)
    data: dict[str, dict[str, Series]] = {}
    for r in runs:
        data[run_label(r)] = client.metrics(r["id"], keys=sorted(set(wanted)), max_points=MAX_POINTS)
    multiples = [
        panel(
            f"cmp-sm-{fam}",
            figure=figures.build_small_multiples_figure(
                data, prefix=fam, smoothing=smoothing, x_mode=x_mode, log_y=log, symlog_y=fam == "coef"
            ),
        )
        for fam in FAMILIES
        if any(k.startswith(fam + "/") for d in data.values() for k in d)
    ]
    overlays = [
        panel(
            f"cmp-ov-{key.replace('/', '-')}",
            figure=figures.build_overlay_figure(
                {label: d[key] for label, d in data.items() if key in d},
                title=key,
                smoothing=smoothing,
                x_mode=x_mode,
                log_y=log,
            ),
        )
        for key in overlay_keys
    ]
    parallel: list[Any] = []
    swept = [s for s in differing_settings(configs)]
    if len(runs) >= 3 and swept:
        metric = (runs[0].get("summary") or {}).get("metric", "acc")
        rows = [{"label": run_label(r), "config": r.get("config") or {}, "metrics": final_metrics(r)} for r in runs]
        parallel = [panel("cmp-parallel-fig", figure=figures.build_parallel_figure(rows, swept, f"val/{metric}"))]
    return (
        diff,
        _columns(runs, "setting"),
        finals,
        _columns(runs, "metric"),
        parallel,
        multiples,
        overlays,
        all_keys,
        overlay_keys,
    )
