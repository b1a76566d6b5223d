"""The run page's live state: what is drawn, and what to append when new points arrive.

The browser holds the figures; the server only remembers, in a JSON `state`, the trace order of
each panel, the last step drawn per key, the EMA state per smoothed key, and the dominance
buffer. `apply_update` turns new points into a list of operations per figure (extend trace i,
add a trace, set a layout property), which the page turns into `Patch()` objects. Everything
here is pure, so the live path is unit-tested without a browser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import plotly.graph_objects as go

from . import figures
from .series import Dominance, EmaState, Series, dominance, modalities_of


def _one_level(prefix: str) -> Callable[[str], bool]:
    def match(key: str) -> bool:
        head, sep, rest = key.partition("/")
        return bool(sep) and head == prefix and "/" not in rest

    return match


# (panel id, title, which keys it draws). Order = order on the page; first match wins.
PANELS: list[tuple[str, str, Callable[[str], bool]]] = [
    ("acc", "acc/* — aux-head accuracy per modality (ε_m)", _one_level("acc")),
    ("grad_norm", "grad_norm/* — encoder gradient norm per modality", _one_level("grad_norm")),
    ("coef", "coef/* — balancing coefficient", _one_level("coef")),
    ("cos", "cos/* — cos(g_m, g_Ω)", _one_level("cos")),
    ("losses", "losses", lambda k: k == "train/loss" or k.startswith("loss/")),
    ("train", "train/* — fused model on the batch", lambda k: k.startswith("train/") and k != "train/loss"),
    ("imbalance", "imbalance/*", lambda k: k.startswith("imbalance/")),
    ("contrib", "val/contrib/* — Shapley contribution per modality", lambda k: k.startswith("val/contrib/")),
    ("val", "val/* — validation", lambda k: k.startswith("val/")),
]
PANEL_IDS = [p[0] for p in PANELS]
PANEL_TITLES = {p[0]: p[1] for p in PANELS}
DOMINANCE_METRICS = ("acc", "grad_norm")


def panel_of(key: str) -> str | None:
    for pid, _title, match in PANELS:
        if match(key):
            return pid
    return None


def _panel_figure(pid: str, series: Mapping[str, Series], keys: list[str], view: Mapping[str, Any], t0: float | None):
    if pid == "coef":
        fig = figures.build_coefficient_figure(
            {k: series[k] for k in keys}, smoothing=view["smoothing"], x_mode=view["x_mode"], t0=t0
        )
        return fig
    return figures.build_metric_figure(
        {k: series[k] for k in keys},
        title=PANEL_TITLES[pid],
        keys=keys,
        smoothing=view["smoothing"],
        x_mode=view["x_mode"],
        t0=t0,
        log_y=view["log_y"],
    )


def initial_render(
    series: Mapping[str, Series], view: Mapping[str, Any], t0: float | None
) -> tuple[dict[str, go.Figure], go.Figure, dict[str, Any]]:
    """All panels and the dominance strip from whatever is stored, plus the state to continue from."""
    by_panel: dict[str, list[str]] = {pid: [] for pid in PANEL_IDS}
    for key in sorted(series):
        pid = panel_of(key)
        if pid is not None:
            by_panel[pid].append(key)
    figs = {pid: _panel_figure(pid, series, keys, view, t0) for pid, keys in by_panel.items()}
    state: dict[str, Any] = {
        "view": dict(view),
        "t0": t0,
        "plans": {pid: figures.trace_plan(keys, view["smoothing"]) for pid, keys in by_panel.items()},
        "last": {k: s.steps[-1] for k, s in series.items() if len(s) and panel_of(k)},
        "ema": {},
        "coef": {"stats": figures.coefficient_stats({k: series[k] for k in by_panel["coef"]}), "range": [0.0, 0.0]},
        "dom": {"mods": [], "buf": {m: {} for m in DOMINANCE_METRICS}, "last": {}, "now": {}, "counts": {}},
    }
    state["progress"] = {"epoch": 0, "epoch1_step": None, "step": -1}
    _track_progress(state, series)
    if view["smoothing"] > 0:
        for k in state["last"]:
            _, st = figures.smooth(series[k].values, view["smoothing"])
            state["ema"][k] = [st.last, st.count]
    coef_finite = [v for k in by_panel["coef"] for v in series[k].values if math.isfinite(v)]
    if coef_finite:
        state["coef"]["range"] = [min(0.0, *coef_finite), max(0.0, *coef_finite)]
    mods = sorted(set(modalities_of(series, "acc")) | set(modalities_of(series, "grad_norm")))
    state["dom"]["mods"] = mods
    state["dom"]["plan"] = figures.dominance_plan(mods)
    doms = [dominance(series, m) for m in DOMINANCE_METRICS]
    for d in doms:
        _remember_dominance(state["dom"], d)
    dom_fig = figures.build_dominance_figure(doms, mods)
    return figs, dom_fig, state


EPOCH_KEY = "epoch"  # logged with each validation: value = epochs done, at the global step


def _track_progress(state: dict[str, Any], series: Mapping[str, Series]) -> None:
    prog = state["progress"]
    for s in series.values():
        if len(s):
            prog["step"] = max(prog["step"], s.steps[-1])
    ep = series.get(EPOCH_KEY)
    if ep is not None and len(ep):
        last = state["last"].get(EPOCH_KEY)
        ep = ep.after(last) if last is not None else ep
        for step, v in zip(ep.steps, ep.values, strict=False):
            if math.isfinite(v):
                prog["epoch"] = max(prog["epoch"], int(v))
                if int(v) == 1 and prog["epoch1_step"] is None:
                    prog["epoch1_step"] = step
        if len(ep):
            state["last"][EPOCH_KEY] = ep.steps[-1]


def progress(config: Mapping[str, Any], prog: Mapping[str, Any]) -> tuple[float | None, str]:
    """(fraction done or None, text) from the logged epochs and steps against the config's epochs.

    Steps per epoch come from the step at which epoch 1 ended, or before that from
    train_size / batch_size when the dataset has a train_size setting.
    """
    epochs = config.get("epochs")
    step = max(int(prog.get("step", -1)), 0)
    epoch = int(prog.get("epoch", 0))
    per_epoch = prog.get("epoch1_step")
    if per_epoch is None and config.get("train_size") and config.get("batch_size"):
        per_epoch = math.ceil(config["train_size"] / config["batch_size"])
    if not isinstance(epochs, int) or epochs <= 0:
        return None, f"step {step}"
    if per_epoch:
        total = per_epoch * epochs
        return min(step / total, 1.0), f"epoch {epoch}/{epochs} · step {step}/{total}"
    return epoch / epochs, f"epoch {epoch}/{epochs} · step {step}"


def fetch_groups(state: Mapping[str, Any], keys: Iterable[str]) -> list[tuple[int | None, list[str]]]:
    """Which reads bring every drawn key up to date: one per distinct last step, one for unseen keys.

    Per-step keys share a last step and validation keys share another, so this is 2–3 small reads
    a tick, each `since_step` exact (nothing already drawn is sent again).
    """
    groups: dict[int | None, list[str]] = {}
    last = state.get("last", {})
    for k in sorted(keys):
        if panel_of(k) is None and k != EPOCH_KEY:
            continue
        groups.setdefault(last.get(k), []).append(k)
    return sorted(groups.items(), key=lambda kv: -1 if kv[0] is None else kv[0])


Op = tuple[Any, ...]


def apply_update(
    state: dict[str, Any], new: Mapping[str, Series]
) -> tuple[dict[str, list[Op]], list[Op], dict[str, Any]]:
    """New points → ({panel: ops}, dominance ops, new state). Points at or below a key's last step are dropped.

    Ops: ("extend", trace_index, {"x": [...], "y": [...], "customdata": [...]}),
         ("add", trace_json), ("layout", dotted_path, value).
    """
    view = state["view"]
    ops: dict[str, list[Op]] = {pid: [] for pid in PANEL_IDS}
    fresh: dict[str, Series] = {}
    _track_progress(state, new)
    for key, s in new.items():
        pid = panel_of(key)
        if pid is None:
            continue
        last = state["last"].get(key)
        s = s.after(last) if last is not None else s
        if not len(s):
            continue
        fresh[key] = s
        state["last"][key] = s.steps[-1]
        plan = state["plans"][pid]
        kinds = ["raw", "smooth"] if view["smoothing"] > 0 else ["raw"]
        symlog_y = pid == "coef"
        for kind in kinds:
            ema = None
            if kind == "smooth":
                raw_state = state["ema"].get(key)
                ema = EmaState(raw_state[0], raw_state[1]) if raw_state else None
            pts, st = figures.trace_points(
                s, kind, smoothing=view["smoothing"], x_mode=view["x_mode"], t0=state["t0"], symlog_y=symlog_y, ema=ema
            )
            if st is not None:
                state["ema"][key] = [st.last, st.count]
            if [key, kind] in plan:
                ops[pid].append(("extend", plan.index([key, kind]), pts))
            else:
                # A key seen for the first time (val/* after the first epoch): add its trace.
                fig = _panel_figure(pid, {key: s}, [key], {**view, "smoothing": view["smoothing"]}, state["t0"])
                trace = next(t for t in fig.to_plotly_json()["data"] if t["meta"]["kind"] == kind)
                plan.append([key, kind])
                ops[pid].append(("add", trace))
    if ops["coef"]:
        _coef_layout(state, {k: v for k, v in fresh.items() if panel_of(k) == "coef"}, ops["coef"])
    dom_ops = _dominance_update(state, fresh)
    return ops, dom_ops, state


def _coef_layout(state: dict[str, Any], fresh: Mapping[str, Series], ops: list[Op]) -> None:
    stats = state["coef"]["stats"]
    add = figures.coefficient_stats(fresh)
    for k in stats:
        stats[k] += add[k]
    ops.append(("layout", "title.text", figures.coefficient_title(stats)))
    lo, hi = state["coef"]["range"]
    finite = [v for s in fresh.values() for v in s.values if math.isfinite(v)]
    if finite and (min(finite) < lo or max(finite) > hi):
        lo, hi = min(lo, *finite), max(hi, *finite)
        state["coef"]["range"] = [lo, hi]
        tickvals, ticktext = figures.symlog_ticks(lo, hi)
        ops.append(("layout", "yaxis.tickvals", tickvals))
        ops.append(("layout", "yaxis.ticktext", ticktext))


def _dominance_update(state: dict[str, Any], fresh: Mapping[str, Series]) -> list[Op]:
    """Buffer per-modality points until every modality has reported a step, then mark its leader."""
    dom = state["dom"]
    mods: list[str] = dom["mods"]
    plan: list[list[str]] = dom.setdefault("plan", figures.dominance_plan(mods))
    ops: list[Op] = []
    # Modalities first seen now (the page opened before any point was logged): add their traces.
    seen = set(modalities_of(fresh, "acc")) | set(modalities_of(fresh, "grad_norm"))
    for m in sorted(seen - set(mods)):
        mods.append(m)
        for metric in DOMINANCE_METRICS:
            trace = figures.dominance_trace(metric, m, mods).to_plotly_json()
            plan.append([metric, m])
            ops.append(("add", trace))
    for metric in DOMINANCE_METRICS:
        buf: dict[str, dict[str, float]] = dom["buf"][metric]  # {step (str, JSON keys): {m: value}}
        for key, s in fresh.items():
            head, _, m = key.partition("/")
            if head != metric or "/" in m:
                continue
            if m not in mods:
                continue  # a modality unknown at render time; the next full render shows it
            for step, v in zip(s.steps, s.values, strict=False):
                buf.setdefault(str(step), {})[m] = v
        if not buf or len(mods) < 2:
            continue
        as_series: dict[str, Series] = {}
        for step_s in sorted(buf, key=int):
            for m, v in buf[step_s].items():
                as_series.setdefault(f"{metric}/{m}", Series()).steps.append(int(step_s))
                as_series[f"{metric}/{m}"].values.append(v)
                as_series[f"{metric}/{m}"].times.append(0.0)
        d = dominance(as_series, metric)
        complete = {str(s) for s in d.steps}
        for step_s in list(buf):
            # Complete steps are drawn; incomplete ones older than the newest complete one never will be.
            if step_s in complete or (d.steps and int(step_s) < d.steps[-1]) or len(buf[step_s]) == len(mods):
                del buf[step_s]
        _remember_dominance(dom, d)
        for m in mods:
            pts = figures.dominance_points(d, m)
            if pts["x"]:
                ops.append(("extend", plan.index([metric, m]), pts))
    return ops


def _remember_dominance(dom: dict[str, Any], d: Dominance) -> None:
    """Keep the newest leader and how often each modality has led, for the 'now' line."""
    if not d.steps:
        return
    dom["last"][d.metric] = d.steps[-1]
    margin = d.margins[-1]
    dom["now"][d.metric] = [d.leaders[-1], margin if math.isfinite(margin) else None]
    counts = dom["counts"].setdefault(d.metric, {})
    for lead in d.leaders:
        counts[lead] = counts.get(lead, 0) + 1


def describe_now(state: Mapping[str, Any]) -> list[str]:
    """One line per measure: 'accuracy: m0 leads by +0.120 now (led 80% of steps)'."""
    dom = state.get("dom", {})
    lines = []
    for metric in DOMINANCE_METRICS:
        now = dom.get("now", {}).get(metric)
        name = figures.DOMINANCE_ROWS[metric]
        if not now:
            lines.append(f"{name}: no data yet")
            continue
        lead, margin = now
        counts = dom.get("counts", {}).get(metric, {})
        share = counts.get(lead, 0) / max(sum(counts.values()), 1)
        lines.append(f"{name}: {lead} leads by {figures.format_margin(metric, margin)} now (led {share:.0%} of steps)")
    return lines
