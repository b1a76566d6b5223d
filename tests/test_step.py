"""The training step's order and optimizers (DESIGN §4 step 6): scale by ρ·B, then clip, then step."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from cggm_core.config import resolve
from cggm_core.models import AuxHeads, MultimodalNet
from cggm_core.step import Stepper
from cggm_core.tasks import classification
from cggm_core.trainer import Trainer

from .utils import random_batch, tiny_net

NAMES = ["a", "b"]
RHO = 3.0
CLIP = 0.8


def cggm_setup() -> tuple[MultimodalNet, AuxHeads, dict[str, torch.Tensor], torch.Tensor]:
    torch.manual_seed(12)
    net, aux = tiny_net(NAMES)
    with torch.no_grad():  # larger weights: a gradient norm well above the clip (3.25 here)
        for p in net.parameters():
            p.mul_(2.0)
    xs, y = random_batch(NAMES, 32, 3)
    return net, aux, xs, y


def reference_update(
    net: MultimodalNet, aux: AuxHeads, xs: dict[str, torch.Tensor], y: torch.Tensor, order: str
) -> tuple[dict[str, torch.Tensor], float]:
    """One SGD(lr=1) step of CGGM (λ = 0) by hand; returns the new parameters and the norm of
    the gradient the clip sees (for `order="scale_then_clip"`)."""
    task = classification(3)
    feats = net.encode(xs)
    z = aux(feats)
    eps = torch.stack([task.metric(z[m], y) for m in NAMES])  # ε(1); ε(0) = 0, so Δ = ε
    s = eps.sum() + 1e-8
    balance = ((s - eps) / s).float()  # the official B
    net.zero_grad(set_to_none=True)
    task.loss(net.fuse(feats), y).backward()
    params = list(net.parameters())

    def scale() -> None:
        for i, m in enumerate(NAMES):
            for p in net.encoder_params(m):
                assert p.grad is not None
                p.grad.mul_(RHO * balance[i])

    def total_norm() -> float:
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))

    norm = float("nan")
    if order == "scale_then_clip":
        scale()
        norm = total_norm()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
    elif order == "clip_then_scale":
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        scale()
    else:  # "no_clip"
        scale()
    with torch.no_grad():
        return {n: p - p.grad for n, p in net.named_parameters() if p.grad is not None}, norm


def test_cggm_step_clips_after_scaling_by_rho_b() -> None:
    """The official order: grad(φ_m) ← ρ·B_m·grad(φ_m), then clip the whole model's norm at 0.8."""
    net, aux, xs, y = cggm_setup()
    expected, norm = reference_update(copy.deepcopy(net), copy.deepcopy(aux), xs, y, "scale_then_clip")
    assert norm > 2 * CLIP  # the clip is active on this batch
    # The other orders land elsewhere, so the comparison below tells them apart.
    for other in ("clip_then_scale", "no_clip"):
        alt, _ = reference_update(copy.deepcopy(net), copy.deepcopy(aux), xs, y, other)
        assert max(float((alt[n] - expected[n]).abs().max()) for n in expected) > 1e-2, other

    stepper = Stepper(
        net,
        classification(3),
        "cggm",
        {"variant": "paper", "rho": RHO, "lam": 0.0},
        optimizer=torch.optim.SGD(net.parameters(), lr=1.0),
        clip=CLIP,
        aux=aux,
    )
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    stepper.step(xs, y)
    after = dict(net.named_parameters())
    for n, p in expected.items():
        assert_close(after[n].detach(), p, rtol=1e-5, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")
    # SGD(lr=1) moved the model by exactly the clipped gradient: a step of norm 0.8.
    moved = torch.linalg.vector_norm(torch.stack([(after[n].detach() - before[n]).norm() for n in before]))
    assert float(moved) == pytest.approx(CLIP, rel=1e-5)


def test_clip_zero_means_no_clip() -> None:
    net, aux, xs, y = cggm_setup()
    expected, _ = reference_update(copy.deepcopy(net), copy.deepcopy(aux), xs, y, "no_clip")
    stepper = Stepper(
        net,
        classification(3),
        "cggm",
        {"variant": "paper", "rho": RHO, "lam": 0.0},
        optimizer=torch.optim.SGD(net.parameters(), lr=1.0),
        clip=0.0,
        aux=aux,
    )
    stepper.step(xs, y)
    for n, p in net.named_parameters():
        if n in expected:
            assert_close(p.detach(), expected[n], rtol=1e-5, atol=1e-6)


def test_aux_heads_train_at_aux_lr_ratio_times_lr() -> None:
    """Adam's first step moves every coordinate by lr·g/(|g| + 1e-8), i.e. by lr wherever |g| ≫ 1e-8:
    the aux heads by 0.25 × 1e-2 = 2.5e-3, the model by 1e-2."""
    torch.manual_seed(13)
    net, aux = tiny_net(NAMES)
    lr, ratio = 1e-2, 0.25
    stepper = Stepper(net, classification(3), "joint", {}, lr=lr, aux_lr_ratio=ratio, aux=aux)
    aux_before = [p.detach().clone() for p in aux.parameters()]
    net_before = [p.detach().clone() for p in net.parameters()]
    xs, y = random_batch(NAMES, 32, 3)
    stepper.step(xs, y)

    def moves(params: list[torch.nn.Parameter], before: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for p, b in zip(params, before, strict=True):
            assert p.grad is not None
            big = p.grad.abs() > 1e-4  # where g/(|g| + 1e-8) = 1 to within 1e-4
            out.append((p.detach() - b)[big].abs())
        return torch.cat(out)

    aux_moves = moves(list(aux.parameters()), aux_before)
    net_moves = moves(list(net.parameters()), net_before)
    assert aux_moves.numel() > 50 and net_moves.numel() > 50
    assert_close(aux_moves, torch.full_like(aux_moves, lr * ratio), rtol=2e-4, atol=0.0)
    assert_close(net_moves, torch.full_like(net_moves, lr), rtol=2e-4, atol=0.0)


def test_trainer_passes_aux_lr_ratio_to_the_step() -> None:
    job = resolve({"dataset": "synthetic", "method": "cggm", "train_size": 64, "lr": 4e-3, "aux_lr_ratio": 0.3})
    trainer = Trainer(job, device="cpu", progress=False)
    trainer.setup()
    assert trainer.stepper.aux_optimizer is not None
    assert [g["lr"] for g in trainer.stepper.aux_optimizer.param_groups] == [pytest.approx(1.2e-3)]
    assert [g["lr"] for g in trainer.stepper.optimizer.param_groups] == [pytest.approx(4e-3)]
