"""The probe: Shapley contributions, imbalance keys, linear probe, every key for every method."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cggm_core import probe
from cggm_core.data.base import Split
from cggm_core.models import AuxHeads, ConcatFusion, MultimodalNet
from cggm_core.tasks import classification


def test_shapley_of_an_additive_game_is_each_players_worth() -> None:
    worth = {"a": 0.1, "b": 0.25, "c": 0.4}
    values = probe.shapley_values(lambda s: sum(worth[p] for p in s), list(worth))
    assert values == pytest.approx(worth)


def test_shapley_of_a_game_with_interaction_splits_it_equally() -> None:
    # v({a,b}) = 1 only together: each gets 0.5; a dummy player c gets 0.
    def v(s: frozenset[str]) -> float:
        return 1.0 if {"a", "b"} <= s else 0.0

    assert probe.shapley_values(v, ["a", "b", "c"]) == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_contributions_on_a_model_whose_contributions_are_known() -> None:
    """The head reads only modality a: b contributes exactly 0, a contributes v(all) − v(none)."""
    head = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0, 0] = 1.0  # logit 0 = a's first feature; modality b's columns are ignored
        head.weight[1, 0] = -1.0
    net = MultimodalNet({"a": Identity(), "b": Identity()}, head, ConcatFusion(), feat_dims={"a": 2, "b": 2})
    aux = AuxHeads({"a": 2, "b": 2}, 4, 2)
    xa = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [2.0, 0.0], [-3.0, 0.0]])
    y = torch.tensor([0, 1, 0, 1])  # a alone is perfect
    xb = torch.randn(4, 2)
    split = Split({"a": xa, "b": xb}, y)
    task = classification(2)
    contrib = probe.contributions(net, aux, task, split, max_modalities=6)
    # Masked, logits are (0, 0) and argmax picks class 0: half the samples are right.
    assert contrib["b"] == pytest.approx(0.0)
    assert contrib["a"] == pytest.approx(1.0 - 0.5)
    assert probe.contributions(net, aux, task, split, max_modalities=1) == {}


def test_contributions_restricted_to_the_active_modalities() -> None:
    """A unimodal run's game: v(S) = fused accuracy with S ∩ active kept; the rest are null players."""
    head = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0, 0], head.weight[0, 2] = 1.0, 1.0  # logit 0 = a₀ + b₀, logit 1 = −(a₀ + b₀)
        head.weight[1, 0], head.weight[1, 2] = -1.0, -1.0
    net = MultimodalNet({"a": Identity(), "b": Identity()}, head, ConcatFusion(), feat_dims={"a": 2, "b": 2})
    aux = AuxHeads({"a": 2, "b": 2}, 4, 2)
    y = torch.tensor([0, 1, 0, 1])
    xa = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [2.0, 0.0], [-3.0, 0.0]])
    xb = torch.tensor([[0.0, 0.0], [0.0, 0.0], [-5.0, 0.0], [5.0, 0.0]])
    split = Split({"a": xa, "b": xb}, y)
    task = classification(2)
    # v(∅) = 0.5 (all logits 0, class 0 everywhere); v(a) = 1; v(b): a₀+b₀ = (0, 0, −5, 5) → 0.25;
    # v(ab): (1, −1, −3, 2) → predictions (0, 1, 1, 0) → 0.5.
    # Both active: φ_a = ½((1 − .5) + (.5 − .25)) = 0.375, φ_b = ½((.25 − .5) + (.5 − 1)) = −0.375.
    full = probe.contributions(net, aux, task, split, max_modalities=6)
    assert full == pytest.approx({"a": 0.375, "b": -0.375})
    # Only a active: b is always masked, so φ_b = 0 exactly and φ_a = v(a) − v(∅) = 0.5.
    assert probe.contributions(net, aux, task, split, max_modalities=6, active=["a"]) == {"a": 0.5, "b": 0.0}
    # The bound counts the active modalities (2^|active| evaluations).
    assert probe.contributions(net, aux, task, split, max_modalities=1, active=["a"]) == {"a": 0.5, "b": 0.0}


def test_imbalance_keys() -> None:
    out = probe.imbalance({"a": 0.9, "b": 0.4}, {"a": 2.0, "b": 0.5})
    assert out == pytest.approx({"imbalance/acc_gap": 0.5, "imbalance/grad_ratio": 4.0})
    assert math.isinf(probe.imbalance({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 0.0})["imbalance/grad_ratio"])


def test_linear_probe_separates_informative_from_useless_features() -> None:
    torch.manual_seed(0)
    n = 400
    y = torch.randint(0, 2, (n,))
    informative = torch.randn(n, 3) + 3.0 * y[:, None].float()
    noise = torch.randn(n, 3)
    net = MultimodalNet({"good": Identity(), "bad": Identity()}, nn.Linear(6, 2), feat_dims={"good": 3, "bad": 3})
    train = Split({"good": informative[:300], "bad": noise[:300]}, y[:300])
    test = Split({"good": informative[300:], "bad": noise[300:]}, y[300:])
    acc = probe.linear_probe(net, classification(2), train, test, steps=200)
    assert acc["good"] > 0.95
    assert acc["bad"] < 0.7


def shifted_probe_data() -> tuple[MultimodalNet, Split, Split, Split]:
    """1-d feature. Train: ±1 (+ noise) by class. Shifted: the same classes moved by +3.
    Dense: 1,001 points evenly across [−1, 1] labelled by sign, so every move of the probe's
    boundary changes how many of them it gets right."""
    torch.manual_seed(1)
    net = MultimodalNet({"a": Identity()}, nn.Linear(1, 2), feat_dims={"a": 1})

    def split(n: int, shift: float) -> Split:
        y = torch.arange(n) % 2
        x = (2.0 * y.float() - 1.0 + 0.2 * torch.randn(n) + shift).reshape(n, 1)
        return Split({"a": x}, y)

    x = torch.linspace(-1.0, 1.0, 1001).reshape(-1, 1)
    return net, split(200, 0.0), split(100, 3.0), Split({"a": x}, (x[:, 0] > 0).long())


# With 5 steps the probe is far from converged, so where its boundary lands depends on the
# standardisation itself, even on one affine map applied to both splits (which a converged
# linear probe would nearly undo).
@pytest.mark.parametrize("steps", [5, 200])
def test_linear_probe_standardises_with_the_training_statistics_only(steps: int) -> None:
    """Test features are standardised with the *train* split's mean and std (no leakage).

    Trained on ±1, the boundary sits near 0. Shifted by +3 the test classes sit at 2 and 4: all
    predicted class 1, accuracy exactly 0.5. Standardised with its own statistics the shifted
    split would look like the training one again and score ~1.0.
    """
    net, train, shifted, _ = shifted_probe_data()
    acc = probe.linear_probe(net, classification(2), train, shifted, steps=steps)
    assert acc["a"] == 0.5


@pytest.mark.parametrize("steps", [5, 200])
def test_linear_probe_scores_each_test_sample_independently_of_the_others(steps: int) -> None:
    """The probe learns from train only: a test split's count of right answers is the sum of
    its parts' counts. Any statistic of the test split in the standardisation (its own, or
    pooled with train's) moves the boundary between the three calls, and the dense part shows it."""
    net, train, shifted, dense = shifted_probe_data()
    both = Split({"a": torch.cat([shifted.xs["a"], dense.xs["a"]])}, torch.cat([shifted.y, dense.y]))
    task = classification(2)
    acc_shifted = probe.linear_probe(net, task, train, shifted, steps=steps)["a"]
    acc_dense = probe.linear_probe(net, task, train, dense, steps=steps)["a"]
    acc_both = probe.linear_probe(net, task, train, both, steps=steps)["a"]
    assert acc_shifted == 0.5 and 0.9 < acc_dense < 1.0  # the boundary is near 0, not exactly at it
    assert round(acc_both * 1101) == round(acc_shifted * 100) + round(acc_dense * 1001)
