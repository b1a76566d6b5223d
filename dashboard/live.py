"""The run page's patch state machine: the first render, then what to append when new points arrive.

The browser holds the figures; the server keeps a `LiveState` (trace order per panel, last step
drawn per key, EMA state per smoothed key, dominance buffers). `apply_update` turns new points
into operations per figure (extend trace i, add a trace, set a layout property), which the page
turns into `Patch()` objects. Everything here is pure, so the live path is unit-tested without a
browser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import plotly.graph_objects as go

from . import figures
from .decode import Series
from .dominance_live import DominanceBuffers, Op
from .live_state import CoefState, LiveState, View
from .panels import BY_ID, PANEL_IDS, group_keys, panel_figure, panel_of
from .progress import EPOCH_KEY, Progress
from .smoothing import smooth


def wanted_keys(keys: Iterable[str]) -> list[str]:
    """The keys a run page reads: those a panel draws, and the epoch counter (progress)."""
    return [k for k in keys if panel_of(k) is not None or k == EPOCH_KEY]


def initial_render(
    series: Mapping[str, Series], view: View, t0: float | None
) -> tuple[dict[str, go.Figure], go.Figure, LiveState]:
    """All panels and the dominance strip from whatever is stored, plus the state to continue from."""
    by_panel = group_keys(list(series))
    figs = {
        pid: panel_figure(pid, series, keys, smoothing=view.smoothing, x_mode=view.x_mode, log_y=view.log_y, t0=t0)
        for pid, keys in by_panel.items()
    }
    coef_series = {k: series[k] for k in by_panel["coef"]}
    coef_finite = [v for s in coef_series.values() for v in s.values if math.isfinite(v)]
    coef = CoefState(
        stats=figures.coefficient_stats(coef_series),
        range=(min(0.0, *coef_finite), max(0.0, *coef_finite)) if coef_finite else (0.0, 0.0),
    )
    dom, doms = DominanceBuffers.start(series)
    state = LiveState(
        view=view,
        t0=t0,
        plans={pid: figures.trace_plan(keys, view.smoothing) for pid, keys in by_panel.items()},
        last={k: s.steps[-1] for k, s in series.items() if len(s) and panel_of(k)},
        coef=coef,
        dom=dom,
        progress=Progress(),
    )
    state.progress.track(series)
    if view.smoothing > 0:
        for k in state.last:
            state.ema[k] = smooth(series[k].values, view.smoothing)[1]
    return figs, figures.build_dominance_figure(doms, dom.mods), state


def fetch_groups(state: LiveState, keys: Iterable[str]) -> list[tuple[int | None, list[str]]]:
    """Which reads bring every drawn key up to date: one per distinct last step, one for unseen keys.

    Per-step keys share a last step and validation keys share another, so this is 2–3 small reads
    a tick, each `since_step` exact (nothing already drawn is sent again).
    """
    groups: dict[int | None, list[str]] = {}
    for k in sorted(wanted_keys(keys)):
        last = state.progress.epoch_last if k == EPOCH_KEY else state.last.get(k)
        groups.setdefault(last, []).append(k)
    return sorted(groups.items(), key=lambda kv: -1 if kv[0] is None else kv[0])


def apply_update(state: LiveState, new: Mapping[str, Series]) -> tuple[dict[str, list[Op]], list[Op]]:
    """New points → ({panel: ops}, dominance ops); `state` is advanced. Points at or below a key's last step are dropped.

    Ops: ("extend", trace_index, {"x": [...], "y": [...], "customdata": [...]}),
         ("add", trace_json), ("layout", dotted_path, value).
    """
    view = state.view
    ops: dict[str, list[Op]] = {pid: [] for pid in PANEL_IDS}
    fresh: dict[str, Series] = {}
    state.progress.track(new)
    for key, s in new.items():
        pid = panel_of(key)
        if pid is None:
            continue
        last = state.last.get(key)
        s = s.after(last) if last is not None else s
        if not len(s):
            continue
        fresh[key] = s
        state.last[key] = s.steps[-1]
        plan = state.plans[pid]
        for kind in ["raw", "smooth"] if view.smoothing > 0 else ["raw"]:
            pts, st = figures.trace_points(
                s,
                kind,
                smoothing=view.smoothing,
                x_mode=view.x_mode,
                t0=state.t0,
                symlog_y=BY_ID[pid].symlog,
                ema=state.ema.get(key) if kind == "smooth" else None,
            )
            if st is not None:
                state.ema[key] = st
            if [key, kind] in plan:
                ops[pid].append(("extend", plan.index([key, kind]), pts))
            else:
                # A key seen for the first time (val/* after the first epoch): add its trace.
                fig = panel_figure(
                    pid, {key: s}, [key], smoothing=view.smoothing, x_mode=view.x_mode, log_y=view.log_y, t0=state.t0
                )
                trace = next(t for t in fig.to_plotly_json()["data"] if t["meta"]["kind"] == kind)
                plan.append([key, kind])
                ops[pid].append(("add", trace))
    if ops["coef"]:
        _coef_layout(state.coef, {k: v for k, v in fresh.items() if panel_of(k) == "coef"}, ops["coef"])
    return ops, state.dom.update(fresh)


def _coef_layout(coef: CoefState, fresh: Mapping[str, Series], ops: list[Op]) -> None:
    add = figures.coefficient_stats(fresh)
    for k in coef.stats:
        coef.stats[k] += add[k]
    ops.append(("layout", "title.text", figures.coefficient_title(coef.stats)))
    lo, hi = coef.range
    finite = [v for s in fresh.values() for v in s.values if math.isfinite(v)]
    if finite and (min(finite) < lo or max(finite) > hi):
        lo, hi = min(lo, *finite), max(hi, *finite)
        coef.range = (lo, hi)
        tickvals, ticktext = figures.symlog_ticks(lo, hi)
        ops.append(("layout", "yaxis.tickvals", tickvals))
        ops.append(("layout", "yaxis.ticktext", ticktext))


__all__ = ["Op", "apply_update", "fetch_groups", "initial_render", "wanted_keys"]
