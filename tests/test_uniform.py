"""`uniform`: its loss and gradients by hand, and the equivalence with MMPareto minus the Pareto step."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from cggm_core.methods import mmpareto
from cggm_core.methods.uniform import Uniform, unimodal_losses
from cggm_core.models import AuxHeads, MultimodalNet
from cggm_core.step import Stepper
from cggm_core.tasks import classification

from .test_baselines import make_state
from .utils import random_batch, tiny_net

NAMES = ["a", "v"]


def test_unimodal_loss_is_the_aux_heads_loss_and_trains_only_the_encoder() -> None:
    torch.manual_seed(0)
    net, aux = tiny_net(NAMES)
    task = classification(3)
    xs, y = random_batch(NAMES, 8, 3)
    state = make_state(net, aux, task, xs, y)
    method = Uniform({"uniform_weight": 0.5}, net, aux, task)
    extra = method.before_backward(state)
    assert extra is not None
    # Value: 0.5 · Σ_m CE(f_m(h_m), y), the probe's own aux losses.
    by_hand = 0.5 * sum(torch.nn.functional.cross_entropy(aux.heads[m](state.feats[m]), y) for m in NAMES)
    assert_close(extra, by_hand)
    # Gradient: into each encoder exactly ∂ℓ(f_m(h_m))/∂θ_m (MMPareto's g_uni), into no aux head.
    head_params = list(aux.parameters())
    enc = {m: net.encoder_params(m) for m in NAMES}
    grads = torch.autograd.grad(extra, [*head_params, *enc["a"], *enc["v"]], retain_graph=True, allow_unused=True)
    assert all(g is None for g in grads[: len(head_params)])
    for m, offset in (("a", len(head_params)), ("v", len(head_params) + len(enc["a"]))):
        loss_m = 0.5 * torch.nn.functional.cross_entropy(aux.head_forward(m, state.feats[m]), y)
        expected = torch.autograd.grad(loss_m, enc[m], retain_graph=True)
        for g, e in zip(grads[offset : offset + len(enc[m])], expected, strict=True):
            assert_close(g, e)


def test_unimodal_losses_pass_masks_to_the_heads() -> None:
    calls: list[object] = []

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out = torch.nn.Linear(2, 3)

        def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            calls.append(mask)
            return self.out(h.mean(dim=1))

    aux = AuxHeads.of({"s": Head()})
    feats = {"s": torch.randn(4, 5, 2)}
    mask = torch.ones(4, 5, dtype=torch.bool)
    unimodal_losses(aux, classification(3), feats, torch.tensor([0, 1, 2, 0]), {"s": mask}, ["s"])
    assert calls == [mask]


def flat(grads: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def paired(seed: int = 0) -> tuple[MultimodalNet, AuxHeads, MultimodalNet, AuxHeads]:
    torch.manual_seed(seed)
    net, aux = tiny_net(NAMES)
    return net, aux, copy.deepcopy(net), copy.deepcopy(aux)


def batches(n: int, seed: int = 1) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    torch.manual_seed(seed)
    return [random_batch(NAMES, 16, 3) for _ in range(n)]


def all_params(net: MultimodalNet, aux: AuxHeads) -> list[torch.Tensor]:
    return [p.detach() for p in (*net.parameters(), *aux.parameters())]


def test_uniform_gradient_is_g_mm_plus_mmparetos_g_uni() -> None:
    """uniform's encoder gradient is g_mm + g_uni, with g_uni as the real MMPareto computes it; and
    without a conflict MMPareto's combination with γ = 1 gives back exactly that sum."""
    torch.manual_seed(4)
    net, aux = tiny_net(NAMES)
    task = classification(3)
    xs, y = random_batch(NAMES, 16, 3)
    state = make_state(net, aux, task, xs, y)
    par = mmpareto.MMPareto({"pareto_gamma": 1.0}, net, aux, task)
    par.before_backward(state)  # fills par.uni_grads[m] = g_uni of encoder m, flattened
    extra = Uniform({"uniform_weight": 1.0}, net, aux, task).before_backward(state)
    assert extra is not None
    for m in NAMES:
        params = net.encoder_params(m)
        g_mm = flat(torch.autograd.grad(state.task_loss, params, retain_graph=True))
        g_total = flat(torch.autograd.grad(state.task_loss + extra, params, retain_graph=True))
        assert_close(g_total, g_mm + par.uni_grads[m], rtol=1e-5, atol=1e-7)
        aligned = g_mm.abs() * par.uni_grads[m].sign()  # a g_mm with cos(g_mm, g_uni) > 0
        final, w_mm, cos = mmpareto.pareto_combine(aligned, par.uni_grads[m], 1.0)
        assert float(cos) > 0 and float(w_mm) == 0.5
        assert_close(final, aligned + par.uni_grads[m], rtol=1e-5, atol=1e-7)


def test_uniform_is_mmpareto_without_the_pareto_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a run with conflicts: MMPareto with its combination replaced by the plain sum g_mm + g_uni
    (everything else of MMPareto as it is) trains exactly as uniform; the real MMPareto does not."""
    steps = batches(40)
    net_u, aux_u, net_p, aux_p = paired()
    net_r, aux_r = copy.deepcopy(net_u), copy.deepcopy(aux_u)
    uni = Stepper(net_u, classification(3), "uniform", aux=aux_u)
    real = Stepper(net_r, classification(3), "mmpareto", {"pareto_gamma": 1.0}, aux=aux_r)
    conflicts = 0
    for xs, y in steps:
        uni.step(xs, y)
        logged = real.step(xs, y)
        conflicts += sum(logged[f"pareto/cos/{m}"] < 0 for m in NAMES)

    def plain_sum(g_mm: torch.Tensor, g_uni: torch.Tensor, gamma: float) -> tuple[torch.Tensor, ...]:
        return g_mm + g_uni, torch.tensor(0.5), torch.nn.functional.cosine_similarity(g_mm, g_uni, dim=0)

    monkeypatch.setattr(mmpareto, "pareto_combine", plain_sum)
    no_pareto = Stepper(net_p, classification(3), "mmpareto", {"pareto_gamma": 1.0}, aux=aux_p)
    for xs, y in steps:
        no_pareto.step(xs, y)
    for a, b in zip(all_params(net_u, aux_u), all_params(net_p, aux_p), strict=True):
        assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert conflicts > 0
    differ = max(
        float((a - b).abs().max()) for a, b in zip(all_params(net_u, aux_u), all_params(net_r, aux_r), strict=True)
    )
    assert differ > 1e-4  # the Pareto step does change the run when gradients conflict


def test_uniform_weight_zero_is_joint() -> None:
    net_u, aux_u, net_j, aux_j = paired(3)
    uni = Stepper(net_u, classification(3), "uniform", {"uniform_weight": 0.0}, aux=aux_u)
    joint = Stepper(net_j, classification(3), "joint", aux=aux_j)
    for xs, y in batches(5):
        a = uni.step(xs, y)
        b = joint.step(xs, y)
        assert a["coef/a"] == b["coef/a"] == 1.0
    for a, b in zip(all_params(net_u, aux_u), all_params(net_j, aux_j), strict=True):
        assert torch.equal(a, b)
