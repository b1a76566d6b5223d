"""CGGM against hand-computed values (DESIGN §4)."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from cggm_core.methods import resolve_method_settings
from cggm_core.methods.base import StepState
from cggm_core.methods.cggm import CGGM, GUARD, flat_cos, gm_loss, raw_balance, stable_balance
from cggm_core.models import AuxHeads, MultimodalNet, build_mlp_net
from cggm_core.step import Stepper
from cggm_core.tasks import Task, classification

from .utils import random_batch, tiny_net


def make_cggm(variant: str, modalities: int = 2, **settings: object) -> CGGM:
    names = [f"m{i}" for i in range(modalities)]
    net = build_mlp_net({m: 3 for m in names}, 4, 4, 5, 3)
    aux = AuxHeads({m: 4 for m in names}, 5, 3)
    cfg = resolve_method_settings("cggm", {"variant": variant, **settings}, names)
    return CGGM(cfg, net, aux, classification(3))


def forward_state(net: MultimodalNet, aux: AuxHeads, task: Task) -> StepState:
    """The StepState of one forward pass on a random batch of 16, as the Stepper builds it."""
    xs, y = random_batch(list(net.modalities), 16, task.num_outputs)
    feats = net.encode(xs)
    pred = net.fuse(feats)
    z = aux(feats)
    aux_losses = {m: task.loss(z[m], y) for m in z}
    eps = {m: task.metric(z[m], y) for m in z}
    return StepState(1, True, xs, y, feats, pred, task.loss(pred, y), z, aux_losses, eps)


def feed(method: CGGM, eps: list[float]) -> list[float]:
    return method.update_balance(torch.tensor(eps)).tolist()


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_raw_balance_hand_sequence(variant: str) -> None:
    """B_m = (S + 1e-8 − Δ_m)/(S + 1e-8), the official code's form, step by step."""
    c = make_cggm(variant)
    # t=1: ε(0)=0, Δ=(0.5, 0.25), S=0.75 → B=(0.25/0.75, 0.5/0.75) (+1e-8 changes the 9th digit):
    # the faster modality gets less.
    assert feed(c, [0.5, 0.25]) == pytest.approx([1 / 3, 2 / 3], rel=1e-7)
    # t=2: Δ=(0.25, 0), S=0.25 → B=(1e-8/(0.25+1e-8), 1) = (4e-8, 1).
    assert feed(c, [0.75, 0.25]) == pytest.approx([4e-8, 1.0], rel=1e-7, abs=1e-15)
    # t=3: Δ=(-0.25, 0.25), S=0 exactly → B=((1e-8 + 0.25)/1e-8, (1e-8 − 0.25)/1e-8)
    # = (25_000_001, -24_999_999): the blow-up, with a negative B.
    b = feed(c, [0.5, 0.5])
    assert b == pytest.approx([25_000_001.0, -24_999_999.0], rel=1e-12)
    assert b[1] < 0
    # t=4: ε unchanged → Δ=(0, 0), S=0 → B=(1e-8/1e-8, 1e-8/1e-8) = (1, 1): every encoder
    # keeps its gradient (the unguarded numerator, (S − Δ)/(S + 1e-8), would give 0 and 0).
    assert feed(c, [0.5, 0.5]) == [1.0, 1.0]


def test_raw_balance_three_modalities_sums_to_m_minus_1() -> None:
    # S = 1.2: B = (1.2 − Δ_m)/1.2 to 1e-8 relative; Σ B = 3 − 1.2/1.2 = 2.
    b = raw_balance(torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64))
    assert b.tolist() == pytest.approx([1.0 / 1.2, 0.8 / 1.2, 0.6 / 1.2], rel=1e-7)
    assert float(b.sum()) == pytest.approx(2.0, rel=1e-7)


def test_raw_balance_all_zero_delta_gives_one_for_every_modality() -> None:
    # S = 0: B_m = (0 + 1e-8 − 0)/(0 + 1e-8) = 1 exactly, for M = 2, 3 and 5.
    for m in (2, 3, 5):
        assert raw_balance(torch.zeros(m, dtype=torch.float64)).tolist() == [1.0] * m
        assert raw_balance(torch.zeros(m)).tolist() == [1.0] * m  # float32 too


def test_raw_balance_three_modalities_with_a_zero_delta_and_s_zero() -> None:
    # Δ = (+1/64, −1/64, 0): S = 0, S + 1e-8 = 1e-8.
    #   B_1 = (1e-8 − 1/64)/1e-8 = 1 − 1_562_500 = −1_562_499
    #   B_2 = (1e-8 + 1/64)/1e-8 = 1 + 1_562_500 =  1_562_501
    #   B_3 = (1e-8 − 0)/1e-8    = 1                (0 with the unguarded numerator)
    # Σ B = M − S/(S + 1e-8) = 3.
    b = raw_balance(torch.tensor([1 / 64, -1 / 64, 0.0], dtype=torch.float64))
    assert b.tolist() == pytest.approx([-1_562_499.0, 1_562_501.0, 1.0], rel=1e-12)
    assert b[2].item() == 1.0
    assert float(b.sum()) == pytest.approx(3.0, abs=1e-6)


def test_cggm_feeds_the_same_sequence_through_update_balance_for_three_modalities() -> None:
    c = make_cggm("paper", modalities=3)
    # t=1: ε = (1/2, 1/4, 1/4), Δ = ε, S = 1 → B = (1/2, 3/4, 3/4).
    assert feed(c, [0.5, 0.25, 0.25]) == pytest.approx([0.5, 0.75, 0.75], rel=1e-7)
    # t=2: ε = (33/64, 15/64, 1/4): Δ = (+1/64, −1/64, 0), S = 0 → (−1_562_499, 1_562_501, 1).
    assert feed(c, [33 / 64, 15 / 64, 0.25]) == pytest.approx([-1_562_499.0, 1_562_501.0, 1.0], rel=1e-12)


def test_balance_uses_float64_eps_so_s_is_exactly_zero_for_any_batch_size() -> None:
    """Batch of 50: ε goes 25/50 → 26/50 and 25/50 → 24/50, so Δ = (+0.02, −0.02) and S = 0.

    In float64 (the official code's Python floats) S is exactly 0: B = (1 − 2e6, 1 + 2e6) =
    (−1_999_999, 2_000_001). A float32 ε makes S = −2.98e-8, larger than the guard, which turns
    the blow-up's sign around (B ≈ (+1.0e6, −1.0e6)).
    """
    task = classification(2)
    y = torch.zeros(50, dtype=torch.long)

    def logits_with(correct: int) -> torch.Tensor:
        z = torch.zeros(50, 2)
        z[correct:, 1] = 1.0  # the first `correct` rows predict class 0 (argmax of a tie is 0)
        return z

    eps = [float(task.metric(logits_with(k), y)) for k in (25, 26, 24)]
    assert eps == [25 / 50, 26 / 50, 24 / 50]  # exactly the float64 fractions
    c = make_cggm("paper")
    e1 = task.metric(logits_with(25), y)
    c.update_balance(torch.stack([e1, e1]))
    b = c.update_balance(torch.stack([task.metric(logits_with(26), y), task.metric(logits_with(24), y)]))
    assert b.tolist() == pytest.approx([-1_999_999.0, 2_000_001.0], rel=1e-9)


def test_stable_balance_hand_sequence() -> None:
    c = make_cggm("stable", eps_ema=0.5, s_min=0.01, b_max=2.0)
    # t=1: EMA starts at ε: (0.5, 0.25); Δ=(0.5,0.25) → (1/3, 2/3).
    assert feed(c, [0.5, 0.25]) == pytest.approx([1 / 3, 2 / 3], rel=1e-6)
    # t=2: EMA=(0.625, 0.25); Δ=(0.125, 0) → (0, 1).
    assert feed(c, [0.75, 0.25]) == pytest.approx([0.0, 1.0], abs=1e-6)
    # t=3: EMA=(0.5625, 0.375); Δ=(-0.0625, 0.125), S=0.0625 → raw (2, -1) → clamped (2, 0).
    assert feed(c, [0.5, 0.5]) == pytest.approx([2.0, 0.0], abs=1e-5)
    # t=4: ε equal to the EMA → Δ=0, S=0 → neutral (M-1)/M = 0.5 each, no blow-up.
    assert feed(c, [0.5625, 0.375]) == pytest.approx([0.5, 0.5], abs=1e-6)


def test_stable_balance_pure_function() -> None:
    assert stable_balance(torch.tensor([0.001, -0.001, 0.0]), 0.01, 2.0).tolist() == pytest.approx([2 / 3] * 3)
    assert stable_balance(torch.tensor([0.3, 0.1]), 0.01, 0.5).tolist() == pytest.approx([0.25, 0.5])


def test_gm_loss_and_gradient_by_hand() -> None:
    b = torch.tensor([0.5, -2.0])
    cos = torch.tensor([0.6, -0.5], requires_grad=True)
    loss = gm_loss(b, cos)
    # ((0.5 - 0.5*0.6) + (2 - (-2)(-0.5))) / 2 = (0.2 + 1.0) / 2
    assert float(loss.detach()) == pytest.approx(0.6)
    loss.backward()
    assert cos.grad is not None
    assert cos.grad.tolist() == pytest.approx([-0.25, 1.0])  # ∂/∂cos_m = -B_m / M


def test_paper_gm_term_matches_independent_computation() -> None:
    torch.manual_seed(0)
    net, aux = tiny_net(["a", "b"])
    task = classification(3)
    cfg = resolve_method_settings("cggm", {"variant": "paper", "lam": 0.3}, ["a", "b"])
    method = CGGM(cfg, net, aux, task)
    state = forward_state(net, aux, task)
    task_loss, aux_losses, eps = state.task_loss, state.aux_losses, state.eps
    extra = method.before_backward(state)
    assert extra is not None
    # Independent: B from ε(1) − 0 with the official guard; cosines of the last-layer gradients.
    e = torch.stack([eps["a"], eps["b"]]).float()
    b = (e.sum() + GUARD - e) / (e.sum() + GUARD)
    g_head = torch.autograd.grad(task_loss, net.head_last_layer().weight, retain_graph=True)[0]
    cos = []
    for m in ["a", "b"]:
        g = torch.autograd.grad(aux_losses[m], aux.last_layer(m).weight, retain_graph=True)[0]
        cos.append(torch.dot(g.flatten(), g_head.flatten()) / (g.norm() * g_head.norm()))
    expected = torch.mean(b.abs() - b * torch.stack(cos))
    assert_close(state.scalars["loss/gm"], expected.detach(), rtol=1e-5, atol=1e-6)
    assert_close(extra.detach(), 0.3 * expected.detach(), rtol=1e-5, atol=1e-6)
    assert_close(state.cos["a"], cos[0].detach(), rtol=1e-5, atol=1e-6)
    # L_gm trains the model: it has a gradient w.r.t. the task head's weights through g_Ω.
    (g_w,) = torch.autograd.grad(extra, net.head_last_layer().weight, retain_graph=True)
    assert float(g_w.abs().sum()) > 0


@pytest.mark.parametrize("variant", ["paper", "reference", "stable"])
def test_encoder_gradients_scaled_by_rho_times_b(variant: str) -> None:
    torch.manual_seed(1)
    net, aux = tiny_net(["a", "b"])
    task = classification(3)
    rho = 1.7
    cfg = resolve_method_settings("cggm", {"variant": variant, "rho": rho}, ["a", "b"])
    method = CGGM(cfg, net, aux, task)
    state = forward_state(net, aux, task)
    task_loss = state.task_loss
    extra = method.before_backward(state)
    loss = task_loss if extra is None else task_loss + extra
    loss.backward()
    before = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    coef = method.modulate(state)
    for i, m in enumerate(["a", "b"]):
        b = float(method.balance[i])
        assert float(coef[m]) == pytest.approx(b)
        scaled = {id(p) for p in (net.encoder_body_params(m) if variant == "reference" else net.encoder_params(m))}
        for n, p in net.encoders[m].named_parameters():
            full = f"encoders.{m}.{n}"
            factor = rho * b if id(p) in scaled else 1.0
            assert_close(p.grad, before[full] * factor, rtol=1e-6, atol=1e-7)
    # The head is never scaled.
    for n, p in net.head.named_parameters():
        assert_close(p.grad, before[f"head.{n}"])
    if variant == "reference":  # the projection layer stays unscaled there
        assert_close(net.encoders["a"].proj.weight.grad, before["encoders.a.proj.weight"])


def test_logged_grad_norm_mod_is_rho_abs_b_times_grad_norm() -> None:
    torch.manual_seed(2)
    net, _ = tiny_net(["a", "b"])
    stepper = Stepper(net, classification(3), "cggm", {"rho": 1.3}, clip=0.8, log_every=1)
    for _ in range(5):
        xs, y = random_batch(["a", "b"], 8, 3)
        v = stepper.step(xs, y)
        for m in ["a", "b"]:
            assert v[f"grad_norm_mod/{m}"] == pytest.approx(1.3 * abs(v[f"coef/{m}"]) * v[f"grad_norm/{m}"], rel=1e-4)


def test_logged_coefficients_recompute_from_consecutive_eps() -> None:
    """With log_every=1 the logged acc/<m> sequence reproduces every logged B (DESIGN §6)."""
    torch.manual_seed(3)
    net, _ = tiny_net(["a", "b"])
    stepper = Stepper(net, classification(3), "cggm", {}, log_every=1)
    prev = torch.zeros(2)
    for _ in range(12):
        xs, y = random_batch(["a", "b"], 8, 3)
        v = stepper.step(xs, y)
        eps = torch.tensor([v["acc/a"], v["acc/b"]])
        expected = raw_balance(eps - prev)
        prev = eps
        assert [v["coef/a"], v["coef/b"]] == pytest.approx(expected.tolist(), rel=1e-4, abs=1e-4)


def test_aux_heads_never_change_encoder_gradients() -> None:
    """Encoder grads of L_task + Σ L_aux equal those of L_task alone (heads read sg(h_m))."""
    torch.manual_seed(4)
    net, aux = tiny_net(["a", "b"])
    task = classification(3)
    xs, y = random_batch(["a", "b"], 16, 3)

    def encoder_grads(with_aux: bool) -> list[torch.Tensor]:
        net.zero_grad(set_to_none=True)
        aux.zero_grad(set_to_none=True)
        feats = net.encode(xs)
        loss = task.loss(net.fuse(feats), y)
        if with_aux:
            z = aux(feats)
            loss = loss + sum(task.loss(z[m], y) for m in z)
        loss.backward()
        return [p.grad.clone() for m in ["a", "b"] for p in net.encoder_params(m)]

    without = encoder_grads(False)
    with_heads = encoder_grads(True)
    for g0, g1 in zip(without, with_heads, strict=True):
        assert torch.equal(g0, g1)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in aux.parameters())


def test_joint_training_with_aux_heads_equals_training_without_them() -> None:
    """Whole steps: a joint Stepper (aux heads, probe) moves the model exactly as a plain loop."""
    names = ["a", "b"]
    torch.manual_seed(5)
    net_a, _ = tiny_net(names)
    torch.manual_seed(5)
    net_b, _ = tiny_net(names)
    task = classification(3)
    stepper = Stepper(net_a, task, "joint", {}, lr=1e-2, clip=0.8, log_every=1)
    opt = torch.optim.Adam(net_b.parameters(), lr=1e-2)
    torch.manual_seed(6)
    batches = [random_batch(names, 8, 3) for _ in range(6)]
    for xs, y in batches:
        stepper.step(xs, y)
        opt.zero_grad()
        task.loss(net_b(xs), y).backward()
        torch.nn.utils.clip_grad_norm_(net_b.parameters(), 0.8)
        opt.step()
    for pa, pb in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_reference_uses_gm_of_step_t_in_step_t_plus_1() -> None:
    torch.manual_seed(7)
    names = ["a", "b"]
    net, _ = tiny_net(names)
    stepper = Stepper(net, classification(3), "cggm", {"variant": "reference", "lam": 0.5}, log_every=1)
    xs, y = random_batch(names, 8, 3)
    v1 = stepper.step(xs, y)
    # Step 1 has no previous B: no direction term enters the loss.
    assert v1["loss/gm"] == 0.0
    assert v1["loss/total"] == pytest.approx(v1["train/loss"])
    method = stepper.method
    assert isinstance(method, CGGM)
    b1 = method.balance.clone()
    # The term that step 2 trains on: B(1) with the weights as they are when step 2 starts.
    aux = stepper.aux
    assert aux is not None
    head_w = net.head_last_layer().weight.detach()
    cos = torch.stack([flat_cos(aux.last_layer(m).weight.detach(), head_w) for m in names])
    expected = float(torch.mean(b1.abs() - b1 * cos))
    xs2, y2 = random_batch(names, 8, 3)
    v2 = stepper.step(xs2, y2)
    assert v2["loss/gm"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert v2["loss/total"] == pytest.approx(v2["train/loss"] + 0.5 * expected, rel=1e-5, abs=1e-6)
    # …and B(2) is what step 3 will use.
    assert method.pending_balance is not None
    assert torch.equal(method.pending_balance, method.balance)


def test_paper_includes_gm_in_the_same_step() -> None:
    torch.manual_seed(8)
    names = ["a", "b"]
    net, _ = tiny_net(names)
    stepper = Stepper(net, classification(3), "cggm", {"variant": "paper", "lam": 0.5}, log_every=1)
    xs, y = random_batch(names, 8, 3)
    v = stepper.step(xs, y)
    assert v["loss/gm"] != 0.0
    assert v["loss/total"] == pytest.approx(v["train/loss"] + 0.5 * v["loss/gm"], rel=1e-5)


def test_cggm_works_for_three_modalities_and_regression() -> None:
    from cggm_core.tasks import regression

    torch.manual_seed(9)
    names = ["a", "b", "c"]
    net = build_mlp_net({m: 3 for m in names}, 8, 4, 6, 1)
    stepper = Stepper(net, regression(1), "cggm", {}, log_every=1)
    for _ in range(4):
        xs = {m: torch.randn(16, 3) for m in names}
        y = torch.randn(16, 1)
        v = stepper.step(xs, y)
    assert {f"coef/{m}" for m in names} <= set(v)
    assert all(0.0 <= v[f"acc/{m}"] <= 1.0 for m in names)
    assert "train/sign_acc" in v


def test_negative_b_reverses_the_encoder_gradient() -> None:
    """A negative B (S≈0 hazard) is applied as is: gradient ascent on that encoder, not hidden."""
    torch.manual_seed(10)
    net, aux = tiny_net(["a", "b"])
    cfg = resolve_method_settings("cggm", {"rho": 1.0}, ["a", "b"])
    method = CGGM(cfg, net, aux, classification(3))
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    method.balance = torch.tensor([-0.7, 1.7])
    coef = method.modulate(None)  # type: ignore[arg-type]
    assert [float(coef["a"]), float(coef["b"])] == pytest.approx([-0.7, 1.7])
    assert all(torch.all(p.grad == -0.7) for p in net.encoder_params("a"))
    assert all(torch.all(p.grad == 1.7) for p in net.encoder_params("b"))
