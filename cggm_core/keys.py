"""Metric key families, declared once: what every key the trainer logs means and how to show it.

A family is a key template such as ``acc/{m}``, where ``{m}`` is a modality name (one path
segment, e.g. ``kar``), ``{metric}`` is one of the task's evaluation metrics (``acc``, ``mae``,
``dice/wt``, ...), ``{eps}`` one task's batch metric ε (``acc``, ``sign_acc``, ``dice``: what aux
heads and probes report) and ``{name}`` is any one segment. The probe's keys
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

from .tasks import TASKS
from .tasks.base import MetricInfo

Scale = Literal["linear", "log", "symlog"]
When = Literal["step", "epoch", "end"]  # every log step, each validation, once at the end of the run
Better = Literal["max", "min"]


# Each task's metrics, as the tasks declare them (cggm_core.tasks: Task.metrics, ε first). `loss`
# is every task's.
TaskMetric = MetricInfo
TASK_METRICS: dict[str, tuple[MetricInfo, ...]] = {name: task.metrics for name, task in TASKS.items()}
BATCH_METRICS = {task.metric_name for task in TASKS.values()}  # ε: what aux heads and probes report
LOSS = MetricInfo("loss", "loss", "min")


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
    F(
        "acc",
        ("acc/{m}",),
        "acc/* — aux head's batch metric ε_m per modality (accuracy, sign accuracy or Dice)",
        better="max",
    ),
    F("grad_norm", ("grad_norm/{m}",), "grad_norm/* — encoder gradient norm, before modulation", "log"),
    F("grad_norm_mod", ("grad_norm_mod/{m}",), "grad_norm_mod/* — encoder gradient norm after modulation", "log"),
    F("update_norm", ("update_norm/{m}",), "update_norm/* — how far each encoder moved in the step", "log"),
    F("coef", ("coef/{m}",), "coef/* — the method's coefficient per modality (B_m for CGGM)", "symlog"),
    F("cos", ("cos/{m}",), "cos/* — cos(g_m, g_Ω)"),
    F("losses", ("train/loss", "loss/{name}"), "losses — fused task loss and the training loss", "log", better="min"),
    F("loss_aux", ("loss/aux/{m}",), "loss/aux/* — aux-head loss per modality", "log", better="min"),
    F("train", ("train/{metric}",), "train/* — fused model on the batch", source="task"),
    F("lr", ("lr",), "lr — the model's learning rate (its schedule)", "log"),
    F("acc_gap", ("imbalance/acc_gap",), "imbalance/acc_gap — max ε − min ε"),
    F("grad_ratio", ("imbalance/grad_ratio",), "imbalance/grad_ratio — max / min encoder gradient norm", "log"),
    # -- each validation
    F("val_loss", ("val/loss",), "val/loss — fused model on the validation split", "log", "epoch", "task", "min"),
    F("contrib", ("val/contrib/{m}",), "val/contrib/* — Shapley contribution per modality", when="epoch"),
    # val/{metric} before val/{eps}/{m}: a segmentation metric (dice/wt) has a slash in its name.
    F("val", ("val/{metric}",), "val/* — fused model on validation", "linear", "epoch", "task"),
    F(
        "val_aux",
        ("val/{eps}/{m}",),
        "val/*/<m> — aux head per modality on validation",
        "linear",
        "epoch",
        "task",
    ),
    F("epoch", ("epoch",), "epochs done", when="epoch", show=False),
    # -- once, at the end of the run (the summary card, not a chart)
    F("test", ("test/loss", "test/{metric}"), "test/* — fused model on the test split", when="end", source="task"),
    F("test_aux", ("test/{eps}/{m}",), "test/*/<m> — aux head per modality on test", when="end", source="task"),
    F("probe", ("probe/{eps}/{m}",), "probe/*/<m> — linear probe on each frozen encoder", when="end", better="max"),
    # -- methods' own diagnostics
    F("cos_w", ("cos_w/{m}",), "cos_w/* — CGGM reference: cos of aux- and task-head last-layer weights", source="cggm"),
    F("ogm_score", ("ogm/score/{m}",), "ogm/score/* — OGM-GE score s_m (softmax mass on the label)", source="ogm_ge"),
    F("cggm_slope", ("cggm/slope/{m}",), "cggm/slope/* — CGGM stable: windowed slope of ε (its Δ_m)", source="cggm"),
    F(
        "agm_score",
        ("agm/score/{m}",),
        "agm/score/* — AGM score: loss of each modality's Shapley output",
        "log",
        source="agm",
    ),
    F("agm_mean", ("agm/mean_score/{m}",), "agm/mean_score/* — AGM cumulative mean score", "log", source="agm"),
    F("agm_c", ("agm/c/{m}",), "agm/c/* — AGM coefficient on each modality's output", "log", source="agm"),
    F("pareto_cos", ("pareto/cos/{m}",), "pareto/cos/* — MMPareto cos(g_multimodal, g_unimodal)", source="mmpareto"),
    F(
        "pareto_grad_norm_uni",
        ("pareto/grad_norm_uni/{m}",),
        "pareto/grad_norm_uni/* — MMPareto unimodal gradient norm",
        "log",
        source="mmpareto",
    ),
    F(
        "uniform_loss",
        ("uniform/loss_uni/{m}",),
        "uniform/loss_uni/* — unimodal loss per modality",
        "log",
        source="uniform",
    ),
    F(
        "gblend_weight",
        ("gblend/weight/{name}",),
        "gblend/weight/* — G-Blending loss weight per head",
        source="gblending",
    ),
    F(
        "gblend_g",
        ("gblend/G/{name}",),
        "gblend/G/* — G-Blending generalisation (held-out loss drop)",
        source="gblending",
    ),
    F("gblend_o", ("gblend/O/{name}",), "gblend/O/* — G-Blending overfitting (gap growth)", source="gblending"),
    F(
        "gblend_loss",
        ("gblend/loss_uni/{m}",),
        "gblend/loss_uni/* — unimodal loss per modality",
        "log",
        source="gblending",
    ),
    F("pmr_score", ("pmr/score/{m}",), "pmr/score/* — PMR prototype score per modality", source="pmr"),
    F("pmr_ratio", ("pmr/ratio/{m}",), "pmr/ratio/* — PMR imbalance ratio ρ_m", source="pmr"),
    F("pmr_pce", ("pmr/loss_pce/{m}",), "pmr/loss_pce/* — PMR prototypical cross-entropy", "log", source="pmr"),
    F("pmr_entropy", ("pmr/entropy/{m}",), "pmr/entropy/* — PMR prototype entropy", source="pmr"),
    F(
        "pmr_missing",
        ("pmr/proto_missing_classes",),
        "pmr/proto_missing_classes — classes without a prototype",
        source="pmr",
    ),
    F("mslr_lr", ("mslr/lr/{m}",), "mslr/lr/* — MSLR learning rate per modality", "log", source="mslr"),
    F("mla_loss", ("mla/loss/{m}",), "mla/loss/* — MLA unimodal pass loss", "log", source="mla"),
    F("mla_fusion", ("mla/fusion_weight/{m}",), "mla/fusion_weight/* — MLA test-time fusion weight", source="mla"),
    # -- the run's system metrics (cggm_core.system), sampled every system_every_s seconds: last on a
    #    run page, as other trackers keep their system section apart
    F(
        "system_gpu_memory",
        (
            "system/gpu{name}/memory_allocated_mib",
            "system/gpu{name}/memory_reserved_mib",
            "system/gpu{name}/memory_peak_mib",
        ),
        "system/gpu*/memory — GPU memory per device: allocated, reserved, peak (MiB)",
        source="system",
    ),
    F(
        "system_gpu_util",
        ("system/gpu{name}/utilization_pct",),
        "system/gpu*/utilization_pct — GPU utilisation per device (%, NVML)",
        source="system",
    ),
    F("system_rss", ("system/process/rss_mib",), "system/process — training process memory (MiB)", source="system"),
    F("amp_scale", ("amp/grad_scale",), "amp/grad_scale — fp16 gradient scale (halves on a skipped step)", "log"),
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
            unknown = set(re.findall(r"{(\w*)}", t)) - {"m", "metric", "eps", "name"}
            if unknown:
                raise RuntimeError(
                    f"key family {f.name}: template {t!r} uses {sorted(unknown)}; allowed m, metric, eps, name"
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
        eps_rx = "|".join(re.escape(n) for n in sorted(BATCH_METRICS, key=lambda n: (-len(n), n)))
        self._rules: list[tuple[re.Pattern[str], KeyFamily]] = []
        for f in families:
            for t in f.templates:
                rx = re.escape(t)
                rx = rx.replace(r"\{m\}", r"(?P<m>[^/]+)").replace(r"\{name\}", r"[^/]+")
                rx = rx.replace(r"\{metric\}", f"(?:{metric_rx})").replace(r"\{eps\}", f"(?:{eps_rx})")
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
        "batch_metrics": sorted(BATCH_METRICS),  # what {eps} stands for: ε of each task
    }


def family_of(key: str) -> KeyMatch | None:
    """The family of one key, with every task's metrics known."""
    return _DEFAULT.match(key)


_DEFAULT = KeyMatcher()
