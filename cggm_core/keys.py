"""Metric key families, declared once: what every key the trainer logs means and how to show it.

A family is a key template such as ``acc/{m}``, where ``{m}`` is a modality name (one path
segment, e.g. ``kar``), ``{metric}`` is one of the task's evaluation metrics (``acc`` for
classification, ``sign_acc`` for regression) and ``{name}`` is any one segment. The probe's keys
(DESIGN §6), each task's evaluation keys and each method's own diagnostics are listed here with a
title, a default y scale and whether the family has one curve per modality. `/api/catalog` serves
them (``catalog()``); the dashboard builds its panels from them, so a new method or task that
declares its keys here needs no dashboard change.

Order matters: a key belongs to the first family whose template matches it (``val/contrib/{m}``
before ``val/{metric}/{m}``). No torch here: the backend imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Scale = Literal["linear", "log", "symlog"]
When = Literal["step", "epoch", "end"]  # every log step, each validation, once at the end of the run
Better = Literal["max", "min"]


@dataclass(frozen=True)
class TaskMetric:
    name: str  # the key segment: val/<name>, train/<name>
    title: str
    better: Better


# Each task kind's evaluation metrics (cggm_core.tasks: Task.metric_name). `loss` is every task's.
TASK_METRICS: dict[str, tuple[TaskMetric, ...]] = {
    "classification": (TaskMetric("acc", "accuracy", "max"),),
    "regression": (TaskMetric("sign_acc", "sign accuracy (zero counts as negative)", "max"),),
}
LOSS = TaskMetric("loss", "loss", "min")


@dataclass(frozen=True)
class KeyFamily:
    name: str
    templates: tuple[str, ...]
    title: str
    scale: Scale = "linear"
    when: When = "step"
    source: str = "probe"  # "probe" (every method), "task", or the method's registry name
    better: Better | None = None  # for tables: which end is good (None: the task metric in the key says)
    show: bool = True  # False: bookkeeping (the epoch counter), not a chart

    @property
    def per_modality(self) -> bool:
        return any("{m}" in t for t in self.templates)

    def key(self, template: int = 0, **parts: str) -> str:
        """The key for given parts: ACC.key(m="kar") == "acc/kar"."""
        return self.templates[template].format(**parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "templates": list(self.templates),
            "title": self.title,
            "scale": self.scale,
            "per_modality": self.per_modality,
            "when": self.when,
            "source": self.source,
            "better": self.better,
            "show": self.show,
        }


F = KeyFamily
FAMILIES: tuple[KeyFamily, ...] = (
    # -- the probe: every method logs these at every log step (DESIGN §6)
    F("acc", ("acc/{m}",), "acc/* — aux-head accuracy per modality (ε_m)", better="max"),
    F("grad_norm", ("grad_norm/{m}",), "grad_norm/* — encoder gradient norm, before modulation", "log"),
    F("grad_norm_mod", ("grad_norm_mod/{m}",), "grad_norm_mod/* — encoder gradient norm after modulation", "log"),
    F("update_norm", ("update_norm/{m}",), "update_norm/* — how far each encoder moved in the step", "log"),
    F("coef", ("coef/{m}",), "coef/* — the method's coefficient per modality (B_m for CGGM)", "symlog"),
    F("cos", ("cos/{m}",), "cos/* — cos(g_m, g_Ω)"),
    F("losses", ("train/loss", "loss/{name}"), "losses — fused task loss and the training loss", "log", better="min"),
    F("loss_aux", ("loss/aux/{m}",), "loss/aux/* — aux-head loss per modality", "log", better="min"),
    F("train", ("train/{metric}",), "train/* — fused model on the batch", source="task"),
    F("acc_gap", ("imbalance/acc_gap",), "imbalance/acc_gap — max ε − min ε"),
    F("grad_ratio", ("imbalance/grad_ratio",), "imbalance/grad_ratio — max / min encoder gradient norm", "log"),
    # -- each validation
    F("val_loss", ("val/loss",), "val/loss — fused model on the validation split", "log", "epoch", "task", "min"),
    F("contrib", ("val/contrib/{m}",), "val/contrib/* — Shapley contribution per modality", when="epoch"),
    F(
        "val_aux",
        ("val/{metric}/{m}",),
        "val/*/<m> — aux head per modality on validation",
        "linear",
        "epoch",
        "task",
    ),
    F("val", ("val/{metric}",), "val/* — fused model on validation", "linear", "epoch", "task"),
    F("epoch", ("epoch",), "epochs done", when="epoch", show=False),
    # -- once, at the end of the run (the summary card, not a chart)
    F("test", ("test/loss", "test/{metric}"), "test/* — fused model on the test split", when="end", source="task"),
    F("test_aux", ("test/{metric}/{m}",), "test/*/<m> — aux head per modality on test", when="end", source="task"),
    F("probe", ("probe/{metric}/{m}",), "probe/*/<m> — linear probe on each frozen encoder", when="end", better="max"),
    # -- methods' own diagnostics
    F("cos_w", ("cos_w/{m}",), "cos_w/* — CGGM reference: cos of aux- and task-head last-layer weights", source="cggm"),
    F("ogm_score", ("ogm/score/{m}",), "ogm/score/* — OGM-GE score s_m (softmax mass on the label)", source="ogm_ge"),
    F("agm_loss", ("agm/loss/{m}",), "agm/loss/* — AGM unimodal cross-entropy per modality", "log", source="agm"),
    F("pareto_cos", ("pareto/cos/{m}",), "pareto/cos/* — MMPareto cos(g_multimodal, g_unimodal)", source="mmpareto"),
    F(
        "pareto_grad_norm_uni",
        ("pareto/grad_norm_uni/{m}",),
        "pareto/grad_norm_uni/* — MMPareto unimodal gradient norm",
        "log",
        source="mmpareto",
    ),
)
BY_NAME = {f.name: f for f in FAMILIES}


def check_families(families: Iterable[KeyFamily]) -> None:
    """Names unique, placeholders known; raises RuntimeError naming the family (run at import)."""
    families = list(families)
    names = [f.name for f in families]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise RuntimeError(f"key family names declared twice: {sorted(dup)}")
    for f in families:
        for t in f.templates:
            unknown = set(re.findall(r"{(\w*)}", t)) - {"m", "metric", "name"}
            if unknown:
                raise RuntimeError(
                    f"key family {f.name}: template {t!r} uses {sorted(unknown)}; allowed m, metric, name"
                )


check_families(FAMILIES)


@dataclass(frozen=True)
class KeyMatch:
    family: KeyFamily
    modality: str | None


class KeyMatcher:
    """Which family a key belongs to, for a given set of task metric names."""

    def __init__(self, families: Iterable[KeyFamily] = FAMILIES, metrics: Iterable[str] | None = None) -> None:
        names = sorted(
            set(metrics) if metrics is not None else {m.name for ms in TASK_METRICS.values() for m in (*ms, LOSS)},
            key=lambda n: (-len(n), n),
        )
        metric_rx = "|".join(re.escape(n) for n in names) or r"[^/]+"
        self._rules: list[tuple[re.Pattern[str], KeyFamily]] = []
        for f in families:
            for t in f.templates:
                rx = re.escape(t)
                rx = rx.replace(r"\{m\}", r"(?P<m>[^/]+)").replace(r"\{name\}", r"[^/]+")
                rx = rx.replace(r"\{metric\}", f"(?:{metric_rx})")
                self._rules.append((re.compile(f"^{rx}$"), f))

    def match(self, key: str) -> KeyMatch | None:
        for rx, family in self._rules:
            hit = rx.match(key)
            if hit:
                return KeyMatch(family, hit.groupdict().get("m"))
        return None


def catalog() -> dict[str, Any]:
    """The families and each task's metrics, JSON-ready (part of `/api/catalog`)."""
    return {
        "families": [f.to_json() for f in FAMILIES],
        "task_metrics": {
            kind: [{"name": m.name, "title": m.title, "better": m.better} for m in (*ms, LOSS)]
            for kind, ms in TASK_METRICS.items()
        },
    }


def family_of(key: str) -> KeyMatch | None:
    """The family of one key, with every task's metrics known."""
    return _DEFAULT.match(key)


_DEFAULT = KeyMatcher()
