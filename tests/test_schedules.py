"""LR schedules and the aux heads' optimizer as trainer settings (the official recipes, issue 11 §4).

Hand-computed values for the BraTS warm-up + cosine curve; the plateau rule recomputed from the
run's own validation losses; a resumed run continues the schedule exactly (the plateau's best loss
and bad-epoch count come from the checkpoint).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from cggm_core.config import resolve
from cggm_core.schedules import warmup_cosine_lr
from cggm_core.tracking import MemorySink, read_jsonl
from cggm_core.trainer import Trainer, train

TINY: dict[str, Any] = {
    "dataset": "synthetic",
    "method": "cggm",
    "variant": "paper",  # the noisy paper B: val/loss stalls within a few epochs, so the plateau rule acts
    "train_size": 128,  # batch 32: 4 steps an epoch
    "val_size": 32,
    "test_size": 32,
    "batch_size": 32,
    "linear_probe": False,
    "shapley": False,
    "seed": 3,
}


def test_warmup_cosine_by_hand() -> None:
    """base 1, final 0, start 0; 2 warm-up steps of 6: linspace(0, 1, 2) then 0.5·(1 + cos(π j / 4))."""
    got = [
        warmup_cosine_lr(i, base_lr=1.0, final_lr=0.0, start_lr=0.0, warmup_steps=2, total_steps=6) for i in range(6)
    ]
    c = math.cos
    expected = [0.0, 1.0, 1.0, 0.5 * (1 + c(math.pi / 4)), 0.5, 0.5 * (1 + c(3 * math.pi / 4))]
    assert got == pytest.approx(expected, abs=1e-12)
    assert expected[3] == pytest.approx(0.853553, abs=1e-6) and expected[5] == pytest.approx(0.146447, abs=1e-6)


def test_warmup_cosine_official_brats_ends() -> None:
    """The BraTS curve (4e-4 → 1e-2 over 10 epochs, cosine to 1e-3 over 65), 100 steps an epoch."""
    kw = {"base_lr": 1e-2, "final_lr": 1e-3, "start_lr": 4e-4, "warmup_steps": 1000, "total_steps": 7500}
    assert warmup_cosine_lr(0, **kw) == pytest.approx(4e-4)
    assert warmup_cosine_lr(1, **kw) == pytest.approx(4e-4 + (1e-2 - 4e-4) / 999)
    assert warmup_cosine_lr(999, **kw) == pytest.approx(1e-2)  # linspace's last point
    assert warmup_cosine_lr(1000, **kw) == pytest.approx(1e-2)  # the cosine starts at the base
    assert warmup_cosine_lr(1000 + 3250, **kw) == pytest.approx(5.5e-3)  # half-way: the mean
    assert 1e-3 < warmup_cosine_lr(7499, **kw) < 1e-3 + 1e-8  # approaches, never reaches, final
    # No warm-up; and a run shorter than its warm-up stays on the ramp.
    assert warmup_cosine_lr(0, **{**kw, "warmup_steps": 0}) == pytest.approx(1e-2)
    short = {**kw, "total_steps": 500}
    assert warmup_cosine_lr(499, **short) == pytest.approx(4e-4 + (1e-2 - 4e-4) * 499 / 999)


def test_warmup_cosine_sets_the_models_lr_every_step_and_leaves_the_aux_lr() -> None:
    sink = MemorySink()
    cfg = {**TINY, "epochs": 3, "optimizer": "sgd", "lr": 0.1, "aux_lr_ratio": 0.6, "scheduler": "warmup_cosine"}
    cfg |= {"warmup_epochs": 1, "warmup_start_lr": 0.01, "final_lr": 0.02}
    trainer = Trainer(resolve(cfg), sink=sink, device="cpu", progress=False)
    trainer.setup()
    trainer.fit()
    lrs = sink.series("lr")
    assert [s for s, _ in lrs] == list(range(1, 13))
    expected = [
        warmup_cosine_lr(i, base_lr=0.1, final_lr=0.02, start_lr=0.01, warmup_steps=4, total_steps=12)
        for i in range(12)
    ]
    assert [v for _, v in lrs] == pytest.approx(expected, rel=1e-12)
    assert lrs[0][1] == pytest.approx(0.01) and lrs[3][1] == pytest.approx(0.1)
    assert trainer.stepper.aux_optimizer is not None
    assert trainer.stepper.aux_optimizer.param_groups[0]["lr"] == pytest.approx(0.06)  # as the official: fixed


def _plateau_lrs(val_losses: list[float], lr: float, patience: int, factor: float) -> list[float]:
    """The lr of each epoch under ReduceLROnPlateau's rule (mode min, relative threshold 1e-4)."""
    best, bad, out = math.inf, 0, []
    for v in val_losses:
        out.append(lr)
        if v < best * (1 - 1e-4):
            best, bad = v, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = lr * factor, 0
    return out


PLATEAU = {**TINY, "lr": 0.01, "scheduler": "plateau", "plateau_patience": 1, "plateau_factor": 0.5}


def test_plateau_cuts_the_lr_after_patience_epochs_without_a_lower_val_loss() -> None:
    sink = MemorySink()
    train({**PLATEAU, "epochs": 8}, sink=sink, device="cpu")
    val = [v for _, v in sink.series("val/loss")]
    by_epoch = [v for s, v in sink.series("lr") if s % 4 == 1]  # the first step of each epoch
    assert by_epoch == pytest.approx(_plateau_lrs(val, 0.01, 1, 0.5), rel=1e-12)
    assert min(by_epoch) < 0.01  # the rule did cut here (the test means something)
    # Within an epoch the lr is constant: plateau steps once per epoch.
    assert {v for s, v in sink.series("lr") if 1 <= s <= 4} == {0.01}


@pytest.mark.parametrize(
    ("cfg", "epochs", "cut_at"),
    [
        # val/loss here: best after epoch 3, worse in 4 and 5, so the cut comes after epoch 5; the
        # checkpoint after epoch 4 holds one bad epoch already: without it the resumed run never cuts.
        (PLATEAU, 6, 4),
        ({**TINY, "scheduler": "warmup_cosine", "optimizer": "sgd", "lr": 0.05, "warmup_epochs": 2}, 4, 2),
    ],
    ids=["plateau", "warmup_cosine"],
)
def test_resume_continues_the_schedule(tmp_path: Path, cfg: dict[str, Any], epochs: int, cut_at: int) -> None:
    straight = train({**cfg, "epochs": epochs}, out_dir=tmp_path / "a", device="cpu")
    train({**cfg, "epochs": cut_at}, out_dir=tmp_path / "b", device="cpu")
    ckpt = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert ckpt["schedule"]["name"] == cfg["scheduler"]
    resumed = train(
        {**cfg, "epochs": epochs}, out_dir=tmp_path / "b", device="cpu", resume=tmp_path / "b" / "checkpoint.pt"
    )
    a, b = (
        [
            (p.key, p.step, p.value)
            for p in read_jsonl(tmp_path / d / "metrics.jsonl")
            if not p.key.startswith(("test", "system/"))
        ]
        for d in ("a", "b")
    )
    assert a == b
    assert resumed.summary["test"] == straight.summary["test"]
    lrs = [v for k, _, v in a if k == "lr"]
    assert len(set(lrs[cut_at * 4 :])) > 1  # the lr moves after the resume point: the test means something


@pytest.mark.parametrize(
    ("settings", "model", "aux"),
    [
        # (the aux heads' optimizer class, its lr, weight decay, momentum or None)
        ({}, (torch.optim.Adam, 1e-3, 0.0, None), (torch.optim.Adam, 5e-4, 0.0, None)),
        (
            {"optimizer": "sgd", "lr": 0.01, "weight_decay": 3e-4, "aux_weight_decay": 3e-4, "aux_lr_ratio": 0.6},
            (torch.optim.SGD, 0.01, 3e-4, 0.9),
            (torch.optim.SGD, 6e-3, 3e-4, 0.9),
        ),
        (
            {"optimizer": "adamw", "weight_decay": 6e-3, "aux_weight_decay": 3e-3},
            (torch.optim.AdamW, 1e-3, 6e-3, None),
            (torch.optim.AdamW, 5e-4, 3e-3, None),
        ),
        (
            {"optimizer": "sgd", "momentum": 0.5, "aux_optimizer": "adam"},
            (torch.optim.SGD, 1e-3, 0.0, 0.5),
            (torch.optim.Adam, 5e-4, 0.0, None),
        ),
    ],
    ids=["default", "sgd-like-brats", "adamw-like-food101", "aux-explicit"],
)
def test_the_aux_heads_optimizer_follows_the_models_kind(
    settings: dict[str, Any], model: tuple[Any, ...], aux: tuple[Any, ...]
) -> None:
    trainer = Trainer(resolve({**TINY, "epochs": 1, **settings}), device="cpu", progress=False)
    trainer.setup()
    for opt, (cls, lr, wd, momentum) in ((trainer.stepper.optimizer, model), (trainer.stepper.aux_optimizer, aux)):
        assert type(opt) is cls
        group = opt.param_groups[0]  # type: ignore[union-attr]
        assert (group["lr"], group["weight_decay"]) == (pytest.approx(lr), wd)
        assert group.get("momentum") == momentum
