"""Two epochs of every issue-12 baseline (uniform, gblending, pmr, mslr, mla) on every task:
synthetic classification and regression, synthetic_seq (both tasks, the transformer), and
synthetic_seg (segnet) — or the refusal where a method does not apply (pmr on regression)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from cggm_core import probe
from cggm_core.config import catalog, resolve
from cggm_core.settings import SettingError
from cggm_core.tracking import MemorySink
from cggm_core.trainer import Trainer

SEQ_MODEL = {"d_model": 8, "heads": 2, "enc_layers": 1, "fusion_layers": 1, "aux_layers": 1}
SEQ_DATA = {"train_size": 64, "val_size": 32, "test_size": 32, "lengths": "8,12", "widths": "3,5"}
SEG = {
    "seg_size": 16,
    "seg_depth": 4,
    "seg_train_volumes": 4,
    "seg_val_volumes": 2,
    "seg_test_volumes": 2,
    "segnet_width": 2,
    "segnet_dec_width": 4,
}
COMMON = {"epochs": 2, "log_every": 1, "probe_steps": 5}

# name → (job, modalities, the task's batch metric)
TASKS: dict[str, tuple[dict[str, Any], list[str], str]] = {
    "synthetic-cls": (
        {"dataset": "synthetic", "train_size": 96, "val_size": 32, "test_size": 32, "batch_size": 32},
        ["m0", "m1"],
        "acc",
    ),
    "synthetic-reg": (
        {
            "dataset": "synthetic",
            "task": "regression",
            "train_size": 96,
            "val_size": 32,
            "test_size": 32,
            "batch_size": 32,
        },
        ["m0", "m1"],
        "sign_acc",
    ),
    "seq-cls": ({"dataset": "synthetic_seq", "batch_size": 16, **SEQ_DATA, **SEQ_MODEL}, ["m0", "m1"], "acc"),
    "seq-reg": (
        {"dataset": "synthetic_seq", "task": "regression", "batch_size": 16, **SEQ_DATA, **SEQ_MODEL},
        ["m0", "m1"],
        "sign_acc",
    ),
    "seg": ({"dataset": "synthetic_seg", "batch_size": 8, **SEG}, ["flair", "t1ce", "t1", "t2"], "dice"),
}


def method_settings(method: str, modalities: list[str]) -> dict[str, Any]:
    if method == "gblending":
        return {"gblend_super_epoch": 1, "gblend_holdout": 0.25}  # an estimate at each of the two epochs
    if method == "mslr":
        return {"mslr_lr_scales": f"{modalities[-1]}=3"}
    return {}


CASES = [
    (method, task)
    for method in ("uniform", "gblending", "pmr", "mslr", "mla")
    for task in TASKS
    if not (method == "pmr" and task.endswith("reg"))
]


@pytest.mark.parametrize(("method", "task"), CASES, ids=[f"{m}-{t}" for m, t in CASES])
def test_two_epochs(method: str, task: str) -> None:
    job, modalities, metric = TASKS[task]
    sink = MemorySink()
    trainer = Trainer(
        resolve({**job, **COMMON, "method": method, **method_settings(method, modalities)}),
        device="cpu",
        sink=sink,
        progress=False,
    )
    trainer.setup()
    start = {m: [p.detach().clone() for p in trainer.model.encoder_params(m)] for m in modalities}
    summary = trainer.fit().summary
    steps = summary["steps"]
    assert summary["status"] == "finished" and summary["epochs_done"] == 2
    assert steps == 2 * math.ceil(len(trainer.train_split) / job["batch_size"])
    keys = {p.key for p in sink.points}
    for m in modalities:
        assert [s for s, _ in sink.series(f"coef/{m}")] == list(range(1, steps + 1))
        assert {f"acc/{m}", f"grad_norm/{m}", f"cos/{m}", f"val/{metric}/{m}"} <= keys
        assert all(math.isfinite(v) for _, v in sink.series(f"grad_norm/{m}"))
        end = trainer.model.encoder_params(m)
        assert any(not torch.equal(a, b) for a, b in zip(start[m], end, strict=True)), f"encoder {m} never moved"
    assert all(math.isfinite(v) for v in summary["test"].values())
    assert all(math.isfinite(v) for k, v in summary["final"].items() if k.startswith("val/"))
    prefix = {"uniform": "uniform/", "gblending": "gblend/", "pmr": "pmr/", "mslr": "mslr/", "mla": "mla/"}[method]
    assert any(k.startswith(prefix) for k in keys), f"no {prefix}* diagnostics"
    coef = {m: [v for _, v in sink.series(f"coef/{m}")] for m in modalities}
    if method in ("uniform", "mla"):
        assert all(set(c) == {1.0} for c in coef.values())
    if method == "mslr":
        assert set(coef[modalities[-1]]) == {3.0} and set(coef[modalities[0]]) == {1.0}
        lrs = sink.series(f"mslr/lr/{modalities[-1]}")
        assert [v for _, v in lrs] == pytest.approx([3e-3, 3e-3])  # the trainer's lr 1e-3 × 3, each epoch
    if method == "gblending":
        # Two estimates (epochs 1 and 2), each a set of weights over fused + every modality summing to 1.
        estimates = sink.series("gblend/weight/fused")
        assert [s for s, _ in estimates] == [0, steps // 2]
        for step, _ in estimates:
            at = {p.key: p.value for p in sink.points if p.step == step and p.key.startswith("gblend/weight/")}
            assert set(at) == {f"gblend/weight/{k}" for k in ["fused", *modalities]}
            assert sum(at.values()) == pytest.approx(1.0)
        last = {p.key: p.value for p in sink.points if p.step == steps // 2 and p.key.startswith("gblend/weight/")}
        for m in modalities:
            assert coef[m][-1] == pytest.approx(last[f"gblend/weight/{m}"])
        # The held-out part is out of the training split.
        assert len(trainer.train_split) + len(trainer.heldout_split or []) == trainer_train_size(job)
    if method == "pmr":
        alpha = 1.0
        assert all(set(c) <= {0.0, alpha} for c in coef.values())
    if method == "mla":
        # Validation and test use MLA's fused prediction (its `predict`), not the model's own fusion.
        method_obj, aux, data_task = trainer.stepper.method, trainer.stepper.aux, trainer.data.task
        assert method_obj is not None and aux is not None
        for split, key in (
            (trainer.val_split, summary["final"]["val/loss"]),
            (trainer.test_split, summary["test"]["test/loss"]),
        ):
            fused = probe.evaluate(trainer.model, aux, data_task, split, fuse=method_obj.predict)
            plain = probe.evaluate(trainer.model, aux, data_task, split)
            assert key == pytest.approx(fused["loss"]) and key != pytest.approx(plain["loss"])
        for step in range(1, steps + 1):
            w = [v for m in modalities for s, v in sink.series(f"mla/fusion_weight/{m}") if s == step]
            assert sum(w) == pytest.approx(1.0, abs=1e-5)


def trainer_train_size(job: dict[str, Any]) -> int:
    """The size of the dataset's training split before any held-out part."""
    t = Trainer(resolve({**job, **COMMON, "method": "joint"}), device="cpu", progress=False)
    t.setup()
    return len(t.train_split)


@pytest.mark.parametrize("task", ["synthetic-reg", "seq-reg"])
def test_pmr_refuses_regression_with_the_reason(task: str) -> None:
    job, _, _ = TASKS[task]
    with pytest.raises(SettingError, match=r"pmr.*serves classification, segmentation, not regression.*no classes"):
        resolve({**job, "method": "pmr"})


def test_catalog_lists_the_tasks_each_method_serves() -> None:
    methods = {m["name"]: m for m in catalog()["methods"]}
    assert {"uniform", "gblending", "pmr", "mslr", "mla"} <= set(methods)
    assert methods["pmr"]["tasks"] == ["classification", "segmentation"]
    assert methods["uniform"]["tasks"] is None and methods["cggm"]["tasks"] is None
