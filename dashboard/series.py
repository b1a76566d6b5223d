"""Pure data transforms behind the figures: decoding, smoothing, symlog, dominance, config diffs.

Nothing here knows about Dash or HTTP, so every function is unit-tested with hand-computed values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode_value(v: Any) -> float:
    """The backend sends non-finite values as the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(v, str):
        if v not in _NON_FINITE:
            raise ValueError(f"value {v!r} is neither a number nor one of NaN, Infinity, -Infinity")
        return _NON_FINITE[v]
    if v is None:
        return math.nan
    return float(v)


@dataclass
class Series:
    """One metric's points, values decoded to floats (non-finite kept as nan/±inf)."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Series:
        return cls(
            steps=[int(s) for s in doc.get("steps", [])],
            values=[decode_value(v) for v in doc.get("values", [])],
            times=[float(t) for t in doc.get("times", [])],
        )

    def __len__(self) -> int:
        return len(self.steps)

    def after(self, step: int) -> Series:
        """Only the points strictly after `step` (dedupe of incremental reads)."""
        keep = [i for i, s in enumerate(self.steps) if s > step]
        return Series([self.steps[i] for i in keep], [self.values[i] for i in keep], [self.times[i] for i in keep])


def parse_series(doc: Mapping[str, Any]) -> dict[str, Series]:
    """{"series": {key: {steps, values, times}}} → {key: Series}."""
    return {k: Series.from_json(v) for k, v in doc.get("series", {}).items()}


# ---- smoothing -----------------------------------------------------------------------------------


@dataclass
class EmaState:
    """State of TensorBoard's debiased EMA, so that live points continue the same curve.

    s_t = w·s_{t−1} + (1−w)·x_t with s_0 = 0, shown as s_t / (1 − w^t), t counting finite points.
    """

    last: float = 0.0
    count: int = 0


def smooth(values: Sequence[float], weight: float, state: EmaState | None = None) -> tuple[list[float], EmaState]:
    """Debiased EMA of `values`; non-finite points give nan and leave the state untouched.

    `weight` in [0, 1): 0 returns the values unchanged. Pass the returned state back in to
    continue a series with new points exactly as if it had been smoothed in one go.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight {weight} is outside [0, 1)")
    st = EmaState(state.last, state.count) if state is not None else EmaState()
    out: list[float] = []
    for x in values:
        if not math.isfinite(x):
            out.append(math.nan)
            continue
        st.last = weight * st.last + (1.0 - weight) * x
        st.count += 1
        debias = 1.0 - weight**st.count
        out.append(st.last / debias if debias > 0 else x)
    return out, st


# ---- symmetric log ---------------------------------------------------------------------------------


def symlog(v: float) -> float:
    """sign(v)·log10(1+|v|): linear near 0, logarithmic for CGGM's |B| ~ 1e7 blow-ups, keeps the sign."""
    if math.isnan(v):
        return math.nan
    if math.isinf(v):
        return v
    return math.copysign(math.log10(1.0 + abs(v)), v)


def symlog_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Tick positions (in symlog space) and labels (real values) covering real values [lo, hi]."""
    top = max(abs(lo), abs(hi), 1.0)
    decades = min(int(math.ceil(math.log10(top))), 30)
    reals: list[float] = [0.0]
    for d in range(decades + 1):
        v = 10.0**d
        if v <= top * 10:
            if hi > 0 or v <= 1:
                reals.append(v)
            if lo < 0 or v <= 1:
                reals.append(-v)
    reals = sorted(set(reals))
    return [symlog(r) for r in reals], [format_real(r) for r in reals]


def format_real(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.0e}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    return f"{v:g}"


# ---- dominance -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dominance:
    """Which modality leads a per-modality metric at each step, and by how much."""

    metric: str  # "acc" or "grad_norm"
    steps: list[int]
    leaders: list[str]
    margins: list[float]  # acc: leader − runner-up (absolute); grad_norm: leader / runner-up (ratio)

    def now(self) -> tuple[str, float] | None:
        if not self.steps:
            return None
        return self.leaders[-1], self.margins[-1]


def modalities_of(keys: Iterable[str], prefix: str) -> list[str]:
    """['acc/m0', 'acc/m1', 'val/acc'] with prefix 'acc' → ['m0', 'm1'] (one level only)."""
    out = []
    for k in keys:
        head, sep, rest = k.partition("/")
        if sep and head == prefix and rest and "/" not in rest:
            out.append(rest)
    return sorted(out)


def dominance(series: Mapping[str, Series], metric: str) -> Dominance:
    """Leader by `metric/<m>` at every step where all modalities have a finite value.

    Accuracy margins are differences (0.9 vs 0.6 → 0.3); gradient-norm margins are ratios
    (3.0 vs 1.0 → 3.0), because norms of different encoders differ by orders of magnitude.
    """
    mods = modalities_of(series, metric)
    by_step: dict[int, dict[str, float]] = {}
    for m in mods:
        s = series[f"{metric}/{m}"]
        for step, v in zip(s.steps, s.values, strict=False):
            by_step.setdefault(step, {})[m] = v
    steps, leaders, margins = [], [], []
    if len(mods) >= 2:
        for step in sorted(by_step):
            row = by_step[step]
            if len(row) != len(mods) or not all(math.isfinite(v) for v in row.values()):
                continue
            ranked = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))
            (lead, v1), (_, v2) = ranked[0], ranked[1]
            margin = _margin(metric, v1, v2)
            steps.append(step)
            leaders.append(lead)
            margins.append(margin)
    return Dominance(metric, steps, leaders, margins)


def _margin(metric: str, lead: float, second: float) -> float:
    if metric == "grad_norm":
        return lead / second if second > 0 else math.inf
    return lead - second


def describe_dominance(d: Dominance) -> str:
    now = d.now()
    if now is None:
        return f"{d.metric}: no data yet"
    lead, margin = now
    if d.metric == "grad_norm":
        by = "∞" if math.isinf(margin) else f"×{margin:.2f}"
        return f"grad norm: {lead} leads {by}"
    share = d.leaders.count(lead) / len(d.leaders)
    return f"accuracy: {lead} leads by {margin:+.3f} (leads at {share:.0%} of steps)"


# ---- configs -----------------------------------------------------------------------------------------


def differing_settings(configs: Mapping[Any, Mapping[str, Any]]) -> list[str]:
    """Setting names whose value is not the same in every config (a missing setting counts as differing)."""
    if len(configs) < 2:
        return []
    names: set[str] = set()
    for c in configs.values():
        names.update(c)
    missing = object()
    out = []
    for name in names:
        values = [c.get(name, missing) for c in configs.values()]
        first = values[0]
        if any(v is missing for v in values) or any(v != first for v in values[1:]):
            out.append(name)
    # dataset and method first, then alphabetical: the usual reading order of a comparison.
    return sorted(out, key=lambda n: (n not in ("dataset", "method"), n != "dataset", n))


def differing_rows(configs: Mapping[Any, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per differing setting: {"setting": name, <run id>: value, ...} (missing → '—')."""
    rows = []
    for name in differing_settings(configs):
        row: dict[str, Any] = {"setting": name}
        for run_id, c in configs.items():
            row[str(run_id)] = format_setting(c.get(name, "—"))
        rows.append(row)
    return rows


def format_setting(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(format_setting(x) for x in v)
    return str(v)


def parse_value_list(text: str, kind: str) -> list[Any]:
    """A sweep's values, comma- or space-separated, converted to the setting's type.

    Raises ValueError naming the bad item. `str` settings split on ';' because their own values
    may hold commas (e.g. strengths "3,1").
    """
    sep = ";" if kind == "str" else None
    raw = [t.strip() for t in (text.split(sep) if sep else text.replace(",", " ").split())]
    raw = [t for t in raw if t]
    if not raw:
        raise ValueError("expected at least one value")
    out: list[Any] = []
    for t in raw:
        try:
            out.append(convert(t, kind))
        except ValueError:
            raise ValueError(f"{t!r} is not a valid {kind}") from None
    return out


def convert(text: Any, kind: str) -> Any:
    """A form field's text → the setting's type (the backend validates bounds)."""
    if kind == "bool":
        if isinstance(text, bool):
            return text
        t = str(text).strip().lower()
        if t in ("true", "1", "yes", "on"):
            return True
        if t in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{text!r} is not a boolean")
    if kind == "int":
        f = float(text)
        if not f.is_integer():
            raise ValueError(f"{text!r} is not an integer")
        return int(f)
    if kind == "float":
        return float(text)
    return str(text)
