"""New run page `/new`: a form generated from GET /api/catalog; single run or a sweep launched as a group.

Nothing here names a dataset, method or setting: a method added to the backend's registry shows
up in the form by itself. Values are sent as typed text converted to the setting's type; bounds
are the backend's to check, and its 422 message is shown inline.
"""

from __future__ import annotations

import time
from typing import Any

import dash
from dash import ALL, Input, Output, State, dcc, html

from dashboard import api
from dashboard.api import ApiError
from dashboard.configs import format_setting
from dashboard.form_values import convert
from dashboard.forms import build_configs, settings_for
from dashboard.safety import safe_callback

dash.register_page(__name__, path="/new", title="New run — CGGM Monitor", name="New run")


def layout(**_query: Any) -> html.Div:
    return html.Div(
        [
            html.H2("New run"),
            dcc.Store(id="new-catalog"),
            html.Div(
                [
                    html.Label("dataset"),
                    dcc.Dropdown(id="new-dataset", clearable=False, style={"width": 260}),
                    html.Label("method"),
                    dcc.Dropdown(id="new-method", clearable=False, style={"width": 260}),
                    html.Label("name"),
                    dcc.Input(id="new-name", placeholder="optional", style={"width": 240}),
                    html.Label("tags"),
                    dcc.Input(id="new-tags", placeholder="comma-separated", style={"width": 240}),
                ],
                className="row",
            ),
            html.Div(id="new-help", className="help"),
            html.Div(id="new-fields"),
            html.H3("Sweep (optional)"),
            html.P(
                "Values separated by commas or spaces (text settings: by ';'). One run per combination, "
                "all on the same data and seed, tagged with one group tag.",
                className="help",
            ),
            html.Div(
                [
                    dcc.Dropdown(id="sweep-setting-1", placeholder="setting 1", style={"width": 220}),
                    dcc.Input(id="sweep-values-1", placeholder="e.g. 0.5, 1.0, 1.3", style={"width": 200}),
                    dcc.Dropdown(id="sweep-setting-2", placeholder="setting 2", style={"width": 220}),
                    dcc.Input(id="sweep-values-2", placeholder="values", style={"width": 200}),
                ],
                className="row",
            ),
            html.Div(
                [
                    html.Label("methods"),
                    dcc.Dropdown(id="sweep-methods", multi=True, placeholder="several methods", style={"width": 420}),
                ],
                className="row",
            ),
            html.Div(
                [html.Button("Start", id="new-submit", className="primary"), html.Span(id="new-count")],
                className="row",
            ),
            html.Div(id="new-error", className="error"),
            html.Div(id="new-result"),
        ]
    )


def _field(setting: dict[str, Any]) -> Any:
    sid = {"type": "setting", "name": setting["name"]}
    default = setting.get("default")
    if setting.get("choices"):
        return dcc.Dropdown(
            id=sid, options=[{"label": str(c), "value": c} for c in setting["choices"]], value=default, clearable=False
        )
    if setting["type"] == "bool":
        return dcc.Dropdown(
            id=sid,
            options=[{"label": "true", "value": "true"}, {"label": "false", "value": "false"}],
            value="true" if default else "false",
            clearable=False,
        )
    return dcc.Input(id=sid, type="text", value=format_setting(default), style={"width": 240})


def _bounds(setting: dict[str, Any]) -> str:
    lo, hi = setting.get("min"), setting.get("max")
    if lo is None and hi is None:
        return ""
    return f" [{format_setting(lo) if lo is not None else '−∞'}, {format_setting(hi) if hi is not None else '∞'}]"


def form_rows(settings: list[tuple[str, dict]]) -> list[Any]:
    rows: list[Any] = []
    for section, s in settings:
        rows += [
            html.Label(f"{s['name']} ({section})", htmlFor=s["name"]),
            _field(s),
            html.Span(f"{s.get('help', '')} — {s['type']}{_bounds(s)}", className="help"),
        ]
    return [html.Div(rows, className="form-grid")]


@dash.callback(
    Output("new-catalog", "data"),
    Output("new-dataset", "options"),
    Output("new-dataset", "value"),
    Output("new-method", "options"),
    Output("new-method", "value"),
    Output("sweep-methods", "options"),
    Input("new-catalog", "id"),
)
@safe_callback
def load_catalog(_id: str):
    catalog = api.client().catalog()
    datasets = [d["name"] for d in catalog.get("datasets", [])]
    methods = [m["name"] for m in catalog.get("methods", [])]
    return (
        catalog,
        datasets,
        datasets[0] if datasets else None,
        methods,
        methods[0] if methods else None,
        methods,
    )


@dash.callback(
    Output("new-fields", "children"),
    Output("new-help", "children"),
    Output("sweep-setting-1", "options"),
    Output("sweep-setting-2", "options"),
    Input("new-dataset", "value"),
    Input("new-method", "value"),
    State("new-catalog", "data"),
)
def show_fields(dataset: str | None, method: str | None, catalog: dict | None):
    if not catalog:
        return [], "", [], []
    settings = settings_for(catalog, dataset, method)
    helps = [
        i.get("help", "")
        for key in ("datasets", "methods")
        for i in catalog.get(key, [])
        if i["name"] in (dataset, method)
    ]
    names = [s["name"] for _, s in settings]
    return form_rows(settings), " · ".join(h for h in helps if h), names, names


@dash.callback(
    Output("new-error", "children"),
    Output("new-result", "children"),
    Input("new-submit", "n_clicks"),
    State("new-dataset", "value"),
    State("new-method", "value"),
    State("new-name", "value"),
    State("new-tags", "value"),
    State({"type": "setting", "name": ALL}, "value"),
    State({"type": "setting", "name": ALL}, "id"),
    State("sweep-setting-1", "value"),
    State("sweep-values-1", "value"),
    State("sweep-setting-2", "value"),
    State("sweep-values-2", "value"),
    State("sweep-methods", "value"),
    State("new-catalog", "data"),
    prevent_initial_call=True,
)
@safe_callback
def submit(_n, dataset, method, name, tags, values, ids, s1, v1, s2, v2, methods, catalog):
    if not catalog or not dataset or not method:
        return "the catalog has not loaded yet", dash.no_update
    kinds = {s["name"]: s["type"] for _, s in settings_for(catalog, dataset, method)}
    base: dict[str, Any] = {"dataset": dataset, "method": method}
    for sid, value in zip(ids, values, strict=True):
        setting = sid["name"]
        if value is None or (isinstance(value, str) and value.strip() == "" and kinds.get(setting) != "str"):
            continue  # empty: the backend's default
        try:
            base[setting] = convert(value, kinds.get(setting, "str"))
        except ValueError as e:
            return f"{setting}: {e}", dash.no_update
    method_settings = {m["name"]: [s["name"] for s in m["settings"]] for m in catalog.get("methods", [])}
    try:
        configs = build_configs(base, kinds, [(s1, v1), (s2, v2)], methods, method_settings)
    except ValueError as e:
        return str(e), dash.no_update
    tag_list = [t.strip() for t in (tags or "").split(",") if t.strip()]
    sweep = len(configs) > 1
    if sweep:
        tag_list.append(f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    client = api.client()
    created: list[dict[str, Any]] = []
    for label, config in configs:
        run_name = f"{name} {label}".strip() if name else (label or None)
        try:
            created.append(client.create_run(config, name=run_name, tags=tag_list))
        except ApiError as e:
            done = f" ({len(created)} of {len(configs)} runs were created before this)" if created else ""
            return f"Rejected{' at ' + label if sweep else ''}: {e.message}{done}", _links(created)
    return "", _links(created)


def _links(runs: list[dict[str, Any]]) -> list[Any]:
    if not runs:
        return []
    items = [html.Li(dcc.Link(f"run {r['id']}: {r.get('name', '')}", href=f"/runs/{int(r['id'])}")) for r in runs]
    out: list[Any] = [html.P(f"Created {len(runs)} run(s):", className="ok"), html.Ul(items)]
    if len(runs) > 1:
        ids = ",".join(str(int(r["id"])) for r in runs)
        out.append(dcc.Link("Compare them", href=f"/compare?runs={ids}", id="new-compare-link"))
    return out
