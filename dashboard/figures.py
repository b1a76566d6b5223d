"""Pure figure builders: data in, `go.Figure` out. No Dash, no HTTP (STYLE habit 6).

Trace layout is deterministic (`trace_plan`), so that live updates can append points to trace i
with `Patch()` without re-sending the figure: the page remembers the plan, not the figure.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .decode import Series
from .dominance import Dominance
from .smoothing import EmaState, smooth
from .symlog import format_real, symlog, symlog_ticks

# Plotly's default qualitative palette, fixed here so that a modality keeps its colour everywhere.
PALETTE = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF"]
# Above this many points a trace is drawn with WebGL (SVG slows down past a few thousand points).
WEBGL_MIN_POINTS = 2000
X_MODES = ("step", "relative", "wall")
X_TITLES = {"step": "step", "relative": "time since start (s)", "wall": "time"}
# Where a curve is a blow-up worth flagging on the coefficient panel.
COEF_BLOWUP = 100.0


def color_for(name: str, names: Sequence[str]) -> str:
    try:
        i = sorted(names).index(name)
    except ValueError:
        i = abs(hash(name))
    return PALETTE[i % len(PALETTE)]


def label_of(key: str) -> str:
    """'acc/m0' → 'm0'; 'val/contrib/m0' → 'm0'; 'train/loss' stays (a panel of mixed keys)."""
    return key.rsplit("/", 1)[-1] if key.count("/") >= 1 and key.split("/")[0] in _PER_MODALITY else key


_PER_MODALITY = {"acc", "grad_norm", "grad_norm_mod", "coef", "cos"}


def trace_plan(keys: Sequence[str], smoothing: float) -> list[list[str]]:
    """[[key, "raw"|"smooth"], ...] in trace order: with smoothing, a faint raw trace then the smooth one."""
    plan: list[list[str]] = []
    for k in keys:
        if smoothing > 0:
            plan.append([k, "raw"])
            plan.append([k, "smooth"])
        else:
            plan.append([k, "raw"])
    return plan


def x_values(s: Series, x_mode: str, t0: float | None) -> list[Any]:
    if x_mode == "step":
        return list(s.steps)
    if x_mode == "relative":
        base = t0 if t0 is not None else (s.times[0] if s.times else 0.0)
        return [round(t - base, 3) for t in s.times]
    if x_mode == "wall":
        return [datetime.fromtimestamp(t, tz=UTC).isoformat() for t in s.times]
    raise ValueError(f"unknown x mode {x_mode!r}; allowed: {', '.join(X_MODES)}")


def y_values(values: Sequence[float], symlog_y: bool) -> list[float | None]:
    """Plotly draws None as a gap: non-finite points are gaps (their real value is in the hover)."""
    out: list[float | None] = []
    for v in values:
        if not math.isfinite(v):
            out.append(None)
        else:
            out.append(symlog(v) if symlog_y else v)
    return out


def real_values(values: Sequence[float]) -> list[float | str]:
    """Real values for hover and CSV: numbers, non-finite as their JSON names."""
    return [
        v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")) for v in values
    ]


def trace_points(
    s: Series,
    kind: str,
    *,
    smoothing: float,
    x_mode: str,
    t0: float | None,
    symlog_y: bool,
    ema: EmaState | None = None,
) -> tuple[dict[str, list[Any]], EmaState | None]:
    """The x / y / customdata arrays of one trace for the points of `s` (also used to extend a trace)."""
    values = list(s.values)
    state = None
    if kind == "smooth":
        values, state = smooth(values, smoothing, ema)
    return {
        "x": x_values(s, x_mode, t0),
        "y": y_values(values, symlog_y),
        "customdata": real_values(values),
    }, state


def build_metric_figure(
    series: Mapping[str, Series],
    *,
    title: str = "",
    keys: Sequence[str] | None = None,
    smoothing: float = 0.0,
    x_mode: str = "step",
    t0: float | None = None,
    log_y: bool = False,
    symlog_y: bool = False,
    height: int = 300,
) -> go.Figure:
    """One panel: a curve per key (per modality), optionally smoothed, on a linear, log or symlog y axis."""
    keys = list(keys) if keys is not None else sorted(series)
    all_names = [label_of(k) for k in keys]
    fig = go.Figure()
    lo, hi = 0.0, 0.0
    for key, kind in trace_plan(keys, smoothing):
        s = series.get(key, Series())
        pts, _ = trace_points(s, kind, smoothing=smoothing, x_mode=x_mode, t0=t0, symlog_y=symlog_y)
        finite = [v for v in s.values if math.isfinite(v)]
        if finite:
            lo, hi = min(lo, *finite), max(hi, *finite)
        name = label_of(key)
        trace_cls = go.Scattergl if len(s) >= WEBGL_MIN_POINTS else go.Scatter
        faint = kind == "raw" and smoothing > 0
        fig.add_trace(
            trace_cls(
                x=pts["x"],
                y=pts["y"],
                customdata=pts["customdata"],
                name=name,
                legendgroup=name,
                showlegend=not faint,
                mode="lines",
                opacity=0.3 if faint else 1.0,
                line={"color": color_for(name, all_names), "width": 1 if faint else 2},
                hovertemplate=f"{key}{' (raw)' if faint else ''}<br>%{{x}}: %{{customdata:.6g}}<extra></extra>",
                meta={"key": key, "kind": kind},
            )
        )
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=height,
        margin={"l": 60, "r": 10, "t": 40, "b": 40},
        xaxis_title=X_TITLES[x_mode],
        legend={"orientation": "h", "y": -0.25},
        uirevision="keep",  # live appends keep the user's zoom
    )
    if symlog_y:
        tickvals, ticktext = symlog_ticks(lo, hi)
        fig.update_yaxes(tickvals=tickvals, ticktext=ticktext, title="symlog(value)")
    elif log_y:
        fig.update_yaxes(type="log")
    return fig


def coefficient_stats(series: Mapping[str, Series]) -> dict[str, int]:
    """How many logged coefficients are blow-ups (|B| > 100), negative, or non-finite."""
    blowups = negatives = nonfinite = total = 0
    for s in series.values():
        for v in s.values:
            total += 1
            if not math.isfinite(v):
                nonfinite += 1
                continue
            blowups += abs(v) > COEF_BLOWUP
            negatives += v < 0
    return {"total": total, "blowups": blowups, "negatives": negatives, "nonfinite": nonfinite}


def coefficient_title(stats: Mapping[str, int]) -> str:
    n = max(stats["total"], 1)
    return (
        f"coef/* (symlog) — |B|>{COEF_BLOWUP:g}: {stats['blowups']} ({stats['blowups'] / n:.1%}), "
        f"B<0: {stats['negatives']} ({stats['negatives'] / n:.1%}), non-finite: {stats['nonfinite']}"
    )


def build_coefficient_figure(
    series: Mapping[str, Series], *, smoothing: float = 0.0, x_mode: str = "step", t0: float | None = None
) -> go.Figure:
    """coef/<m> on a symmetric log axis: CGGM's |B| ~ 1e7 blow-ups and negative B both stay visible."""
    fig = build_metric_figure(
        series,
        title=coefficient_title(coefficient_stats(series)),
        smoothing=smoothing,
        x_mode=x_mode,
        t0=t0,
        symlog_y=True,
    )
    fig.add_hline(y=0, line={"color": "#888", "width": 1, "dash": "dot"})
    return fig


DOMINANCE_ROWS = {"acc": "accuracy", "grad_norm": "grad norm"}


def dominance_plan(modalities: Sequence[str]) -> list[list[str]]:
    """Trace order of the dominance strip: [[metric, modality], ...]."""
    return [[metric, m] for metric in DOMINANCE_ROWS for m in sorted(modalities)]


def dominance_points(d: Dominance, modality: str, x_steps: bool = True) -> dict[str, list[Any]]:
    idx = [i for i, lead in enumerate(d.leaders) if lead == modality]
    return {
        "x": [d.steps[i] for i in idx],
        "y": [DOMINANCE_ROWS[d.metric]] * len(idx),
        "customdata": [format_margin(d.metric, d.margins[i]) for i in idx],
    }


def format_margin(metric: str, margin: float | None) -> str:
    if margin is None or not math.isfinite(margin):
        return "×∞" if metric == "grad_norm" else "?"
    if metric == "grad_norm":
        return f"×{margin:.3g}"
    return f"{margin:+.3f}"


def dominance_trace(metric: str, modality: str, modalities: Sequence[str], d: Dominance | None = None) -> go.Scattergl:
    """The marks of one modality on one measure's strip (where it leads)."""
    pts = dominance_points(d or Dominance(metric, [], [], []), modality)
    return go.Scattergl(
        x=pts["x"],
        y=pts["y"],
        customdata=pts["customdata"],
        mode="markers",
        marker={"symbol": "line-ns-open", "size": 14, "color": color_for(modality, modalities), "line": {"width": 2}},
        name=modality,
        legendgroup=modality,
        showlegend=metric == "acc",
        hovertemplate=f"step %{{x}}: {modality} leads %{{y}} by %{{customdata}}<extra></extra>",
    )


def build_dominance_figure(dominances: Sequence[Dominance], modalities: Sequence[str]) -> go.Figure:
    """A strip per measure: at each step a mark coloured by the leading modality, margin in the hover."""
    by_metric = {d.metric: d for d in dominances}
    fig = go.Figure()
    for metric, m in dominance_plan(modalities):
        fig.add_trace(dominance_trace(metric, m, modalities, by_metric.get(metric)))
    fig.update_layout(
        title={"text": "dominance: which modality leads, over time", "font": {"size": 14}},
        height=180,
        margin={"l": 90, "r": 10, "t": 40, "b": 30},
        yaxis={"categoryorder": "array", "categoryarray": list(DOMINANCE_ROWS.values())[::-1]},
        xaxis_title="step",
        uirevision="keep",
        legend={"orientation": "h", "y": 1.25, "x": 1, "xanchor": "right"},
    )
    return fig


def build_overlay_figure(
    runs: Mapping[str, Series], *, title: str, smoothing: float = 0.0, x_mode: str = "step", log_y: bool = False
) -> go.Figure:
    """One metric, one curve per run (keyed by run label)."""
    labels = list(runs)
    fig = go.Figure()
    for label in labels:
        s = runs[label]
        values = smooth(s.values, smoothing)[0] if smoothing > 0 else s.values
        trace_cls = go.Scattergl if len(s) >= WEBGL_MIN_POINTS else go.Scatter
        fig.add_trace(
            trace_cls(
                x=x_values(s, x_mode, None),
                y=y_values(values, False),
                name=label,
                mode="lines",
                line={"color": PALETTE[labels.index(label) % len(PALETTE)]},
            )
        )
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=300,
        margin={"l": 60, "r": 10, "t": 40, "b": 40},
        xaxis_title=X_TITLES[x_mode],
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def build_small_multiples_figure(
    runs: Mapping[str, Mapping[str, Series]],
    *,
    prefix: str,
    smoothing: float = 0.0,
    x_mode: str = "step",
    log_y: bool = False,
    symlog_y: bool = False,
) -> go.Figure:
    """`prefix/*` (e.g. acc/*): one column per run, y axes shared across the row."""
    labels = list(runs)
    fig = make_subplots(rows=1, cols=max(len(labels), 1), shared_yaxes=True, subplot_titles=labels)
    names = sorted({label_of(k) for r in runs.values() for k in r if k.startswith(prefix + "/")})
    for col, label in enumerate(labels, start=1):
        for key in sorted(k for k in runs[label] if k.startswith(prefix + "/")):
            s = runs[label][key]
            values = smooth(s.values, smoothing)[0] if smoothing > 0 else s.values
            name = label_of(key)
            trace_cls = go.Scattergl if len(s) >= WEBGL_MIN_POINTS else go.Scatter
            fig.add_trace(
                trace_cls(
                    x=x_values(s, x_mode, None),
                    y=y_values(values, symlog_y),
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    mode="lines",
                    line={"color": color_for(name, names)},
                ),
                row=1,
                col=col,
            )
    fig.update_layout(
        title={"text": f"{prefix}/*", "font": {"size": 14}}, height=280, margin={"l": 60, "r": 10, "t": 60, "b": 30}
    )
    if symlog_y:
        finite = [
            v
            for r in runs.values()
            for k, s in r.items()
            if k.startswith(prefix + "/")
            for v in s.values
            if math.isfinite(v)
        ]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
        tickvals, ticktext = symlog_ticks(lo, hi)
        fig.update_yaxes(tickvals=tickvals, ticktext=ticktext)
    elif log_y:
        fig.update_yaxes(type="log")
    return fig


def build_parallel_figure(runs: Sequence[Mapping[str, Any]], settings: Sequence[str], metric: str) -> go.Figure:
    """Parallel coordinates of a sweep: one line per run, an axis per differing setting, the metric last.

    `runs` items: {"label", "config", "metrics": {name: value}}. Text settings become category axes.
    """
    dims: list[dict[str, Any]] = []
    for name in settings:
        raw = [r["config"].get(name) for r in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
            dims.append({"label": name, "values": raw})
        else:
            cats = sorted({str(v) for v in raw})
            dims.append(
                {
                    "label": name,
                    "values": [cats.index(str(v)) for v in raw],
                    "tickvals": list(range(len(cats))),
                    "ticktext": cats,
                }
            )
    scores = [_finite_or_none(r.get("metrics", {}).get(metric)) for r in runs]
    dims.append({"label": metric, "values": [s if s is not None else float("nan") for s in scores]})
    colour = [s if s is not None else 0.0 for s in scores]
    fig = go.Figure(go.Parcoords(dimensions=dims, line={"color": colour, "colorscale": "Viridis", "showscale": True}))
    fig.update_layout(title={"text": f"sweep: settings vs {metric}", "font": {"size": 14}}, height=360)
    return fig


def _finite_or_none(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def figure_to_csv(figure: Mapping[str, Any]) -> str:
    """What a figure shows, as CSV: trace, x, y (real values where the axis is transformed)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trace", "x", "y"])
    for t in figure.get("data", []):
        meta = t.get("meta") or {}
        name = meta.get("key", t.get("name", "")) if isinstance(meta, dict) else t.get("name", "")
        if isinstance(meta, dict) and meta.get("kind") == "smooth":
            name = f"{name} (smoothed)"
        xs = t.get("x") or []
        ys = t.get("customdata") if t.get("customdata") is not None else t.get("y")
        for x, y in zip(xs, ys or [], strict=False):
            if isinstance(y, list):  # dominance strips carry text customdata; keep the plotted y
                y = y[0]
            w.writerow(
                [name, x, "" if y is None else (format_real(y) if isinstance(y, float) and abs(y) >= 1e4 else y)]
            )
    return buf.getvalue()
