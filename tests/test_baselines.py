"""MMPareto against hand-computed values and in the Stepper; OGM-GE, AGM and MMPareto in the trainer (DESIGN §5).

OGM-GE and AGM against their official code: tests/test_ogm_ge.py, tests/test_agm.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from cggm_core.methods.base import StepState
from cggm_core.methods.mmpareto import pareto_combine
from cggm_core.models import AuxHeads, ConcatFusion, MLPEncoder, MultimodalNet, build_mlp_net
from cggm_core.step import Stepper
from cggm_core.tasks import Task, classification
from cggm_core.trainer import train

from .utils import random_batch

BASELINES = ["ogm_ge", "agm", "mmpareto"]


def linear_head_net(names: list[str], in_dim: int = 3, feat_dim: int = 4, classes: int = 3) -> MultimodalNet:
    """Encoders → concat → one nn.Linear: the case where OGM-GE's logits decompose exactly."""
    encoders = {m: MLPEncoder(in_dim, 8, feat_dim) for m in names}
    return MultimodalNet(encoders, nn.Linear(feat_dim * len(names), classes), ConcatFusion())


def make_state(
    net: MultimodalNet, aux: AuxHeads, task: Task, xs: dict[str, torch.Tensor], y: torch.Tensor
) -> StepState:
    feats = net.encode(xs)
    pred = net.fuse(feats)
    aux_logits = aux(feats)
    aux_losses = {m: task.loss(z, y) for m, z in aux_logits.items()}
    eps = {m: task.metric(z, y) for m, z in aux_logits.items()}
    return StepState(1, True, xs, y, feats, pred, task.loss(pred, y), aux_logits, aux_losses, eps)


def grad(p: torch.nn.Parameter) -> torch.Tensor:
    assert p.grad is not None
    return p.grad


# -- MMPareto --------------------------------------------------------------------------------------


def test_pareto_min_norm_weights_for_conflicting_gradients() -> None:
    g_mm, g_uni = torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 1.0])
    # cos = −0.5/√1.25 < 0. w_mm = ((g_uni − g_mm)·g_uni)/‖g_mm − g_uni‖² = (0.75 + 1)/(2.25 + 1) = 7/13.
    # d = 7/13·(1, 0) + 6/13·(−0.5, 1) = (4/13, 6/13); ‖d‖ = √52/13; ‖g_mm + g_uni‖ = ‖(0.5, 1)‖ = √1.25.
    final, w_mm, cos = pareto_combine(g_mm, g_uni, gamma=1.5)
    assert float(cos) == pytest.approx(-0.5 / math.sqrt(1.25))
    assert float(w_mm) == pytest.approx(7 / 13)
    expected = torch.tensor([4 / 13, 6 / 13]) / (math.sqrt(52) / 13) * math.sqrt(1.25) * 1.5
    assert_close(final, expected)
    # The min-norm direction is orthogonal to g_mm − g_uni, and its norm is γ·‖g_mm + g_uni‖.
    assert float(final @ (g_mm - g_uni)) == pytest.approx(0.0, abs=1e-6)
    assert float(final.norm()) == pytest.approx(1.5 * math.sqrt(1.25))


def test_pareto_equal_weights_without_conflict() -> None:
    g_mm, g_uni = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    final, w_mm, cos = pareto_combine(g_mm, g_uni, gamma=1.5)
    assert float(cos) > 0 and float(w_mm) == 0.5
    # d ∥ g_mm + g_uni, so the final gradient is γ·(g_mm + g_uni) = 1.5·(2, 1).
    assert_close(final, torch.tensor([3.0, 1.5]))


def test_pareto_zero_norms_are_guarded() -> None:
    # Opposite gradients of equal size: the min-norm point is 0; the result must be 0, not NaN.
    final, w_mm, _ = pareto_combine(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0]), gamma=1.5)
    assert float(w_mm) == 0.5 and torch.equal(final, torch.zeros(2))
    final, w_mm, cos = pareto_combine(torch.zeros(3), torch.tensor([0.0, 2.0, 0.0]), gamma=1.0)
    assert float(cos) == 0.0 and float(w_mm) == 0.5
    assert_close(final, torch.tensor([0.0, 2.0, 0.0]))


# -- in the Stepper --------------------------------------------------------------------------------


def run_stepper(
    method: str, names: list[str], settings: dict[str, object], steps: int = 4, linear_head: bool = False
) -> list[dict[str, float]]:
    torch.manual_seed(0)
    net = linear_head_net(names) if linear_head else build_mlp_net({m: 3 for m in names}, 8, 4, 6, 3)
    stepper = Stepper(net, classification(3), method=method, settings=settings, lr=1e-2, log_every=1)
    out = []
    for _ in range(steps):
        xs, y = random_batch(names, 32, 3)
        out.append(stepper.step(xs, y))
    return out


def check_keys(logs: list[dict[str, float]], names: list[str]) -> None:
    for values in logs:
        for m in names:
            for key in ("coef", "grad_norm", "grad_norm_mod", "cos", "acc"):
                assert math.isfinite(values[f"{key}/{m}"]), f"{key}/{m}"


@pytest.mark.parametrize("names", [["a", "v"], ["a", "v", "t"]])
def test_stepper_mmpareto_keeps_the_summed_magnitude(names: list[str]) -> None:
    gamma = 1.5
    logs = run_stepper("mmpareto", names, {"pareto_gamma": gamma}, steps=6)
    check_keys(logs, names)
    conflicts = 0
    for values in logs:
        for m in names:
            gn, un, cos = values[f"grad_norm/{m}"], values[f"pareto/grad_norm_uni/{m}"], values[f"pareto/cos/{m}"]
            assert un > 0  # the unimodal loss reaches the encoder (the aux head reads h_m with graph)
            dot = cos * gn * un
            # ‖final‖ = γ·‖g_mm + g_uni‖, from the norms and the cosine alone.
            assert values[f"grad_norm_mod/{m}"] == pytest.approx(gamma * math.sqrt(gn**2 + un**2 + 2 * dot), rel=1e-4)
            if cos >= 0:
                assert values[f"coef/{m}"] == 1.0
            else:  # 2·w_mm with w_mm = (‖g_uni‖² − g_mm·g_uni)/‖g_mm − g_uni‖²
                conflicts += 1
                w = (un**2 - dot) / (gn**2 + un**2 - 2 * dot)
                assert values[f"coef/{m}"] == pytest.approx(2 * min(max(w, 0.0), 1.0), rel=1e-4)
    assert conflicts > 0  # this seeded run exercises the min-norm branch, not only the equal weights


# -- in the trainer --------------------------------------------------------------------------------

TINY_JOB = {"dataset": "synthetic", "epochs": 1, "train_size": 256, "val_size": 64, "test_size": 64, "probe_steps": 20}


@pytest.mark.parametrize("method", BASELINES)
def test_one_epoch_of_training(method: str) -> None:
    result = train({**TINY_JOB, "method": method}, device="cpu")
    assert result.status == "finished"
    test_acc = result.summary["test"]["test/acc"]
    assert math.isfinite(test_acc) and 0.0 <= test_acc <= 1.0
    assert all(math.isfinite(result.summary["last_step"][f"coef/{m}"]) for m in ("m0", "m1"))


@pytest.mark.parametrize("method", BASELINES)
def test_one_epoch_of_regression(method: str) -> None:
    result = train({**TINY_JOB, "method": method, "task": "regression"}, device="cpu")
    assert result.status == "finished"
    assert math.isfinite(result.summary["test"]["test/sign_acc"])
    assert all(math.isfinite(result.summary["last_step"][f"coef/{m}"]) for m in ("m0", "m1"))
