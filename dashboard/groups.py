"""Groups of runs: seed repeats above all, or runs sharing any one setting; mean ± std with n.

`SEED_REPEATS` groups runs whose configs are equal except for the seed: the repeats of one
experiment. Any setting's name groups runs by that setting's value alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .configs import format_setting

SEED_REPEATS = "seed repeats"
SEED_SETTINGS = ("seed",)


@dataclass(frozen=True)
class Group:
    label: str
    run_ids: tuple[int, ...]


def group_runs(runs: Sequence[Mapping[str, Any]], by: str | None) -> list[Group]:
    """Groups in the order their first run appears; `by` empty: one group per run."""
    buckets: dict[str, list[int]] = {}
    labels: dict[str, str] = {}
    for r in runs:
        config = r.get("config") or {}
        if not by:
            key, label = str(r["id"]), f"{r['id']}: {r.get('name', '')}"
        elif by == SEED_REPEATS:
            rest = {k: v for k, v in config.items() if k not in SEED_SETTINGS}
            key = repr(sorted(rest.items()))
            label = _describe(config, runs)
        else:
            v = config.get(by)
            key = repr(v)
            label = f"{by}={format_setting(v) if v is not None else '—'}"
        buckets.setdefault(key, []).append(int(r["id"]))
        labels.setdefault(key, label)
    return [Group(labels[k], tuple(ids)) for k, ids in buckets.items()]


def _describe(config: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> str:
    """A seed group's label: its method and the settings that tell it apart from the other runs."""
    differing = set()
    configs = [r.get("config") or {} for r in runs]
    for name in {k for c in configs for k in c}:
        if name in SEED_SETTINGS:
            continue
        # Among the runs that have the setting: a method's own settings do not tell groups apart.
        values = {repr(c[name]) for c in configs if name in c}
        if len(values) > 1:
            differing.add(name)
    parts = [str(config.get("method", "?"))]
    parts += [f"{n}={format_setting(config[n])}" for n in sorted(differing - {"method"}) if n in config]
    return " ".join(parts)


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample std (n − 1); 0 for one run
    lo: float
    hi: float
    n: int

    def text(self, digits: int = 4) -> str:
        if self.n == 1:
            return f"{self.mean:.{digits}f} (n=1)"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} (n={self.n})"


def stat(values: Sequence[float | None]) -> Stat | None:
    vs = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vs:
        return None
    std = statistics.stdev(vs) if len(vs) > 1 else 0.0
    return Stat(statistics.fmean(vs), std, min(vs), max(vs), len(vs))


def grouping_options(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """What runs can be grouped by: seed repeats (when some runs differ only in seed), then each setting that differs."""
    names = sorted({k for c in configs for k in c if len({repr(x.get(k)) for x in configs}) > 1})
    return [SEED_REPEATS, *[n for n in names if n not in SEED_SETTINGS]]
