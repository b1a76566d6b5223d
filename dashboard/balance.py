"""The balance view's judgements: which modality is weak, which run balanced best, and how far each
modality's probe stays below what its encoder reaches alone (a `unimodal` run of the same data).

Probe accuracy (`probe/<metric>/<m>`: a linear probe on the frozen encoder, the OGM-GE protocol)
is the measure throughout: it asks how good each encoder became, whatever the fusion does with it.
Pure functions on runs as the backend returns them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .groups import stat


def metric_of(run: Mapping[str, Any]) -> str:
    """The metric the probes report: the task's batch metric ε (the summary's `metric` is the
    evaluation metric a run is judged by, e.g. MAE for regression)."""
    summary = run.get("summary") or {}
    return str(summary.get("batch_metric") or summary.get("metric") or "acc")


def modalities_of(run: Mapping[str, Any]) -> list[str]:
    summary = run.get("summary") or {}
    if summary.get("modalities"):
        return [str(m) for m in summary["modalities"]]
    metric = metric_of(run)
    prefix = f"probe/{metric}/"
    return sorted(k[len(prefix) :] for k in (summary.get("probe") or {}) if k.startswith(prefix))


def probe_scores(run: Mapping[str, Any]) -> dict[str, float]:
    """{modality: probe metric} of a finished run (finite values only)."""
    summary = run.get("summary") or {}
    metric = metric_of(run)
    out = {}
    for m in modalities_of(run):
        v = (summary.get("probe") or {}).get(f"probe/{metric}/{m}")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[m] = float(v)
    return out


def weak_modality(runs: Sequence[Mapping[str, Any]]) -> str | None:
    """The modality with the lowest mean probe score over the runs that have one."""
    by: dict[str, list[float]] = {}
    for r in runs:
        for m, v in probe_scores(r).items():
            by.setdefault(m, []).append(v)
    if len(by) < 2:
        return None
    return min(by, key=lambda m: (sum(by[m]) / len(by[m]), m))


@dataclass(frozen=True)
class Balance:
    run_id: int
    gap: float  # best − worst modality's probe score
    weakest: float


def best_balanced(runs: Sequence[Mapping[str, Any]]) -> list[Balance]:
    """Runs ranked by balance: the smallest probe gap first, then the strongest weakest modality."""
    out = []
    for r in runs:
        scores = probe_scores(r)
        if len(scores) >= 2:
            out.append(Balance(int(r["id"]), max(scores.values()) - min(scores.values()), min(scores.values())))
    return sorted(out, key=lambda b: (round(b.gap, 12), -b.weakest, b.run_id))


def trained_modality(run: Mapping[str, Any]) -> str | None:
    """The modality a `unimodal` run trained (its `modality` setting; empty = the dataset's last one)."""
    config = run.get("config") or {}
    m = config.get("modality")
    if isinstance(m, str) and m:
        return m
    mods = modalities_of(run)
    return mods[-1] if mods else None


def same_data(a: Mapping[str, Any], b: Mapping[str, Any], data_settings: Sequence[str]) -> bool:
    ca, cb = a.get("config") or {}, b.get("config") or {}
    if ca.get("dataset") != cb.get("dataset"):
        return False
    return all(ca.get(n) == cb.get(n) for n in (*data_settings, "data_seed"))


@dataclass(frozen=True)
class Ceiling:
    modality: str
    joint: float
    alone: float
    alone_n: int
    alone_runs: tuple[int, ...]

    @property
    def points(self) -> float:
        return 100.0 * (self.joint - self.alone)

    def text(self, run_label: str = "") -> str:
        n = f", n={self.alone_n}" if self.alone_n > 1 else ""
        head = f"{run_label}: " if run_label else ""
        sign = "+" if self.points >= 0 else "−"
        return (
            f"{head}{self.modality}: {self.joint:.3f} jointly vs {self.alone:.3f} alone{n}, "
            f"{sign}{abs(self.points):.1f} points"
        )


def unimodal_ceilings(
    run: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]], data_settings: Sequence[str]
) -> list[Ceiling]:
    """For each modality of `run`: its probe score next to the mean probe score of the finished
    `unimodal` runs of the same data that trained that modality alone (the encoder's ceiling)."""
    joint = probe_scores(run)
    out = []
    for m, score in joint.items():
        alone = [
            (int(c["id"]), probe_scores(c).get(m))
            for c in candidates
            if c.get("status") == "finished"
            and (c.get("config") or {}).get("method") == "unimodal"
            and int(c["id"]) != int(run["id"])
            and trained_modality(c) == m
            and same_data(run, c, data_settings)
            and metric_of(c) == metric_of(run)
        ]
        alone = [(i, v) for i, v in alone if v is not None]
        s = stat([v for _, v in alone])
        if s is not None:
            out.append(Ceiling(m, score, s.mean, s.n, tuple(i for i, _ in alone)))
    return out
