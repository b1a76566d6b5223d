"""New run page `/new`: a form generated from GET /api/catalog; a single run, a sweep, seed repeats.

Nothing here names a dataset, method or setting: a method added to the backend's registry shows
up in the form by itself, in sections (data, method, training; advanced settings folded), with
the settings the chosen variant ignores hidden (the catalog's `shown_when`) and comma lists of
known values (`multi_choices`, e.g. mfeat's views) as multi-selects. Each field is checked as it
is typed (type, finiteness, bounds) and its message shown beside it; the backend checks again,
and a 422 naming a setting is shown beside that setting too.

A model dropdown offers the models that read the dataset's inputs (its default first), with the
model's settings. A preset dropdown offers the catalog's presets that fit the dataset and method
(dashboard.presets); choosing one fills the fields it sets, each marked "from preset"; a field
edited after shows the user's value and the preset's beside it, and the user's is posted (explicit
settings win, as on the backend). The posted job carries `"preset": name`. A preset that no longer
fits after the dataset or method changes is cleared, and the fields it filled go back to their
defaults.
"""

from __future__ import annotations

import re
import time
from typing import Any

import dash
from dash import ALL, MATCH, Input, Output, State, dcc, html

from dashboard import api, catalog, presets
from dashboard.api import ApiError
from dashboard.configs import format_setting
from dashboard.form_values import check_setting
from dashboard.forms import (
    MAX_SWEEP_RUNS,
    build_configs,
    default_model,
    models_for,
    sections,
    seed_values,
    settings_for,
    visible,
)

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
                    html.Label("model"),
                    dcc.Dropdown(id="new-model", clearable=False, style={"width": 200}),
                ],
                className="row",
            ),
            html.Div("loading the catalog…", id="new-help", className="help"),
            html.Div(
                [
                    html.Label("preset"),
                    dcc.Dropdown(
                        id="new-preset",
                        placeholder="none: the defaults below",
                        clearable=True,
                        style={"width": 260},
                    ),
                    html.Span("", id="new-preset-help", className="help"),
                ],
                className="row",
            ),
            # The preset the fields were last filled from, and its values: {"name", "values"}.
            dcc.Store(id="new-preset-shown", data={"name": None, "values": {}}),
            html.Div(id="new-fields"),
            html.Details(
                [
                    html.Summary("Sweep and repeats (optional)"),
                    html.P(
                        "Values separated by commas or spaces (text settings: by ';'). One run per combination, "
                        "all on the same data, tagged with one group tag.",
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
                            dcc.Dropdown(
                                id="sweep-methods", multi=True, placeholder="several methods", style={"width": 420}
                            ),
                        ],
                        className="row",
                    ),
                    html.Div(
                        [
                            html.Label("repeat with seeds 0…k, k ="),
                            dcc.Input(id="sweep-seeds", type="text", placeholder="e.g. 4", style={"width": 80}),
                            html.Span("(seed repeats make mean ± std bands in Compare)", className="help"),
                        ],
                        className="row",
                    ),
                ],
                id="new-sweep",
                open=bool(_query.get("sweep")),
            ),
            html.Div(
                [
                    html.Label("name"),
                    dcc.Input(id="new-name", placeholder="optional", style={"width": 240}),
                    html.Label("tags"),
                    dcc.Input(id="new-tags", placeholder="comma-separated", style={"width": 240}),
                ],
                className="row",
            ),
            html.Div(
                [
                    html.Button("Start", id="new-submit", className="primary"),
                    html.Span("", id="new-count", className="help"),
                ],
                className="row",
            ),
            html.Div(id="new-error", className="error"),
            html.Div(id="new-result"),
        ]
    )


def _field(setting: dict[str, Any], value: Any) -> Any:
    """The input for one setting, holding `value` (typed, or a form field's raw value)."""
    sid = {"type": "setting", "name": setting["name"]}
    if setting.get("choices"):
        return dcc.Dropdown(
            id=sid, options=[{"label": str(c), "value": c} for c in setting["choices"]], value=value, clearable=False
        )
    if setting.get("multi_choices"):
        chosen = value if isinstance(value, list) else [v for v in str(value or "").split(",") if v]
        return dcc.Dropdown(
            id=sid, options=[{"label": c, "value": c} for c in setting["multi_choices"]], value=chosen, multi=True
        )
    if setting["type"] == "bool":
        text = ("true" if value else "false") if isinstance(value, bool) else str(value).lower()
        return dcc.Dropdown(
            id=sid,
            options=[{"label": "true", "value": "true"}, {"label": "false", "value": "false"}],
            value=text,
            clearable=False,
        )
    text = value if isinstance(value, str) else format_setting(value)
    return dcc.Input(id=sid, type="text", value=text, style={"width": 240}, debounce=False)


def _bounds(setting: dict[str, Any]) -> str:
    lo, hi = setting.get("min"), setting.get("max")
    if lo is None and hi is None:
        return ""
    return f" [{format_setting(lo) if lo is not None else '−∞'}, {format_setting(hi) if hi is not None else '∞'}]"


def _rows(items: list[dict[str, Any]], values: dict[str, Any], preset_marks: dict[str, tuple[str, str]]) -> list[Any]:
    rows: list[Any] = []
    for s in items:
        style = {} if visible(s, values) else {"display": "none"}
        mark_class, mark_text = preset_marks.get(s["name"], ("", ""))
        rows.append(
            html.Div(
                [
                    html.Label(s["name"], htmlFor=s["name"]),
                    _field(s, values.get(s["name"])),
                    html.Span("", id={"type": "setting-error", "name": s["name"]}, className="field-error"),
                    html.Span(
                        [
                            html.Span(mark_text, id={"type": "setting-preset", "name": s["name"]}, className="badge"),
                            f"{s.get('help', '')} — {s['type']}{_bounds(s)}",
                        ],
                        className="help",
                    ),
                ],
                id={"type": "setting-row", "name": s["name"]},
                className=_row_class(mark_class),
                style=style,
            )
        )
    return rows


def _row_class(mark_class: str) -> str:
    return f"form-row {mark_class}".strip()


def form(
    catalog_doc: dict[str, Any],
    dataset: str | None,
    method: str | None,
    model: str | None = None,
    values: dict[str, Any] | None = None,
    preset: str | None = None,
    preset_values: dict[str, Any] | None = None,
) -> list[Any]:
    """The form's sections; `values` (by name) fill the fields, the defaults the rest."""
    settings = settings_for(catalog_doc, dataset, method, model)
    shown = {s["name"]: s.get("default") for _, s in settings} | (values or {})
    marks = presets.marks([s for _, s in settings], preset_values or {}, shown, preset)
    out: list[Any] = []
    for title, items, is_open in sections(settings, dataset, method, model or default_model(catalog_doc, dataset)):
        from_preset = sum(1 for s in items if marks[s["name"]][0])
        if from_preset:  # what a preset fills is in sight, folded section or not
            title, is_open = f"{title} — {from_preset} from preset {preset}", True
        out.append(
            html.Details(
                [html.Summary(title), html.Div(_rows(items, shown, marks), className="form-grid")],
                open=is_open,
                className="form-section",
            )
        )
    return out


@dash.callback(
    Output("new-catalog", "data"),
    Output("new-dataset", "options"),
    Output("new-dataset", "value"),
    Output("new-method", "options"),
    Output("new-method", "value"),
    Output("sweep-methods", "options"),
    Input("new-catalog", "id"),
    Input("backend-epoch", "data"),  # opened while the backend was down: load it when it is back
)
def load_catalog(_id: str, _backend: Any):
    doc = catalog.catalog()
    datasets = [d["name"] for d in doc.get("datasets", [])]
    methods = [m["name"] for m in doc.get("methods", [])]
    return doc, datasets, datasets[0] if datasets else None, methods, methods[0] if methods else None, methods


@dash.callback(
    Output("new-model", "options"),
    Output("new-model", "value"),
    Input("new-dataset", "value"),
    State("new-catalog", "data"),
)
def choose_model(dataset: str | None, catalog_doc: dict | None):
    """The models that fit the dataset; its own model chosen."""
    if not catalog_doc or not dataset:
        return [], None
    return models_for(catalog_doc, dataset), default_model(catalog_doc, dataset)


@dash.callback(
    Output("new-preset", "options"),
    Output("new-preset", "value"),
    Input("new-dataset", "value"),
    Input("new-method", "value"),
    State("new-preset", "value"),
    State("new-catalog", "data"),
)
def choose_presets(dataset: str | None, method: str | None, chosen: str | None, catalog_doc: dict | None):
    """The presets that fit; a chosen one that no longer fits is cleared."""
    fitting = presets.presets_for(catalog_doc or {}, dataset, method)
    options = [{"label": p["name"], "value": p["name"]} for p in fitting]
    names = [p["name"] for p in fitting]
    return options, chosen if chosen in names else None


FIELDS_OUTPUTS = {
    "fields": Output("new-fields", "children"),
    "help": Output("new-help", "children"),
    "sweep_1": Output("sweep-setting-1", "options"),
    "sweep_2": Output("sweep-setting-2", "options"),
    "preset_help": Output("new-preset-help", "children"),
    "preset_shown": Output("new-preset-shown", "data"),
}


@dash.callback(
    output=FIELDS_OUTPUTS,
    inputs={
        "dataset": Input("new-dataset", "value"),
        "method": Input("new-method", "value"),
        "model": Input("new-model", "value"),
        "preset_name": Input("new-preset", "value"),
        "values": State({"type": "setting", "name": ALL}, "value"),
        "ids": State({"type": "setting", "name": ALL}, "id"),
        "shown_before": State("new-preset-shown", "data"),
        "catalog_doc": State("new-catalog", "data"),
    },
)
def show_fields(dataset, method, model, preset_name, values, ids, shown_before, catalog_doc) -> dict[str, Any]:
    """The form for this dataset, method and model, its fields filled as presets.field_values says."""
    if not catalog_doc:
        return {
            "fields": [],
            "help": "loading the catalog…",
            "sweep_1": [],
            "sweep_2": [],
            "preset_help": "",
            "preset_shown": {"name": None, "values": {}},
        }
    helps = [
        i.get("help", "")
        for key in ("datasets", "methods")
        for i in catalog_doc.get(key, [])
        if i["name"] in (dataset, method)
    ]
    settings = [s for _, s in settings_for(catalog_doc, dataset, method, model)]
    preset = presets.find(catalog_doc, preset_name)
    if preset is not None and not presets.fits(preset, dataset, method):
        preset = None  # cleared by choose_presets in the same round
    preset_values = presets.preset_values(preset, method, model or default_model(catalog_doc, dataset))
    before = shown_before or {"name": None, "values": {}}
    filled = presets.field_values(
        settings,
        {i["name"]: v for i, v in zip(ids, values, strict=True)},
        before.get("values") or {},
        preset_values,
        preset_changed=before.get("name") != (preset["name"] if preset else None),
    )
    names = [s["name"] for s in settings]
    shown = {"name": preset["name"] if preset else None, "values": preset_values}
    return {
        "fields": form(catalog_doc, dataset, method, model, filled, shown["name"], preset_values),
        "help": " · ".join(h for h in helps if h),
        "sweep_1": names,
        "sweep_2": names,
        "preset_help": preset.get("help", "") if preset else "",
        "preset_shown": shown,
    }


@dash.callback(
    Output({"type": "setting-error", "name": MATCH}, "children"),
    Input({"type": "setting", "name": MATCH}, "value"),
    State({"type": "setting", "name": MATCH}, "id"),
    State("new-dataset", "value"),
    State("new-method", "value"),
    State("new-model", "value"),
    State("new-catalog", "data"),
    prevent_initial_call=True,
)
def check_field(value: Any, sid: dict[str, str], dataset, method, model, catalog_doc: dict | None):
    setting = _setting(catalog_doc, dataset, method, model, sid["name"])
    if setting is None:
        return ""
    return check_setting(setting, value)[1] or ""


@dash.callback(
    Output({"type": "setting-row", "name": ALL}, "style"),
    Output({"type": "setting-row", "name": ALL}, "className"),
    Output({"type": "setting-preset", "name": ALL}, "children"),
    Input({"type": "setting", "name": ALL}, "value"),
    State({"type": "setting", "name": ALL}, "id"),
    State("new-dataset", "value"),
    State("new-method", "value"),
    State("new-model", "value"),
    State("new-preset-shown", "data"),
    State("new-catalog", "data"),
)
def hide_ignored(values: list[Any], ids: list[dict[str, str]], dataset, method, model, shown, catalog_doc):
    """Hide the settings the chosen options ignore; mark what the preset filled and what the user changed."""
    current = {i["name"]: v for i, v in zip(ids, values, strict=True)}
    settings = {s["name"]: s for _, s in settings_for(catalog_doc or {}, dataset, method, model)}
    shown = shown or {}
    marks = presets.marks(
        [settings[i["name"]] for i in ids if i["name"] in settings],
        shown.get("values") or {},
        current,
        shown.get("name"),
    )
    styles, classes, badges = [], [], []
    for i in ids:
        s = settings.get(i["name"])
        styles.append({} if s is None or visible(s, current) else {"display": "none"})
        mark_class, mark_text = marks.get(i["name"], ("", ""))
        classes.append(_row_class(mark_class))
        badges.append(mark_text)
    return styles, classes, badges


def _setting(
    catalog_doc: dict | None, dataset: str | None, method: str | None, model: str | None, name: str
) -> dict[str, Any] | None:
    for _, s in settings_for(catalog_doc or {}, dataset, method, model):
        if s["name"] == name:
            return s
    return None


def _collect(catalog_doc, dataset, method, model, values, ids) -> tuple[dict[str, Any], dict[str, str]]:
    """The base config from the visible fields, and the errors per field."""
    current = {i["name"]: v for i, v in zip(ids, values, strict=True)}
    base: dict[str, Any] = {"dataset": dataset, "method": method}
    if model:
        base["model"] = model
    errors: dict[str, str] = {}
    for i, raw in zip(ids, values, strict=True):
        s = _setting(catalog_doc, dataset, method, model, i["name"])
        if s is None or not visible(s, current):
            continue  # a setting the chosen variant ignores: its default applies
        value, err = check_setting(s, raw)
        if err:
            errors[s["name"]] = err
        elif value is not None:
            base[s["name"]] = value
    return base, errors


def _configs(catalog_doc, dataset, method, model, preset, values, ids, s1, v1, s2, v2, methods, seeds):
    base, errors = _collect(catalog_doc, dataset, method, model, values, ids)
    if preset:
        base["preset"] = preset
    kinds = {s["name"]: s["type"] for _, s in settings_for(catalog_doc, dataset, method, model)}
    method_settings = {m["name"]: [s["name"] for s in m["settings"]] for m in catalog_doc.get("methods", [])}
    configs = build_configs(base, kinds, [(s1, v1), (s2, v2)], methods, method_settings, seed_values(seeds))
    if preset:  # a method sweep under one method's own recipe: say so before anything starts
        recipe = presets.find(catalog_doc, preset) or {}
        others = sorted({c["method"] for _, c in configs if not presets.fits(recipe, dataset, c["method"])})
        if others:
            raise ValueError(
                f"preset {preset!r} is {presets.preset_method(recipe)}'s own recipe; the sweep's "
                f"{', '.join(others)} cannot use it (clear the preset or drop those methods)"
            )
    return configs, errors


SWEEP_STATES = [
    State({"type": "setting", "name": ALL}, "value"),
    State({"type": "setting", "name": ALL}, "id"),
    State("sweep-setting-1", "value"),
    State("sweep-values-1", "value"),
    State("sweep-setting-2", "value"),
    State("sweep-values-2", "value"),
    State("sweep-methods", "value"),
    State("sweep-seeds", "value"),
]


@dash.callback(
    Output("new-count", "children"),
    Input("sweep-setting-1", "value"),
    Input("sweep-values-1", "value"),
    Input("sweep-setting-2", "value"),
    Input("sweep-values-2", "value"),
    Input("sweep-methods", "value"),
    Input("sweep-seeds", "value"),
    Input("new-fields", "children"),
    State({"type": "setting", "name": ALL}, "value"),
    State({"type": "setting", "name": ALL}, "id"),
    State("new-dataset", "value"),
    State("new-method", "value"),
    State("new-model", "value"),
    State("new-preset", "value"),
    State("new-catalog", "data"),
)
def count_runs(s1, v1, s2, v2, methods, seeds, _fields, values, ids, dataset, method, model, preset, catalog_doc):
    """'Start 12 runs' before anything starts."""
    if not catalog_doc or not dataset or not method:
        return ""
    try:
        configs, _ = _configs(catalog_doc, dataset, method, model, preset, values, ids, s1, v1, s2, v2, methods, seeds)
    except ValueError as e:
        return str(e)
    n = len(configs)
    return "starts 1 run" if n == 1 else f"starts {n} runs (at most {MAX_SWEEP_RUNS})"


@dash.callback(
    Output("new-error", "children"),
    Output("new-result", "children"),
    Output({"type": "setting-error", "name": ALL}, "children", allow_duplicate=True),
    Input("new-submit", "n_clicks"),
    State("new-dataset", "value"),
    State("new-method", "value"),
    State("new-model", "value"),
    State("new-preset", "value"),
    State("new-name", "value"),
    State("new-tags", "value"),
    *SWEEP_STATES,
    State("new-catalog", "data"),
    prevent_initial_call=True,
)
def submit(_n, dataset, method, model, preset, name, tags, values, ids, s1, v1, s2, v2, methods, seeds, catalog_doc):
    field_errors = {i["name"]: "" for i in ids}

    def inline() -> list[str]:
        return [field_errors[i["name"]] for i in ids]

    if not catalog_doc or not dataset or not method:
        return "the catalog has not loaded yet (is the backend up?)", dash.no_update, inline()
    try:
        configs, errors = _configs(
            catalog_doc, dataset, method, model, preset, values, ids, s1, v1, s2, v2, methods, seeds
        )
    except ValueError as e:
        return str(e), dash.no_update, inline()
    if errors:
        field_errors.update(errors)
        listed = "; ".join(f"{k}: {v}" for k, v in errors.items())
        return f"Fix the marked field(s) first — {listed}", dash.no_update, inline()
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
            named = _setting_named(e.message, field_errors)
            if named:
                field_errors[named] = e.message
            done = f" ({len(created)} of {len(configs)} runs were created before this)" if created else ""
            return f"Rejected{' at ' + label if sweep else ''}: {e.message}{done}", _links(created), inline()
    return "", _links(created), inline()


def _setting_named(message: str, fields: dict[str, str]) -> str | None:
    """The field a backend message is about ("setting 'epochs': …"), if it is on the form."""
    for m in re.finditer(r"setting '([^']+)'|\b([a-z_][a-z0-9_]*)\s*=", message):
        name = m.group(1) or m.group(2)
        if name in fields:
            return name
    return None


def _links(runs: list[dict[str, Any]]) -> list[Any]:
    if not runs:
        return []
    items = [html.Li(dcc.Link(f"run {r['id']}: {r.get('name', '')}", href=f"/runs/{int(r['id'])}")) for r in runs]
    out: list[Any] = [html.P(f"Created {len(runs)} run(s):", className="ok"), html.Ul(items)]
    if len(runs) > 1:
        ids = ",".join(str(int(r["id"])) for r in runs)
        out.append(dcc.Link("Compare them", href=f"/compare?runs={ids}", id="new-compare-link"))
    return out
