"""What the Compare page draws, as data: small multiples, overlays (per run or per group band), the
balance view's curves, the final-metrics table with the best value marked. Pure: unit-tested.

Series ids are "<run id>|<key>". Text is escaped for Plotly (run names are user text).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .colors import modality_color, run_color
from .families import Families
from .groups import Group, stat
from .tables import final_metrics, run_label
from .text import plotly_text


def sid(run_id: int, key: str) -> str:
    return f"{run_id}|{key}"


def small_multiples(
    families: Families, runs: Sequence[Mapping[str, Any]], keys_by_run: Mapping[int, Sequence[str]]
) -> list[dict[str, Any]]:
    """One figure per per-modality family: a column per run, a curve per modality in its colour."""
    all_keys = sorted({k for ks in keys_by_run.values() for k in ks})
    mods = families.modalities(all_keys)
    specs = []
    for family, fkeys in families.group(all_keys):
        if not family.per_modality:
            continue
        traces = []
        for col, r in enumerate(runs):
            for key in fkeys:
                if key not in keys_by_run.get(int(r["id"]), ()):
                    continue
                m = families.info(key).modality or key
                traces.append(
                    {
                        "sid": sid(int(r["id"]), key),
                        "name": plotly_text(m),
                        "group": plotly_text(m),
                        "color": modality_color(m, mods),
                        "column": col,
                    }
                )
        specs.append(
            {
                "id": f"cmp-sm-{family.name}",
                "family": family.name,
                "title": plotly_text(family.title),
                "scale": family.scale,
                "traces": traces,
                "columns": [plotly_text(run_label(r)) for r in runs],
                "zero_line": family.scale == "symlog",
                "height": 300,
            }
        )
    return specs


def overlay(
    families: Families,
    key: str,
    runs: Sequence[Mapping[str, Any]],
    groups: Sequence[Group] | None,
    *,
    panel_id: str | None = None,
    title: str | None = None,
    present: Mapping[int, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """One metric: a curve per run in the run's colour, or per group a mean line with a band."""
    fam = families.info(key).family
    have = [r for r in runs if present is None or key in present.get(int(r["id"]), ())]
    spec: dict[str, Any] = {
        "id": panel_id or f"cmp-ov-{key}",
        "family": fam.name,
        "title": plotly_text(title or key),
        "scale": fam.scale,
        "zero_line": fam.scale == "symlog",
        "traces": [],
    }
    color_of = {int(r["id"]): run_color(i) for i, r in enumerate(runs)}
    if groups and any(len(g.run_ids) > 1 for g in groups):
        spec["bands"] = []
        ids_present = {int(r["id"]) for r in have}
        for i, g in enumerate(groups):
            members = [rid for rid in g.run_ids if rid in ids_present]
            if not members:
                continue
            for rid in members:
                spec["traces"].append({"sid": sid(rid, key), "name": str(rid), "color": run_color(i), "hidden": True})
            spec["bands"].append(
                {"name": plotly_text(g.label), "color": run_color(i), "sids": [sid(r, key) for r in members]}
            )
    else:
        for r in have:
            label = plotly_text(run_label(r))
            spec["traces"].append(
                {"sid": sid(int(r["id"]), key), "name": label, "group": label, "color": color_of[int(r["id"])]}
            )
    return spec


def default_overlay_keys(all_keys: Sequence[str], families: Families) -> list[str]:
    """The fused model's curves: training loss and each validation metric (not per modality)."""
    out = [k for k in all_keys if k == "train/loss"]
    out += [k for k in all_keys if families.info(k).family.name in ("val", "val_loss")]
    return out[:4]


def final_table(
    families: Families, runs: Sequence[Mapping[str, Any]], groups: Sequence[Group] | None
) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[dict[str, Any]]]:
    """(rows, columns, style rules) of the final metrics: a column per run (or group, mean ± std with n),
    the best value of each row in bold on green ('best' by the metric's direction from the catalog)."""
    per_run = {int(r["id"]): final_metrics(r) for r in runs}
    names = sorted({k for m in per_run.values() for k in m})
    grouped = bool(groups) and any(len(g.run_ids) > 1 for g in groups or [])
    if grouped:
        assert groups is not None
        cols = [(f"g{i}", g.label, list(g.run_ids)) for i, g in enumerate(groups)]
    else:
        cols = [(str(r["id"]), run_label(r), [int(r["id"])]) for r in runs]
    rows: list[dict[str, Any]] = []
    styles: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        row: dict[str, Any] = {"metric": name}
        centre: dict[str, float] = {}
        for cid, _label, ids in cols:
            s = stat([per_run[rid].get(name) for rid in ids])
            if s is None:
                row[cid] = ""
                continue
            row[cid] = s.text() if grouped else f"{s.mean:.4f}"
            centre[cid] = s.mean
        better = families.better(name)
        if better and len(centre) >= 2 and len(set(centre.values())) > 1:
            best = max(centre.values()) if better == "max" else min(centre.values())
            for cid, v in centre.items():
                if math.isclose(v, best, rel_tol=0, abs_tol=1e-12):
                    styles.append(
                        {"if": {"row_index": i, "column_id": cid}, "fontWeight": "bold", "backgroundColor": "#d9f7e0"}
                    )
        rows.append(row)
    columns = [{"id": "metric", "name": "metric"}] + [{"id": cid, "name": label} for cid, label, _ in cols]
    return rows, columns, styles


def probe_bars(
    runs: Sequence[Mapping[str, Any]], scores: Mapping[int, Mapping[str, float]], metric: str
) -> dict[str, Any]:
    """Probe score per modality per run, as a grouped bar chart (Plotly figure dict)."""
    mods = sorted({m for s in scores.values() for m in s})
    labels = [plotly_text(run_label(r)) for r in runs]
    data = []
    for m in mods:
        data.append(
            {
                "type": "bar",
                "name": plotly_text(m),
                "x": labels,
                "y": [scores.get(int(r["id"]), {}).get(m) for r in runs],
                "marker": {"color": modality_color(m, mods)},
                "hovertemplate": "%{x}<br>%{fullData.name}: %{y:.4f}<extra></extra>",
            }
        )
    return {
        "data": data,
        "layout": {
            "title": {
                "text": f"probe {plotly_text(metric)} per modality (linear probe on each frozen encoder)",
                "font": {"size": 14},
            },
            "barmode": "group",
            "height": 300,
            "margin": {"l": 60, "r": 10, "t": 40, "b": 60},
            "yaxis": {"title": {"text": f"probe {plotly_text(metric)}"}},
            "legend": {"orientation": "h", "y": -0.3},
        },
    }
