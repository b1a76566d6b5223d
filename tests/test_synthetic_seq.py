"""synthetic_seq: shapes, masks, where the label lives, the DataLoader path, every method on it,
and the imbalance it exhibits."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from cggm_core.batch import pad_collate
from cggm_core.config import resolve
from cggm_core.data import DATASETS, MultimodalData
from cggm_core.data.base import LoaderSplit, Split
from cggm_core.data.synthetic_seq import SyntheticSeq
from cggm_core.settings import SettingError
from cggm_core.tracking import MemorySink
from cggm_core.trainer import train

NO_DROPOUT = {"attn_dropout": 0.0, "relu_dropout": 0.0, "embed_dropout": 0.0, "res_dropout": 0.0, "out_dropout": 0.0}
TINY_MODEL = {"d_model": 8, "heads": 2, "enc_layers": 1, "fusion_layers": 1, "aux_layers": 1}
ONE_EACH = {"strengths": "1", "lengths": "10", "widths": "4"}  # one value: the same for every modality
TINY_DATA = {"train_size": 64, "val_size": 32, "test_size": 32, "lengths": "8,12", "widths": "3,5"}


def load(**raw: Any) -> MultimodalData:
    job = resolve({"dataset": "synthetic_seq", "method": "joint", **raw})
    return DATASETS[job.dataset].load(job.data, job.trainer.data_seed)


def test_shapes_masks_and_seeding() -> None:
    d = load(data_seed=3, modalities=3, lengths="10,20,6", widths="4,7,2", strengths="1,2,3", classes=3)
    assert d.modalities == ["m0", "m1", "m2"] and d.task.name == "classification"
    assert (len(d.train), len(d.val), len(d.test)) == (2000, 500, 1000)
    assert isinstance(d.train, Split)
    assert {m: tuple(x.shape) for m, x in d.train.xs.items()} == {
        "m0": (2000, 10, 4),
        "m1": (2000, 20, 7),
        "m2": (2000, 6, 2),
    }
    assert {m: (s.kind, s.shape, s.variable_length) for m, s in d.inputs.items()} == {
        "m0": ("sequence", (10, 4), True),
        "m1": ("sequence", (20, 7), True),
        "m2": ("sequence", (6, 2), True),
    }
    for m, t in (("m0", 10), ("m1", 20), ("m2", 6)):
        mask = d.train.masks[m]
        lengths = mask.sum(1)
        assert int(lengths.min()) == math.ceil(0.5 * t) and int(lengths.max()) == t  # [⌈ratio·T⌉, T]
        assert torch.equal(mask, torch.arange(t)[None, :] < lengths[:, None])  # real steps first
        assert torch.all(d.train.xs[m][~mask] == 0)  # padded steps are zeros
    again = load(data_seed=3, modalities=3, lengths="10,20,6", widths="4,7,2", strengths="1,2,3", classes=3)
    other = load(data_seed=4, modalities=3, lengths="10,20,6", widths="4,7,2", strengths="1,2,3", classes=3)
    assert torch.equal(d.test.xs["m1"], again.test.xs["m1"])
    assert not torch.equal(d.test.xs["m1"], other.test.xs["m1"])
    fixed = load(variable_length=False)
    assert isinstance(fixed.train, Split) and fixed.train.masks == {}
    assert not fixed.inputs["m0"].variable_length


def test_regression_targets() -> None:
    d = load(task="regression", **TINY_DATA)
    assert d.task.name == "regression" and d.train.y.shape == (64, 1) and d.train.y.dtype == torch.float32


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_shortcut_says_what_and_the_weak_modality_says_only_when(task: str) -> None:
    """Noise-free: m0's time-average gives the label; m1's time-average is the same for every label,
    and its label is where its event block is."""
    d = load(task=task, noise=0.0, strengths="1,2", train_size=400, lengths="12,16")
    assert isinstance(d.train, Split)
    y = d.train.y if task == "classification" else d.train.y[:, 0]
    means = {m: (x.sum(1) / d.train.masks[m].sum(1, keepdim=True)) for m, x in d.train.xs.items()}  # (N, D)
    # m1: the block always has the same width, so the average over real steps is (width/L)·s·e.
    x1, mask1 = d.train.xs["m1"], d.train.masks["m1"]
    energy = x1.norm(dim=2)  # (N, T): 2 inside the block, 0 elsewhere
    inside = energy > 1.0
    widths = inside.sum(1)
    shortest = 8  # ⌈0.5·16⌉
    expected_width = shortest // 4  # 4 classes → 4 bins of the shortest length; regression: a quarter
    assert torch.all(widths == expected_width)
    assert_close(means["m1"] * mask1.sum(1, keepdim=True) / widths[:, None], x1[inside][:1].expand(len(y), -1))
    starts = inside.float().argmax(1)  # (N,)
    if task == "classification":
        assert torch.equal(starts, y * expected_width)  # the block is time bin y
        # m0: one prototype per class, the same at every real step.
        for c in range(4):
            rows = means["m0"][y == c]
            assert_close(rows, rows[:1].expand_as(rows))
        assert not torch.allclose(means["m0"][y == 0][0], means["m0"][y == 1][0])
    else:
        # The later the block, the larger z: starts never decrease along sorted z, and use the room.
        by_z = starts[y.argsort()]
        assert torch.all(by_z[1:] >= by_z[:-1]) and by_z[0] == 0 and by_z[-1] >= shortest - expected_width - 1
        middle = (shortest - expected_width) / 2
        assert torch.all(y[starts > middle] > 0) and torch.all(y[starts < middle] < 0)
        # m0: z · s · u at every step: the average is proportional to z.
        u = means["m0"][0] / y[0]
        assert_close(means["m0"], y[:, None] * u[None, :], rtol=1e-4, atol=1e-5)


def test_check_names_the_bad_setting() -> None:
    with pytest.raises(SettingError, match=r"lengths.*fewer than classes=4"):
        resolve({"dataset": "synthetic_seq", "method": "joint", "lengths": "12,6"})  # m1 can be 3 steps
    resolve({"dataset": "synthetic_seq", "method": "joint", "lengths": "12,6", "task": "regression"})
    with pytest.raises(SettingError, match="widths"):
        resolve({"dataset": "synthetic_seq", "method": "joint", "widths": "4,5,6"})
    with pytest.raises(SettingError, match=r"lengths.*not a comma-separated list of integers"):
        resolve({"dataset": "synthetic_seq", "method": "joint", "lengths": "12,a"})
    with pytest.raises(SettingError, match="strengths"):
        resolve({"dataset": "synthetic_seq", "method": "joint", "strengths": "1,2,3"})


def test_config_alone_tells_modalities_task_kinds_and_memory() -> None:
    job = resolve({"dataset": "synthetic_seq", "method": "unimodal", "modality": "m2", "modalities": 3, **ONE_EACH})
    assert SyntheticSeq.modality_names(job.data) == ["m0", "m1", "m2"]
    assert job.model == "transformer"  # the dataset's default model
    with pytest.raises(SettingError, match="allowed: m0, m1"):
        resolve({"dataset": "synthetic_seq", "method": "unimodal", "modality": "m2"})
    assert SyntheticSeq.task_name({**job.data, "task": "regression"}) == "regression"
    entry = SyntheticSeq.describe()
    assert entry["input_kinds"] == ["sequence"] and entry["default_model"] == "transformer"
    for extra in (
        {},
        {"task": "regression"},
        {"modalities": 3, "strengths": "1", "lengths": "50,10,30", "widths": "4,40,8"},
    ):
        cfg = resolve({"dataset": "synthetic_seq", "method": "joint", **extra}).data
        tracemalloc.start()
        try:
            SyntheticSeq.load(cfg, 0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert 0.6 < peak / SyntheticSeq.estimate_bytes(cfg) <= 1.0, (extra, peak, SyntheticSeq.estimate_bytes(cfg))


# -- the DataLoader path -------------------------------------------------------------------------


def test_pad_collate_keeps_class_ids_one_dimensional() -> None:
    """A class id per sample stacks to (B,), not (B, 1) (cross-entropy refuses the latter)."""
    batch = pad_collate([({"a": np.zeros((2, 3), np.float32)}, 1), ({"a": np.ones((1, 3), np.float32)}, 4)])
    assert batch.y.shape == (2,) and batch.y.dtype == torch.int64 and batch.y.tolist() == [1, 4]
    assert batch.masks["a"].tolist() == [[True, True], [True, False]]


def test_loader_batches_hold_the_in_memory_samples() -> None:
    mem, streamed = load(**TINY_DATA), load(**TINY_DATA, dataloader=True)
    assert isinstance(streamed.train, LoaderSplit) and streamed.inputs == mem.inputs
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for a, b in zip(mem.train.batches(16, gen_a), streamed.train.batches(16, gen_b), strict=True):
        assert torch.equal(a.y, b.y)
        for m in mem.modalities:
            t = b.xs[m].shape[1]  # the loader pads to the batch's longest, memory to the split's
            mask_b = b.masks.get(m, torch.ones(b.xs[m].shape[:2], dtype=torch.bool))
            assert torch.equal(a.masks[m][:, :t], mask_b) and not a.masks[m][:, t:].any()
            assert torch.equal(a.xs[m][:, :t], b.xs[m])


@pytest.mark.parametrize(("method", "workers"), [("cggm", 0), ("ogm_ge", 1)])
def test_the_dataloader_path_gives_the_same_run(method: str, workers: int) -> None:
    """Every logged point of the in-memory run equals the DataLoader run's, dropouts on: both
    paths pad a batch to its own longest sequence, so every dropout mask has the same shape."""
    cfg = {
        "dataset": "synthetic_seq",
        "method": method,
        "epochs": 2,
        "batch_size": 16,
        "probe_steps": 20,
        "num_workers": workers,
        **TINY_DATA,
        **TINY_MODEL,
    }
    runs = []
    for streamed in (False, True):
        sink = MemorySink()
        train({**cfg, "dataloader": streamed}, sink=sink, device="cpu")
        runs.append([p for p in sink.points if not p.key.startswith("system/")])  # wall-clock sampled
    mem, loader = runs
    assert [(p.key, p.step) for p in mem] == [(p.key, p.step) for p in loader]
    assert len({p.step for p in mem if p.key == "train/loss"}) == 2 * 4
    assert_close(
        torch.tensor([p.value for p in loader], dtype=torch.float64),
        torch.tensor([p.value for p in mem], dtype=torch.float64),
        rtol=1e-4,
        atol=1e-5,
        equal_nan=True,
    )


# -- every method, both tasks --------------------------------------------------------------------

METHODS = [
    ("joint", {}),
    ("unimodal", {"modality": "m1"}),
    ("cggm", {"variant": "paper"}),
    ("cggm", {"variant": "reference"}),
    ("cggm", {"variant": "stable"}),
    ("ogm_ge", {}),
    ("agm", {}),
    ("mmpareto", {}),
]


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize(("method", "settings"), METHODS, ids=[m + str(s.get("variant", "")) for m, s in METHODS])
def test_two_epochs_of_every_method(task: str, method: str, settings: dict[str, Any]) -> None:
    cfg = {
        "dataset": "synthetic_seq",
        "method": method,
        "task": task,
        "epochs": 2,
        "batch_size": 16,
        "probe_steps": 20,
        **settings,
        **TINY_DATA,
        **TINY_MODEL,
    }
    sink = MemorySink()
    result = train(cfg, sink=sink, device="cpu")
    s = result.summary
    metric, primary = ("acc", "acc") if task == "classification" else ("sign_acc", "mae")
    assert s["status"] == "finished" and s["model"] == "transformer" and s["task"] == task
    assert s["steps"] == 8 and s["epochs_done"] == 2
    keys = {p.key for p in sink.points}
    for m in ("m0", "m1"):
        assert {f"coef/{m}", f"cos/{m}", f"acc/{m}", f"val/{metric}/{m}", f"val/contrib/{m}"} <= keys
        assert 0.0 <= s["probe"][f"probe/{metric}/{m}"] <= 1.0
        assert [p.step for p in sink.points if p.key == f"grad_norm/{m}"] == list(range(1, 9))
    assert math.isfinite(s["test"][f"test/{primary}"])
    assert all(math.isfinite(v) for k, v in s["final"].items() if k.startswith("val/"))
    if task == "regression":
        assert {"val/mae", "val/corr", "val/acc7"} <= keys
    coef = {m: [p.value for p in sink.points if p.key == f"coef/{m}"] for m in ("m0", "m1")}
    if method == "unimodal":
        assert set(coef["m0"]) == {0.0} and set(coef["m1"]) == {1.0}
        assert all(p.value == 0.0 for p in sink.points if p.key == "grad_norm/m0")  # m0 gets no gradient
    if method == "cggm":
        assert "loss/gm" in keys
    if method == "joint":
        assert set(coef["m0"]) == set(coef["m1"]) == {1.0}


def test_resume_reproduces_the_uninterrupted_transformer_run(tmp_path: Any) -> None:
    """Dropouts on: the checkpoint carries the RNG state, so the resumed epoch draws the same masks."""
    cfg = {"dataset": "synthetic_seq", "method": "cggm", "batch_size": 16, "probe_steps": 20, **TINY_DATA, **TINY_MODEL}
    straight, a = MemorySink(), tmp_path / "a"
    train({**cfg, "epochs": 2}, out_dir=a, sink=straight, device="cpu")
    b = tmp_path / "b"
    first, second = MemorySink(), MemorySink()
    train({**cfg, "epochs": 1}, out_dir=b, sink=first, device="cpu")
    train({**cfg, "epochs": 2}, out_dir=b, sink=second, device="cpu", resume=b / "checkpoint.pt")

    def trained(points: list[Any]) -> list[tuple[str, int, float]]:
        return [(p.key, p.step, p.value) for p in points if not p.key.startswith(("probe", "test", "system/"))]

    assert trained(first.points) + trained(second.points) == trained(straight.points)


# -- the imbalance it exhibits -------------------------------------------------------------------

# Measured on this machine, seeds 0-4 (classification) and 0-2 (regression), the probe of m1:
#   classification  joint 0.270 0.240 0.256 0.290 0.286   alone 0.480 0.700 0.492 0.470 0.386
#   regression      joint 0.556 0.544 0.518               alone 0.916 0.708 0.666
# Smallest gap 0.10 (classification, seed 4); the test asks for 0.05 on seeds 0 and 1.
# The control, the shortcut switched off (strengths "0,3"), classification seeds 0, 1:
#   joint 0.456 0.834   alone 0.480 0.700: the gap is gone, jointly trained m1 probes 0.19-0.59 higher.
IMBALANCE = {
    "dataset": "synthetic_seq",
    "strengths": "1,3",  # the default
    "epochs": 12,
    "lr": 0.003,
    "log_every": 50,
    "shapley": False,
    "train_size": 1000,
    "val_size": 100,
    "test_size": 500,
    "probe_steps": 200,
    "d_model": 16,
    "heads": 2,
    "enc_layers": 2,
    "fusion_layers": 1,
    "aux_layers": 1,
    **NO_DROPOUT,
}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_weak_encoder_trained_jointly_probes_worse_than_trained_alone(task: str) -> None:
    metric = "acc" if task == "classification" else "sign_acc"
    gaps = []
    for seed in (0, 1):
        common = {**IMBALANCE, "task": task, "seed": seed, "data_seed": seed}
        joint = train({**common, "method": "joint"}, device="cpu").summary["probe"]
        alone = train({**common, "method": "unimodal", "modality": "m1"}, device="cpu").summary["probe"]
        gaps.append(alone[f"probe/{metric}/m1"] - joint[f"probe/{metric}/m1"])
        # m0 is the shortcut: its encoder, even untrained, is read far better than m1's joint one.
        assert joint[f"probe/{metric}/m0"] > joint[f"probe/{metric}/m1"] + 0.2, joint
        if task == "classification":  # the imbalance is the shortcut's doing: without it m1 learns jointly
            control = train({**common, "method": "joint", "strengths": "0,3"}, device="cpu").summary["probe"]
            assert control[f"probe/{metric}/m1"] > joint[f"probe/{metric}/m1"] + 0.1, (control, joint)
    assert min(gaps) > 0.05, gaps


# -- setting names: datasets may share one (a job has one dataset) --------------------------------


def test_datasets_share_setting_names_of_one_type_but_nothing_else_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from cggm_core import config
    from cggm_core.data.base import Dataset
    from cggm_core.models.registry import ModelSpec
    from cggm_core.settings import Setting

    shared = {s.name for s in SyntheticSeq.settings} & {s.name for s in DATASETS["synthetic"].settings}
    assert {"task", "train_size", "strengths", "modalities"} <= shared  # shared today, accepted at import

    def dataset(name: str, setting: Setting) -> type[Dataset]:
        return type(name, (Dataset,), {"name": name, "help": "", "settings": [setting]})

    int_task = dataset("other", Setting("task", "int", 1, "a task of another type"))
    monkeypatch.setattr(config, "DATASETS", {**DATASETS, "other": int_task})
    with pytest.raises(RuntimeError, match="'task' is declared by dataset synthetic and by dataset other"):
        config._check_unique()
    same_type = dataset("other", Setting("task", "str", "regression", "the same name and type"))
    monkeypatch.setattr(config, "DATASETS", {**DATASETS, "other": same_type})
    config._check_unique()
    # A model may not reuse a dataset's name: both are in every job.
    model = type("M", (ModelSpec,), {"name": "m", "help": "", "settings": [Setting("task", "str", "", "")]})
    monkeypatch.setattr(config, "MODELS", {"m": model})
    with pytest.raises(RuntimeError, match="'task' is declared by dataset synthetic and by model m"):
        config._check_unique()
