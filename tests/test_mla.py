"""MLA: the projector update and the gradient projection by hand, the fusion weights against the
official formulas, the alternating passes against an independent replica of the official loop,
the test-time fusion in evaluation, and regression."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from cggm_core import probe
from cggm_core.config import resolve
from cggm_core.data.base import Split
from cggm_core.methods.mla import MLA, batch_entropy_weights, entropy_weights, owm_update, project_
from cggm_core.models import AuxHeads, ConcatFusion, MultimodalNet
from cggm_core.settings import SettingError
from cggm_core.step import Stepper
from cggm_core.tasks import classification, regression

NAMES = ["a", "v"]


def test_owm_update_by_hand() -> None:
    eye = torch.eye(2)
    # r = [1, 0], α = 0.1: k = [1, 0]ᵀ, r·k = 1: P = diag(1 − 1/1.1, 1) = diag(0.090909, 1), ‖P‖_F = 1.004124.
    p = owm_update(eye, torch.tensor([[1.0, 0.0]]), 0.1)
    assert_close(p, torch.tensor([[0.090535, 0.0], [0.0, 0.995893]]), atol=1e-5, rtol=0)
    # r = [1, 1]: k = [1, 1]ᵀ, r·k = 2: P = I − 11ᵀ/2.1 = [[.523810, −.476190], [−.476190, .523810]],
    # ‖P‖_F = √(2·.523810² + 2·.476190²) = 1.001133.
    p = owm_update(eye, torch.tensor([[1.0, 1.0]]), 0.1)
    assert_close(p, torch.tensor([[0.523217, -0.475650], [-0.475650, 0.523217]]), atol=1e-5, rtol=0)
    # The official formula as written: denominator α + k·r, the (2, 2) outer product [[1, 1], [1, 1]],
    # elementwise: P = I − 11ᵀ/1.1 = [[.090909, −.909091], [−.909091, .090909]], ‖P‖_F = 1.292061.
    p = owm_update(eye, torch.tensor([[1.0, 1.0]]), 0.1, official=True)
    assert_close(p, torch.tensor([[0.070360, -0.703598], [-0.703598, 0.070360]]), atol=1e-5, rtol=0)


def test_projection_of_linear_and_conv_weight_gradients() -> None:
    p = torch.tensor([[0.5, 0.1], [0.2, 0.3]])
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # (out 3, in 2)
    lin = g.clone()
    project_(lin, p)
    # ∇W Pᵀ: row [1, 2] → [1·.5 + 2·.1, 1·.2 + 2·.3] = [.7, .8]
    assert_close(lin, torch.tensor([[0.7, 0.8], [1.9, 1.8], [3.1, 2.8]]))
    conv = g.clone().reshape(3, 2, 1, 1)  # a 1×1 conv's weight: the input channels are projected
    project_(conv, p)
    assert_close(conv.reshape(3, 2), lin)


def test_fusion_weights_are_the_official_gating_of_entropies() -> None:
    z_a = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    z_v = torch.tensor([[10.0, 0.0], [0.0, 0.0]])
    w = entropy_weights([z_a, z_v])  # (M, B, 1)

    def entropy(z: list[float]) -> float:
        e = [math.exp(v) for v in z]
        p = [v / sum(e) for v in e]
        return -sum(q * math.log(q) for q in p)

    for i in range(2):
        e_a, e_v = entropy(z_a[i].tolist()), entropy(z_v[i].tolist())
        top = max(e_a, e_v)  # the official calculate_gating_weights
        g_a, g_v = math.exp(top - e_a), math.exp(top - e_v)
        assert float(w[0, i, 0]) == pytest.approx(g_a / (g_a + g_v), abs=1e-6)
        assert float(w[1, i, 0]) == pytest.approx(g_v / (g_a + g_v), abs=1e-6)
    # Sample 0: a is uniform (H = ln 2), v is sure (H ≈ 5e-4): v gets 2/3 of the weight.
    assert float(w[1, 0, 0]) == pytest.approx(0.666556, abs=1e-5)
    # The official batch-level version: softmax over the batch (dim 0), entropy summed over everything.
    wb = batch_entropy_weights([z_a, z_v]).reshape(-1)
    official = []
    for z in (z_a, z_v):
        prob = torch.softmax(z, dim=0)
        official.append(float(-(prob * prob.log()).sum()))
    top = max(official)
    gates = [math.exp(top - e) for e in official]
    assert wb.tolist() == pytest.approx([g / sum(gates) for g in gates], abs=1e-6)


def linear_head_net(seed: int = 0) -> tuple[MultimodalNet, AuxHeads]:
    """Encoders → concat → one Linear: with the other modality zero-masked, the official shared head."""
    torch.manual_seed(seed)
    encoders = {m: nn.Linear(3, 4) for m in NAMES}
    net = MultimodalNet(encoders, nn.Linear(8, 3), ConcatFusion(), feat_dims={m: 4 for m in NAMES})
    return net, AuxHeads({m: 4 for m in NAMES}, 8, 3)


def replica_step(
    net: MultimodalNet,
    opt: torch.optim.Optimizer,
    state: dict,
    xs: dict[str, torch.Tensor],
    y: torch.Tensor,
    project: bool,
) -> None:
    """The official MLA loop (main.py, gs_flag) written out independently: features once, then per
    modality: the shared head on it alone, backward, the head's projection, step, zero_grad."""
    feats = {m: net.encoders[m](xs[m]) for m in NAMES}
    head = net.head
    for m in NAMES:
        opt.zero_grad(set_to_none=True)
        inp = torch.cat([feats[k] if k == m else torch.zeros_like(feats[k]) for k in NAMES], dim=1)  # (B, 8)
        nn.functional.cross_entropy(head(inp), y).backward()
        if project:
            r = inp.detach().mean(dim=0, keepdim=True)  # (1, 8)
            if state["count"] != 0:
                k = state["P"] @ r.T
                state["P"] = state["P"] - (k @ k.T) / (0.1 + r @ k)  # α = 0.1: no epoch known
                state["P"] = state["P"] / torch.linalg.matrix_norm(state["P"])
                head.weight.grad = head.weight.grad @ state["P"].T
        state["count"] += 1
        opt.step()


@pytest.mark.parametrize("projection", ["owm", "off"])
def test_alternating_passes_match_a_replica_of_the_official_loop(projection: str) -> None:
    net, aux = linear_head_net()
    twin = copy.deepcopy(net)
    stepper = Stepper(
        net,
        classification(3),
        "mla",
        {"mla_fusion": "fixed", "mla_projection": projection},
        optimizer_name="sgd",
        lr=0.1,
        clip=0.0,
        aux=aux,
    )
    opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    state = {"P": torch.eye(8), "count": 0}
    torch.manual_seed(5)
    for _ in range(3):
        xs = {m: torch.randn(16, 3) for m in NAMES}
        y = torch.randint(0, 3, (16,))
        logged = stepper.step(xs, y)
        replica_step(twin, opt, state, xs, y, project=projection == "owm")
        assert logged["coef/a"] == logged["coef/v"] == 1.0
        assert logged["grad_norm/a"] > 0 and logged["grad_norm/v"] > 0  # each read in its own pass
        assert {"mla/loss/a", "mla/loss/v"} <= set(logged)
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)
    if projection == "owm":
        method = stepper.method
        assert isinstance(method, MLA) and method.updates == 6
        assert_close(method.projector, state["P"], rtol=1e-5, atol=1e-7)


def test_the_projection_changes_the_run() -> None:
    runs = []
    for projection in ("owm", "off"):
        net, aux = linear_head_net()
        stepper = Stepper(net, classification(3), "mla", {"mla_projection": projection}, aux=aux)
        torch.manual_seed(5)
        for _ in range(3):
            stepper.step({m: torch.randn(16, 3) for m in NAMES}, torch.randint(0, 3, (16,)))
        runs.append(net.head.weight.detach().clone())
    assert not torch.allclose(runs[0], runs[1])


def test_predict_fuses_the_unimodal_outputs_and_evaluation_uses_it() -> None:
    net, aux = linear_head_net(1)
    task = classification(3)
    xs = {m: torch.randn(10, 3) for m in NAMES}
    y = torch.randint(0, 3, (10,))
    feats = net.encode(xs)
    z = {m: net.fuse(feats, keep=[m]) for m in NAMES}
    fixed = MLA({"mla_fusion": "fixed", "mla_projection": "owm"}, net, aux, task)
    assert_close(fixed.predict(feats), 0.5 * z["a"] + 0.5 * z["v"])
    assert_close(fixed.predict(feats, keep=["v"]), z["v"])  # one modality: its own output
    assert_close(fixed.predict(feats, keep=[]), net.fuse(feats, keep=[]))
    dynamic = MLA({"mla_fusion": "dynamic", "mla_projection": "owm"}, net, aux, task)
    w = entropy_weights([z["a"], z["v"]])
    expected = w[0] * z["a"] + w[1] * z["v"]
    assert_close(dynamic.predict(feats), expected)
    split = Split(xs, y)
    scores = probe.evaluate(net, aux, task, split, fuse=dynamic.predict)
    assert scores["acc"] == pytest.approx(float((expected.argmax(1) == y).double().mean()))
    assert scores["loss"] == pytest.approx(float(task.loss(expected.detach(), y)), rel=1e-6)


def test_regression_fuses_with_equal_weights_and_refuses_entropy_fusion() -> None:
    torch.manual_seed(0)
    encoders = {m: nn.Linear(3, 4) for m in NAMES}
    net = MultimodalNet(encoders, nn.Linear(8, 1), ConcatFusion(), feat_dims={m: 4 for m in NAMES})
    aux = AuxHeads({m: 4 for m in NAMES}, 8, 1)
    method = MLA({"mla_fusion": "auto", "mla_projection": "owm"}, net, aux, regression())
    feats = net.encode({m: torch.randn(5, 3) for m in NAMES})
    assert method.fusion == "fixed"
    assert_close(method.predict(feats), 0.5 * net.fuse(feats, keep=["a"]) + 0.5 * net.fuse(feats, keep=["v"]))
    for fusion in ("dynamic", "dynamic_batch"):
        with pytest.raises(SettingError, match="regression has none; use fixed"):
            resolve({"dataset": "synthetic", "task": "regression", "method": "mla", "mla_fusion": fusion})
    resolve({"dataset": "synthetic", "task": "regression", "method": "mla"})  # auto is fine


def test_alpha_follows_the_batch_position_in_the_epoch() -> None:
    net, aux = linear_head_net()
    method = MLA({"mla_fusion": "fixed", "mla_projection": "owm"}, net, aux, classification(3))
    assert method.alpha() == pytest.approx(0.1)  # no epoch known: b/n = 0
    method.batches_per_epoch, method.batch_in_epoch = 4, 2
    assert method.alpha() == pytest.approx(0.1**1.5)  # 0.1^(1 + 2/4), the official lamda
