"""MSLR: the per-encoder learning rates as optimizer groups, what they do to an Adam step (where a
gradient scale does nothing), the setting's validation, and resume."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from cggm_core.config import resolve
from cggm_core.methods.mslr import MSLR, parse_lr_scales
from cggm_core.settings import SettingError
from cggm_core.step import Stepper
from cggm_core.tasks import classification
from cggm_core.trainer import train

from .utils import random_batch, tiny_net

NAMES = ["a", "v"]


def test_parse_lr_scales() -> None:
    assert parse_lr_scales("") == {}
    assert parse_lr_scales(" a = 2 , v=0.5,") == {"a": 2.0, "v": 0.5}
    for bad in ("a", "a=", "a=x", "a=0", "a=-1", "=2", "a=inf"):
        with pytest.raises(SettingError, match="modality=multiplier"):
            parse_lr_scales(bad)
    with pytest.raises(SettingError, match="given twice"):
        parse_lr_scales("a=1,a=2")


def test_unknown_modality_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(SettingError, match=r"'audio' is not a modality of this dataset; allowed: m0, m1"):
        resolve({"dataset": "synthetic", "method": "mslr", "mslr_lr_scales": "audio=2"})
    job = resolve({"dataset": "synthetic", "method": "mslr", "mslr_lr_scales": "m1=2"})
    assert MSLR.scales(job.method_settings, ["m0", "m1"]) == {"m0": 1.0, "m1": 2.0}


def test_each_encoder_is_an_optimizer_group_at_lr_times_its_multiplier() -> None:
    torch.manual_seed(0)
    net, aux = tiny_net(NAMES)
    stepper = Stepper(net, classification(3), "mslr", {"mslr_lr_scales": "v=4"}, lr=1e-3, aux=aux)
    groups = stepper.optimizer.param_groups
    assert [(g["lr"], g["lr_scale"]) for g in groups] == [(1e-3, 1.0), (4e-3, 4.0)]
    ids = [[id(p) for p in g["params"]] for g in groups]
    assert ids[1] == [id(p) for p in net.encoder_params("v")]
    rest = {id(p) for p in (*net.encoders["a"].parameters(), *net.fusion.parameters(), *net.head.parameters())}
    assert set(ids[0]) == rest
    assert sorted(i for g in ids for i in g) == sorted(id(p) for p in net.parameters())  # each exactly once


def test_an_adam_step_moves_the_scaled_encoder_that_many_times_as_far() -> None:
    torch.manual_seed(0)
    net, aux = tiny_net(NAMES)
    net_j, aux_j = copy.deepcopy(net), copy.deepcopy(aux)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    xs, y = random_batch(NAMES, 16, 3)
    mslr = Stepper(net, classification(3), "mslr", {"mslr_lr_scales": "v=4"}, lr=1e-3, clip=0.0, aux=aux)
    joint = Stepper(net_j, classification(3), "joint", lr=1e-3, clip=0.0, aux=aux_j)
    logged = mslr.step(xs, y)
    joint.step(xs, y)
    assert logged["coef/a"] == 1.0 and logged["coef/v"] == 4.0
    for (name, p), (_, q) in zip(net.named_parameters(), net_j.named_parameters(), strict=True):
        scale = 4.0 if name.startswith("encoders.v.") else 1.0
        # Steps are ~1e-3: float32 differences of parameters carry ~1e-7 of rounding.
        assert_close(p.detach() - before[name], scale * (q.detach() - before[name]), rtol=1e-5, atol=2e-7)


def test_why_not_a_gradient_scale_adam_cancels_it() -> None:
    # The same gradient ×4 gives the same Adam step: a scale must go into the lr, not the gradient.
    p1, p2 = torch.nn.Parameter(torch.ones(5)), torch.nn.Parameter(torch.ones(5))
    g = torch.tensor([0.3, -0.1, 2.0, -4.0, 0.01])
    o1, o2 = torch.optim.Adam([p1], lr=1e-3), torch.optim.Adam([p2], lr=1e-3)
    for _ in range(3):
        p1.grad, p2.grad = g.clone(), 4 * g.clone()
        o1.step()
        o2.step()
    assert_close(p1.detach(), p2.detach(), rtol=0, atol=1e-7)


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    cfg = {
        "dataset": "synthetic",
        "method": "mslr",
        "mslr_lr_scales": "m1=5",
        "train_size": 96,
        "val_size": 32,
        "test_size": 32,
        "batch_size": 32,
        "linear_probe": False,
        "shapley": False,
    }
    straight = train({**cfg, "epochs": 2}, out_dir=tmp_path / "a", device="cpu")
    train({**cfg, "epochs": 1}, out_dir=tmp_path / "b", device="cpu")
    resumed = train({**cfg, "epochs": 2}, out_dir=tmp_path / "b", device="cpu", resume=tmp_path / "b" / "checkpoint.pt")
    assert resumed.summary["last_step"] == straight.summary["last_step"]


def test_a_users_own_optimizer_is_refused_rather_than_silently_ignoring_the_rates() -> None:
    net, aux = tiny_net(NAMES)
    own = torch.optim.Adam(net.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="let the Stepper build the optimizer"):
        Stepper(net, classification(3), "mslr", {"mslr_lr_scales": "v=4"}, optimizer=own, aux=aux)
    Stepper(net, classification(3), "mslr", {}, optimizer=own, aux=aux)  # no multiplier: nothing to lose
