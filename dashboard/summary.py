"""The run summary card: the numbers a researcher reads first, in one place.

Final, best and test metric; every evaluation metric of the run's task (Dice WT/TC/ET/avg for
segmentation, MAE, correlation and the accuracies for regression), validation and test; per modality the linear probe, the aux head on validation, the
Shapley contribution and how often it led; the gap between modalities; B's blow-ups and
negatives at full resolution (`digest`). While a run is going, the last logged values stand in
for the final ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dash import html

from .digest import RunDigest
from .families import Families


def _num(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def card_numbers(run: Mapping[str, Any], latest: Mapping[str, float], families: Families) -> dict[str, Any]:
    """The card's numbers (pure): from the summary of a finished run, else the last logged values."""
    summary = run.get("summary") or {}
    final = {**latest, **(summary.get("final") or {})}
    metric = summary.get("metric") or _metric_of(final)
    eps = summary.get("batch_metric") or metric  # aux heads and probes report ε (acc, sign_acc, dice)
    modalities = list(summary.get("modalities") or families.modalities(final))
    probe = {**latest, **(summary.get("probe") or {})}
    test = {**latest, **(summary.get("test") or {})}
    best = summary.get("best") or {}
    rows = []
    for m in modalities:
        rows.append(
            {
                "modality": m,
                "probe": _num(probe.get(f"probe/{eps}/{m}")),
                "aux": _num(final.get(f"val/{eps}/{m}")),
                "contrib": _num(final.get(f"val/contrib/{m}")),
            }
        )
    task = summary.get("task")
    listed = families.task_metrics.get(str(task), []) if task else []
    if not listed:  # a running run (no summary yet) or an older backend: the val/<metric> keys it has
        listed = [(k[4:], k[4:]) for k in sorted(final) if families.info(k).family.name == "val"]
    evaluation = [
        {"metric": name, "title": title, "val": _num(final.get(f"val/{name}")), "test": _num(test.get(f"test/{name}"))}
        for name, title in listed
        if name != "loss" and (f"val/{name}" in final or f"test/{name}" in test)
    ]
    probes = [r["probe"] for r in rows if r["probe"] is not None]
    auxes = [r["aux"] for r in rows if r["aux"] is not None]
    return {
        "metric": metric,
        "eps": eps,
        "final": _num(final.get(f"val/{metric}")),
        "best": _num(best.get(f"val/{metric}")),
        "best_step": best.get("step"),
        "test": _num(test.get(f"test/{metric}")),
        "rows": rows,
        "evaluation": evaluation,
        "probe_gap": (max(probes) - min(probes)) if len(probes) >= 2 else None,
        "aux_gap": (max(auxes) - min(auxes)) if len(auxes) >= 2 else None,
        "finished": bool(summary),
    }


def _metric_of(values: Mapping[str, Any]) -> str:
    for k in values:
        head, _, rest = k.partition("/")
        if head == "val" and rest and "/" not in rest and rest != "loss":
            return rest
    return "acc"


def summary_card(
    run: Mapping[str, Any],
    digest: RunDigest,
    families: Families,
    latest: Mapping[str, float],
    eps: str = "accuracy",
) -> Any:
    n = card_numbers(run, latest, families)
    metric = n["metric"]
    head: list[Any] = [
        html.Span(f"val {metric} {_fmt(n['final'])}", className="big"),
    ]
    if n["best"] is not None:
        head.append(html.Span(f"best {_fmt(n['best'])} (step {n['best_step']})"))
    head.append(html.Span(f"test {metric} {_fmt(n['test'])}"))
    if n["probe_gap"] is not None:
        head.append(html.Span(f"gap between modalities (probe): {_fmt(n['probe_gap'], 3)}"))
    elif n["aux_gap"] is not None:
        head.append(html.Span(f"gap between modalities (aux): {_fmt(n['aux_gap'], 3)}"))
    if digest.coef.total:
        c = digest.coef
        head.append(
            html.Span(
                f"B: {c.blowups / c.total:.1%} blow-ups (|B|>100), {c.negatives / c.total:.1%} negative "
                f"of {c.total:,} values",
                className="coef-stats",
            )
        )
    shares = digest.dominance["acc"].shares()
    rows = [
        html.Tr(
            [
                html.Td(r["modality"]),
                html.Td(_fmt(r["probe"])),
                html.Td(_fmt(r["aux"])),
                html.Td(_fmt(r["contrib"])),
                html.Td(f"{shares[r['modality']]:.0%}" if r["modality"] in shares else "—"),
            ]
        )
        for r in n["rows"]
    ]
    table = html.Table(
        [
            html.Thead(
                html.Tr(
                    [
                        html.Th("modality"),
                        html.Th(f"probe {n['eps']}"),
                        html.Th(f"aux {n['eps']} (val)"),
                        html.Th("Shapley contribution"),
                        html.Th(f"led ({eps})"),
                    ]
                )
            ),
            html.Tbody(rows),
        ],
        className="summary-table",
    )
    evaluation = []
    if len(n["evaluation"]) > 1:  # more than the one metric the head line already gives
        evaluation = [
            html.Table(
                [
                    html.Thead(
                        html.Tr([html.Th("")] + [html.Th(e["metric"], title=e["title"]) for e in n["evaluation"]])
                    ),
                    html.Tbody(
                        [
                            html.Tr([html.Td(split)] + [html.Td(_fmt(e[split])) for e in n["evaluation"]])
                            for split in ("val", "test")
                        ]
                    ),
                ],
                className="summary-table",
                id="run-summary-eval",
            )
        ]
    note = (
        [] if n["finished"] else [html.Span("running: last logged values; final numbers at the end", className="help")]
    )
    return [html.Div(head + note, className="row summary-head"), *evaluation, table]
