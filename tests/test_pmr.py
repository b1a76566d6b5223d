"""PMR: prototype distances, scores, ratio and coefficients by hand; the prototypical CE of the weaker
modality and the entropy regulariser; prototypes per epoch with the official momentum schedule;
segmentation pixels; the refusal of regression."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from cggm_core.data.base import Split
from cggm_core.methods.base import EpochContext, StepState
from cggm_core.methods.pmr import PMR, pmr_coefficients, pmr_ratios, prototype_logits, prototype_score
from cggm_core.models import AuxHeads, ConcatFusion, MultimodalNet
from cggm_core.settings import SettingError
from cggm_core.step import Stepper
from cggm_core.tasks import classification, regression, segmentation

from .test_baselines import make_state
from .utils import random_batch, tiny_net

SETTINGS: dict[str, Any] = {
    "pmr_alpha": 2.0,
    "pmr_momentum": 0.25,
    "pmr_proto_fraction": 1.0,
    "pmr_starts": 0,
    "pmr_ends": 100,
    "pmr_mu": 0.0,
    "pmr_entropy_epochs": 10,
}


def test_distances_scores_ratio_and_coefficients_by_hand() -> None:
    feats = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    protos = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    logits = prototype_logits(feats, protos)
    assert_close(logits, torch.tensor([[0.0, -3.0], [-5.0, -4.0]]))  # −‖h − c‖
    # s = softmax([0, −3])[0] + softmax([−5, −4])[1] = 1/(1 + e⁻³) + 1/(1 + e⁻¹) = 0.952574 + 0.731059
    s_a = prototype_score(logits, torch.tensor([0, 1]))
    assert float(s_a) == pytest.approx(1 / (1 + math.exp(-3)) + 1 / (1 + math.exp(-1)), abs=1e-6)
    ratios = pmr_ratios({"a": s_a, "v": 1.2})
    assert float(ratios["a"]) == pytest.approx(1.683633 / 1.2, abs=1e-6)  # the official s_a / s_v
    assert float(ratios["v"]) == pytest.approx(1.2 / 1.683633, abs=1e-6)
    assert pmr_coefficients(ratios, 2.0) == {"a": 0.0, "v": 2.0}  # the weaker (v) gets α
    assert pmr_coefficients(pmr_ratios({"a": 1.0, "v": 1.0}), 2.0) == {"a": 0.0, "v": 0.0}  # equal: neither
    # Three modalities: ρ_m = s_m / mean of the others: a 1/1.5·…, b 4/1.5, c 2/2.5.
    r3 = pmr_ratios({"a": 1.0, "b": 4.0, "c": 2.0})
    assert [float(r3[m]) for m in "abc"] == pytest.approx([1 / 3, 4 / 1.5, 0.8])
    assert pmr_coefficients(r3, 1.0) == {"a": 1.0, "b": 0.0, "c": 1.0}


def identity_net() -> tuple[MultimodalNet, AuxHeads]:
    """h_m = x_m (2-d), so prototypes and features are what the test writes."""
    net = MultimodalNet(
        {"a": nn.Identity(), "v": nn.Identity()}, nn.Linear(4, 2), ConcatFusion(), feat_dims={"a": 2, "v": 2}
    )
    return net, AuxHeads({"a": 2, "v": 2}, 4, 2)


def linear_net() -> tuple[MultimodalNet, AuxHeads]:
    torch.manual_seed(0)
    net = MultimodalNet(
        {"a": nn.Linear(2, 2), "v": nn.Linear(2, 2)}, nn.Linear(4, 2), ConcatFusion(), feat_dims={"a": 2, "v": 2}
    )
    return net, AuxHeads({"a": 2, "v": 2}, 4, 2)


def state_for(net: MultimodalNet, aux: AuxHeads, xs: dict[str, torch.Tensor], y: torch.Tensor) -> StepState:
    return make_state(net, aux, classification(2), xs, y)


def test_the_weaker_modality_gets_alpha_times_its_prototypical_ce() -> None:
    net, aux = linear_net()
    method = PMR(SETTINGS, net, aux, classification(2))
    method.prototypes = {"a": torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), "v": torch.tensor([[0.0, 1.0], [0.0, -1.0]])}
    xs = {"a": torch.tensor([[1.0, 0.5], [-1.0, 0.2]]), "v": torch.tensor([[0.3, 0.1], [0.2, 0.4]])}
    y = torch.tensor([0, 1])
    state = state_for(net, aux, xs, y)
    extra = method.before_backward(state)
    assert extra is not None
    logits = {m: -torch.cdist(state.feats[m], method.prototypes[m]) for m in ("a", "v")}
    s = {m: logits[m].softmax(1)[torch.arange(2), y].sum() for m in ("a", "v")}
    weak = "a" if s["a"] < s["v"] else "v"
    coef = method.modulate(state)
    assert coef == {m: (2.0 if m == weak else 0.0) for m in ("a", "v")}
    assert_close(extra, 2.0 * torch.nn.functional.cross_entropy(logits[weak], y))
    # The prototypes are constants: the extra loss trains only the weaker modality's encoder.
    strong = "v" if weak == "a" else "a"
    grads = torch.autograd.grad(extra, [*net.encoder_params(weak), *net.encoder_params(strong)], allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:2])
    assert all(g is None for g in grads[2:])
    assert float(state.scalars[f"pmr/ratio/{weak}"]) < 1 < float(state.scalars[f"pmr/ratio/{strong}"])


def test_outside_the_window_nothing_is_added() -> None:
    net, aux = linear_net()
    method = PMR({**SETTINGS, "pmr_starts": 2, "pmr_ends": 3}, net, aux, classification(2))
    method.prototypes = {"a": torch.eye(2), "v": -torch.eye(2)}
    xs, y = random_batch(["a", "v"], 6, 2, in_dim=2)
    for epoch_index, inside in [(1, False), (2, True), (3, True), (4, False)]:
        method.epoch_index = epoch_index
        extra = method.before_backward(state_for(net, aux, xs, y))
        assert (extra is not None) == inside
        assert (max(method.modulate(state_for(net, aux, xs, y)).values()) == 2.0) == inside


def test_entropy_regulariser_on_the_dominant_modality() -> None:
    net, aux = linear_net()
    method = PMR({**SETTINGS, "pmr_mu": 0.5, "pmr_entropy_epochs": 1}, net, aux, classification(2))
    method.prototypes = {"a": torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), "v": torch.tensor([[0.0, 1.0], [0.0, -1.0]])}
    xs = {"a": torch.tensor([[1.0, 0.5], [-1.0, 0.2]]), "v": torch.tensor([[0.3, 0.1], [0.2, 0.4]])}
    y = torch.tensor([0, 1])
    state = state_for(net, aux, xs, y)
    extra = method.before_backward(state)
    logits = {m: -torch.cdist(state.feats[m], method.prototypes[m]) for m in ("a", "v")}
    weak = min(("a", "v"), key=lambda m: float(logits[m].detach().softmax(1)[torch.arange(2), y].sum()))
    strong = "v" if weak == "a" else "a"
    p = logits[strong].softmax(1)
    entropy = -(p * p.log()).sum(1).mean()
    assert_close(extra, 2.0 * torch.nn.functional.cross_entropy(logits[weak], y) - 0.5 * entropy)
    assert_close(state.slice_means[f"pmr/entropy/{strong}"], entropy.detach())
    method.epoch_index = 1  # E_r = 1: from the second epoch on, only the prototypical CE
    assert_close(
        method.before_backward(state_for(net, aux, xs, y)), 2.0 * torch.nn.functional.cross_entropy(logits[weak], y)
    )


def context(split: Split, epoch: int) -> EpochContext:
    return EpochContext(epoch, 10, split, None, 2, 0, 0.0, None, lambda params: None)  # type: ignore[arg-type]


def split_of(a: list[list[float]], v: list[list[float]], y: list[int]) -> Split:
    return Split({"a": torch.tensor(a), "v": torch.tensor(v)}, torch.tensor(y))


def test_prototypes_are_class_means_with_the_official_momentum_schedule() -> None:
    net, aux = identity_net()
    method = PMR(SETTINGS, net, aux, classification(2))  # momentum 0.25, every batch (fraction 1)
    first = split_of([[0, 0], [2, 0], [4, 4]], [[1, 1], [3, 3], [5, 5]], [0, 0, 1])
    method.on_epoch_start(context(first, 1))
    assert_close(method.prototypes["a"], torch.tensor([[1.0, 0.0], [4.0, 4.0]], dtype=torch.float64))
    assert_close(method.prototypes["v"], torch.tensor([[2.0, 2.0], [5.0, 5.0]], dtype=torch.float64))
    second = split_of([[8, 0], [0, 8]], [[0, 0], [0, 0]], [0, 1])
    method.on_epoch_start(context(second, 2))  # epoch 2: the official's first recomputation, no momentum
    assert_close(method.prototypes["a"], torch.tensor([[8.0, 0.0], [0.0, 8.0]], dtype=torch.float64))
    third = split_of([[0, 0], [4, 4]], [[0, 0], [0, 0]], [0, 1])
    method.on_epoch_start(context(third, 3))  # from epoch 3: 0.75·new + 0.25·old
    assert_close(method.prototypes["a"], torch.tensor([[2.0, 0.0], [3.0, 5.0]], dtype=torch.float64))
    # A class the sampled batches miss keeps its previous prototype.
    only_zero = split_of([[4, 0]], [[0, 0]], [0])
    logged = method.on_epoch_start(context(only_zero, 4))
    assert_close(method.prototypes["a"], torch.tensor([[0.75 * 4 + 0.25 * 2, 0.0], [3.0, 5.0]], dtype=torch.float64))
    assert logged == {"pmr/proto_missing_classes": 2.0}  # class 1, in both modalities
    assert method.epoch_index == 3


def test_prototypes_come_from_the_first_fraction_of_the_batches() -> None:
    net, aux = identity_net()
    method = PMR({**SETTINGS, "pmr_proto_fraction": 0.25}, net, aux, classification(2))
    n = 16  # 8 batches of 2: ⌊0.25·8⌋ = 2 batches, 4 samples
    split = Split({"a": torch.arange(2.0 * n).reshape(n, 2), "v": torch.zeros(n, 2)}, torch.arange(n) % 2)
    method.on_epoch_start(context(split, 1))
    gen = torch.Generator().manual_seed(0 * 1_000_003 + 1 + 500_000)
    used = [b for _, b in zip(range(2), split.batches(2, generator=gen), strict=False)]
    xs = torch.cat([b.xs["a"] for b in used]).double()
    ys = torch.cat([b.y for b in used])
    assert_close(method.prototypes["a"], torch.stack([xs[ys == k].mean(0) for k in (0, 1)]))


def test_segmentation_uses_every_feature_map_pixel_with_the_nearest_label() -> None:
    net, aux = linear_net()
    method = PMR(SETTINGS, net, aux, segmentation())
    feat = torch.arange(8.0).reshape(1, 2, 2, 2)  # (B, C, h, w)
    y = torch.tensor([[[3, 0, 1, 0], [0, 0, 0, 0], [2, 0, 3, 1], [0, 0, 1, 1]]])  # (B, H, W)
    f, labels = method.samples("a", feat, None, y)
    assert_close(f, torch.tensor([[0.0, 4.0], [1.0, 5.0], [2.0, 6.0], [3.0, 7.0]]))  # pixel rows (h, w order)
    assert labels.tolist() == [3, 1, 2, 3]  # y[0, 0, 0], y[0, 0, 2], y[0, 2, 0], y[0, 2, 2]: the nearest pixels


def test_pmr_refuses_regression_in_a_stepper() -> None:
    net, aux = tiny_net(["a", "v"], classes=1)
    with pytest.raises(SettingError, match="regression has no classes"):
        Stepper(net, regression(), "pmr", aux=aux)


def test_a_users_loop_without_epochs_takes_prototypes_from_the_first_batch() -> None:
    torch.manual_seed(0)
    net, aux = tiny_net(["a", "v"])
    stepper = Stepper(net, classification(3), "pmr", aux=aux)
    xs, y = random_batch(["a", "v"], 32, 3)
    logged = stepper.step(xs, y)
    method = stepper.method
    assert isinstance(method, PMR) and method.prototypes is not None
    assert {"pmr/score/a", "pmr/ratio/v", "pmr/loss_pce/a"} <= set(logged)
    assert sorted([logged["coef/a"], logged["coef/v"]]) == [0.0, 1.0]  # α = 1 (default) for the weaker


def test_window_settings_are_checked() -> None:
    with pytest.raises(SettingError, match="pmr_starts"):
        PMR.check({**SETTINGS, "pmr_starts": 5, "pmr_ends": 4})
