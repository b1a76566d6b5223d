"""OGM-GE, AGM and MMPareto against hand-computed values, in the Stepper, and in the trainer (DESIGN §5)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from cggm_core.methods import resolve_method_settings
from cggm_core.methods.agm import AGM, agm_coefficients, agm_dominance
from cggm_core.methods.base import StepState
from cggm_core.methods.mmpareto import pareto_combine
from cggm_core.methods.ogm_ge import OGMGE, ogm_coefficients, ogm_score, unimodal_outputs
from cggm_core.models import AuxHeads, ConcatFusion, MLPEncoder, MultimodalNet, build_mlp_net
from cggm_core.step import Stepper
from cggm_core.tasks import Task, classification, regression
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


# -- OGM-GE ------------------------------------------------------------------------------------------


def test_ogm_score_and_coefficient_by_hand() -> None:
    y = torch.tensor([0, 1])
    logits_a = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    logits_v = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    # s_a = softmax([2,0])[0] + softmax([0,0])[1] = e²/(e²+1) + 0.5 = 0.880797 + 0.5
    s_a = math.exp(2) / (math.exp(2) + 1) + 0.5
    # s_v = softmax([0,0])[0] + softmax([1,0])[1] = 0.5 + 1/(e+1) = 0.5 + 0.268941
    s_v = 0.5 + 1 / (math.e + 1)
    task = classification(2)
    assert float(ogm_score(logits_a, y, task)) == pytest.approx(1.380797, abs=1e-6)
    assert float(ogm_score(logits_v, y, task)) == pytest.approx(0.768941, abs=1e-6)
    # ratio = 1.380797 / 0.768941 = 1.795712; k_a = 1 − tanh(0.8·1.795712) = 1 − tanh(1.436569) = 0.106995.
    assert s_a / s_v == pytest.approx(1.795712, abs=1e-6)
    k = ogm_coefficients({"a": s_a, "v": s_v}, alpha=0.8)
    assert float(k["a"]) == pytest.approx(0.106995, abs=1e-6)
    assert float(k["v"]) == 1.0
    # The dominant modality is the one with the larger score, wherever it sits.
    k = ogm_coefficients({"a": s_v, "v": s_a}, alpha=0.8)
    assert float(k["a"]) == 1.0
    assert float(k["v"]) == pytest.approx(0.106995, abs=1e-6)


def test_ogm_coefficient_three_modalities_uses_mean_of_the_others() -> None:
    # dominant b: ratio = 4 / mean(1, 2) = 8/3; k_b = 1 − tanh(0.5·8/3) = 1 − tanh(1.333333) = 0.129938.
    k = ogm_coefficients({"a": 1.0, "b": 4.0, "c": 2.0}, alpha=0.5)
    assert [float(k[m]) for m in "abc"] == pytest.approx([1.0, 0.129938, 1.0], abs=1e-6)


def test_ogm_coefficient_no_modulation_without_dominance() -> None:
    # ratio = 1 (equal scores) and ratio = 0 (all scores 0): nobody is modulated.
    assert {m: float(v) for m, v in ogm_coefficients({"a": 2.0, "b": 2.0}, alpha=0.8).items()} == {"a": 1.0, "b": 1.0}
    assert {m: float(v) for m, v in ogm_coefficients({"a": 0.0, "b": 0.0}, alpha=0.8).items()} == {"a": 1.0, "b": 1.0}


def test_ogm_regression_score_and_coefficient() -> None:
    y = torch.tensor([1.0, -1.0])
    pred = torch.tensor([[1.5], [0.0]])
    # s = −(|1.5 − 1| + |0 − (−1)|) = −1.5
    assert float(ogm_score(pred, y, regression())) == pytest.approx(-1.5)
    # errors 1 (a) and 4 (b): a dominates with ratio 4/1 = 4; k_a = 1 − tanh(0.8·4) = 1 − tanh(3.2) = 0.003318.
    k = ogm_coefficients({"a": -1.0, "b": -4.0}, alpha=0.8)
    assert float(k["a"]) == pytest.approx(0.003318, abs=1e-6)
    assert float(k["b"]) == 1.0


def test_ogm_exact_decomposition_for_a_linear_head() -> None:
    torch.manual_seed(0)
    names = ["a", "b", "c"]
    net = linear_head_net(names, feat_dim=4)
    feats = {m: torch.randn(5, 4) for m in names}
    out = unimodal_outputs(net, feats)
    assert_close(sum(out.values()), net.fuse(feats).detach(), rtol=1e-5, atol=1e-6)
    head = net.head
    assert isinstance(head, nn.Linear)
    w, b = head.weight, head.bias
    # block of modality b is columns 4..8; its share of the bias is b/3.
    assert_close(out["b"], feats["b"] @ w[:, 4:8].T.detach() + b.detach() / 3)
    assert not out["a"].requires_grad


def test_ogm_zero_masking_for_a_nonlinear_head() -> None:
    torch.manual_seed(0)
    net = build_mlp_net({"a": 3, "b": 3}, 8, 4, 6, 3)
    feats = {m: torch.randn(5, 4) for m in ("a", "b")}
    out = unimodal_outputs(net, feats)
    assert_close(out["a"], net.fuse({"a": feats["a"], "b": torch.zeros(5, 4)}).detach())
    # A nonlinear head does not decompose: the masked responses do not sum to the fused logits.
    assert not torch.allclose(out["a"] + out["b"], net.fuse(feats))


def make_ogm(ge_noise: bool) -> tuple[OGMGE, StepState]:
    torch.manual_seed(1)
    names = ["a", "v"]
    net = linear_head_net(names)
    aux = AuxHeads({m: 4 for m in names}, 4 * 2, 3)
    task = classification(3)
    cfg = resolve_method_settings("ogm_ge", {"ge_noise": ge_noise}, names)
    method = OGMGE(cfg, net, aux, task)
    xs, y = random_batch(names, 16, 3)
    state = make_state(net, aux, task, xs, y)
    state.task_loss.backward(retain_graph=True)
    return method, state


def test_ogm_without_noise_scales_gradients_exactly_by_k() -> None:
    method, state = make_ogm(ge_noise=False)
    before = {m: [grad(p).clone() for p in method.model.encoder_params(m)] for m in method.modalities}
    coef = method.modulate(state)
    k = {m: float(c) for m, c in coef.items()}
    assert sorted(k.values())[0] < 1.0 and sorted(k.values())[1] == 1.0  # exactly one is slowed down
    for m in method.modalities:
        for g0, p in zip(before[m], method.model.encoder_params(m), strict=True):
            assert_close(p.grad, g0 * k[m])


def test_ogm_noise_is_added_and_resumes_deterministically() -> None:
    method, state = make_ogm(ge_noise=True)
    owned = [(m, p) for m in method.modalities for p in method.model.encoder_params(m)]
    original = [grad(p).clone() for _, p in owned]
    saved = method.state_dict()
    coef = method.modulate(state)
    noisy = [grad(p).clone() for _, p in owned]
    # Every tensor gets noise on top of k·grad, with the scale of the gradient's own std.
    for (m, _), g0, g in zip(owned, original, noisy, strict=True):
        residual = g - g0 * float(coef[m])
        assert not torch.allclose(residual, torch.zeros_like(residual))
        if g0.numel() >= 32:
            assert float(residual.std()) == pytest.approx(float(g0.std()), rel=0.35)
    # Restoring the state replays the same noise.
    for (_, p), g0 in zip(owned, original, strict=True):
        p.grad = g0.clone()
    method.load_state_dict(saved)
    method.modulate(state)
    for (_, p), g in zip(owned, noisy, strict=True):
        assert torch.equal(grad(p), g)


# -- AGM -------------------------------------------------------------------------------------------


def test_agm_dominance_three_modalities() -> None:
    # losses (1, 2, 3): mean of the others (2.5, 2, 1.5) − s = (1.5, 0, −1.5): the lowest loss dominates.
    assert agm_dominance(torch.tensor([1.0, 2.0, 3.0])).tolist() == pytest.approx([1.5, 0.0, -1.5])


def make_agm(momentum: float, alpha: float = 1.0) -> AGM:
    names = ["a", "v"]
    net = build_mlp_net({m: 3 for m in names}, 4, 4, 5, 3)
    aux = AuxHeads({m: 4 for m in names}, 5, 3)
    cfg = resolve_method_settings("agm", {"agm_momentum": momentum, "agm_alpha": alpha}, names)
    return AGM(cfg, net, aux, classification(3))


def test_agm_coefficients_over_steps_by_hand() -> None:
    agm = make_agm(momentum=0.5)
    # t=1: s=(0.5, 1.0) → r=(0.5, −0.5); r̄ starts at r → c=(1, 1); r̄=(0.5, −0.5).
    assert agm.update(torch.tensor([0.5, 1.0])).tolist() == pytest.approx([1.0, 1.0])
    # t=2: s=(0.2, 1.0) → r=(0.8, −0.8); c=exp(r̄ − r)=exp(−0.3, 0.3)=(0.740818, 1.349859); r̄=(0.65, −0.65).
    assert agm.update(torch.tensor([0.2, 1.0])).tolist() == pytest.approx([0.740818, 1.349859], abs=1e-6)
    assert agm.running is not None and agm.running.tolist() == pytest.approx([0.65, -0.65])
    # t=3: s=(1.0, 0.4) → r=(−0.6, 0.6); c=exp(1.25, −1.25)=(3.490343, 0.286505); r̄=(0.025, −0.025).
    assert agm.update(torch.tensor([1.0, 0.4])).tolist() == pytest.approx([3.490343, 0.286505], abs=1e-6)
    assert agm.running.tolist() == pytest.approx([0.025, -0.025])
    # t=4: s=(0, 30) → r=(30, −30); r̄ − r = (−29.975, 29.975) → the exponent is capped at 10.
    assert agm.update(torch.tensor([0.0, 30.0])).tolist() == pytest.approx(
        [math.exp(-29.975), math.exp(10.0)], rel=1e-4
    )


def test_agm_coefficient_formula_and_state_roundtrip() -> None:
    c = agm_coefficients(torch.tensor([0.2, -0.2]), torch.tensor([0.0, 0.0]), alpha=2.0)
    assert c.tolist() == pytest.approx([math.exp(0.4), math.exp(-0.4)], rel=1e-6)
    agm = make_agm(momentum=0.9)
    agm.update(torch.tensor([0.5, 1.0]))
    other = make_agm(momentum=0.9)
    other.load_state_dict(agm.state_dict())
    assert other.update(torch.tensor([0.3, 1.0])).tolist() == agm.update(torch.tensor([0.3, 1.0])).tolist()


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


@pytest.mark.parametrize("linear_head", [False, True])
@pytest.mark.parametrize("names", [["a", "v"], ["a", "v", "t"]])
def test_stepper_ogm_ge_without_noise_scales_norms_by_k(names: list[str], linear_head: bool) -> None:
    logs = run_stepper("ogm_ge", names, {"ge_noise": False}, linear_head=linear_head)
    check_keys(logs, names)
    for values in logs:
        coefs = sorted(values[f"coef/{m}"] for m in names)
        assert coefs[0] < 1.0 and coefs[1:] == [1.0] * (len(names) - 1)  # only the dominant one is slowed
        for m in names:
            assert values[f"grad_norm_mod/{m}"] == pytest.approx(
                values[f"coef/{m}"] * values[f"grad_norm/{m}"], rel=1e-5
            )


def test_stepper_ogm_ge_with_noise_changes_the_norm() -> None:
    names = ["a", "v"]
    logs = run_stepper("ogm_ge", names, {})
    check_keys(logs, names)
    diffs = [
        abs(v[f"grad_norm_mod/{m}"] - v[f"coef/{m}"] * v[f"grad_norm/{m}"]) / v[f"grad_norm/{m}"]
        for v in logs
        for m in names
    ]
    assert min(diffs) > 1e-3


@pytest.mark.parametrize("names", [["a", "v"], ["a", "v", "t"]])
def test_stepper_agm_scales_norms_by_c(names: list[str]) -> None:
    logs = run_stepper("agm", names, {"agm_alpha": 2.0})
    check_keys(logs, names)
    assert [logs[0][f"coef/{m}"] for m in names] == pytest.approx([1.0] * len(names))  # r̄ starts at r
    assert any(abs(v[f"coef/{m}"] - 1.0) > 1e-4 for v in logs[1:] for m in names)
    for values in logs:
        for m in names:
            assert values[f"grad_norm_mod/{m}"] == pytest.approx(
                values[f"coef/{m}"] * values[f"grad_norm/{m}"], rel=1e-5
            )


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


def test_ogm_ge_resume_reproduces_the_noise(tmp_path: Path) -> None:
    cfg = {**TINY_JOB, "method": "ogm_ge", "train_size": 128, "linear_probe": False, "shapley": False}
    straight = train({**cfg, "epochs": 2}, out_dir=tmp_path / "a", device="cpu")
    train(cfg, out_dir=tmp_path / "b", device="cpu")
    resumed = train({**cfg, "epochs": 2}, out_dir=tmp_path / "b", device="cpu", resume=tmp_path / "b" / "checkpoint.pt")
    assert resumed.summary["last_step"] == straight.summary["last_step"]
