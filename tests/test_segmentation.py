"""The segmentation task against hand-computed values (the official conventions, tasks/segmentation.py).

Regions: ET = class 3, TC = 1 ∪ 3, WT = every class but 0. Dice of a region on one slice:
(2·|A∩B| + 2e) / (|A| + |B| + 2e), e = 1e-3, so a slice where both are empty scores 1. Soft Dice of
the loss: 2·Σ p·t / (Σ p + Σ t + 0.01) over the batch and classes 1–3.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cggm_core.tasks import segmentation
from cggm_core.tasks.segmentation import slice_dice, soft_dice

E = 1e-3

# Slice 0: truth and prediction (label maps 2 × 3).
TRUTH_0 = [[0, 1, 2], [3, 3, 0]]
PRED_0 = [[0, 3, 2], [3, 0, 2]]
# truth: ET {(1,0),(1,1)} = 2 px, TC {(0,1),(1,0),(1,1)} = 3, WT {(0,1),(0,2),(1,0),(1,1)} = 4
# pred:  ET {(0,1),(1,0)} = 2,     TC the same 2 (no class 1), WT {(0,1),(0,2),(1,0),(1,2)} = 4
# ∩:     ET {(1,0)} = 1,           TC {(0,1),(1,0)} = 2,       WT {(0,1),(0,2),(1,0)} = 3
DICE_0 = {
    "et": (2 * 1 + 2 * E) / (2 + 2 + 2 * E),
    "tc": (2 * 2 + 2 * E) / (2 + 3 + 2 * E),
    "wt": (2 * 3 + 2 * E) / (4 + 4 + 2 * E),
}
# Slice 1: one enhancing pixel, predicted as two; ET = TC = WT: ∩ 1, |A| 2, |B| 1.
TRUTH_1 = [[3, 0, 0], [0, 0, 0]]
PRED_1 = [[3, 3, 0], [0, 0, 0]]
DICE_1 = dict.fromkeys(("et", "tc", "wt"), (2 * 1 + 2 * E) / (2 + 1 + 2 * E))
# Slice 2: no tumour, none predicted: 2e / 2e = 1 for every region.
TRUTH_2 = [[0, 0, 0], [0, 0, 0]]
PRED_2 = [[0, 0, 0], [0, 0, 0]]
DICE_2 = dict.fromkeys(("et", "tc", "wt"), 1.0)
# Slice 3: an enhancing pixel missed: ET = TC = WT = 2e / (1 + 2e) ≈ 0.002.
TRUTH_3 = [[0, 0, 0], [0, 3, 0]]
PRED_3 = [[0, 0, 0], [0, 0, 0]]
DICE_3 = dict.fromkeys(("et", "tc", "wt"), (2 * E) / (1 + 2 * E))


def logits_of(labels: list[list[list[int]]]) -> torch.Tensor:
    """Logits (B, 4, H, W) whose argmax is `labels`."""
    return F.one_hot(torch.tensor(labels), 4).permute(0, 3, 1, 2).double() * 5.0


def test_slice_dice_of_each_region_by_hand() -> None:
    pred = torch.tensor([PRED_0, PRED_1, PRED_2, PRED_3])
    truth = torch.tensor([TRUTH_0, TRUTH_1, TRUTH_2, TRUTH_3])
    got = slice_dice(pred, truth)
    for r in ("et", "tc", "wt"):
        expected = [DICE_0[r], DICE_1[r], DICE_2[r], DICE_3[r]]
        assert got[r].tolist() == pytest.approx(expected, abs=1e-12), r


def test_batch_metric_is_the_mean_of_et_tc_wt_slice_means() -> None:
    task = segmentation()
    logits = logits_of([PRED_0, PRED_2, PRED_3])
    truth = torch.tensor([TRUTH_0, TRUTH_2, TRUTH_3])
    per_region = [(DICE_0[r] + DICE_2[r] + DICE_3[r]) / 3 for r in ("et", "tc", "wt")]
    got = task.metric(logits, truth)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(sum(per_region) / 3, abs=1e-12)


def test_evaluator_averages_slices_without_groups() -> None:
    ev = segmentation().evaluator()
    ev.update(logits_of([PRED_0, PRED_1]), torch.tensor([TRUTH_0, TRUTH_1]))
    ev.update(logits_of([PRED_2]), torch.tensor([TRUTH_2]))
    out = ev.compute()
    for r in ("et", "tc", "wt"):
        assert out[f"dice/{r}"] == pytest.approx((DICE_0[r] + DICE_1[r] + DICE_2[r]) / 3, abs=1e-12)
    assert out["dice/avg"] == pytest.approx(sum(out[f"dice/{r}"] for r in ("et", "tc", "wt")) / 3, abs=1e-12)
    assert out["dice"] == pytest.approx(out["dice/avg"], abs=1e-12)


def test_evaluator_scores_whole_volumes_with_groups() -> None:
    """Slices 0 and 1 are volume 7, slice 2 is volume 9; volume 7 spans two `update` calls."""
    ev = segmentation().evaluator()
    ev.update(logits_of([PRED_0]), torch.tensor([TRUTH_0]), torch.tensor([7]))
    ev.update(logits_of([PRED_1, PRED_2]), torch.tensor([TRUTH_1, TRUTH_2]), torch.tensor([7, 9]))
    out = ev.compute()
    # Volume 7: intersections and sizes summed over its slices, then one Dice.
    #   ET: ∩ 1 + 1, |A| 2 + 2, |B| 2 + 1;  TC: ∩ 2 + 1, |A| 2 + 2, |B| 3 + 1;  WT: ∩ 3 + 1, |A| 4 + 2, |B| 4 + 1
    vol7 = {
        "et": (2 * 2 + 2 * E) / (4 + 3 + 2 * E),
        "tc": (2 * 3 + 2 * E) / (4 + 4 + 2 * E),
        "wt": (2 * 4 + 2 * E) / (6 + 5 + 2 * E),
    }
    # Volume 9: empty and predicted empty: 1.
    for r in ("et", "tc", "wt"):
        assert out[f"dice/{r}"] == pytest.approx((vol7[r] + 1.0) / 2, abs=1e-12), r
        # …which is not the slice average (the per-volume keys really are per volume).
        assert out[f"dice/{r}"] != pytest.approx((DICE_0[r] + DICE_1[r] + DICE_2[r]) / 3, abs=1e-6)
    assert out["dice/avg"] == pytest.approx(sum((vol7[r] + 1.0) / 2 for r in ("et", "tc", "wt")) / 3, abs=1e-12)
    # `dice` (ε over the split) stays the slice average.
    slice_mean = sum((DICE_0[r] + DICE_1[r] + DICE_2[r]) / 3 for r in ("et", "tc", "wt")) / 3
    assert out["dice"] == pytest.approx(slice_mean, abs=1e-12)


# Two pixels (B=1, H=1, W=2) with chosen softmax probabilities over classes 0..3.
P_A = (0.1, 0.2, 0.3, 0.4)  # truth 3
P_B = (0.7, 0.1, 0.1, 0.1)  # truth 0
TRUTH_AB = torch.tensor([[[3, 0]]])


def logits_ab() -> torch.Tensor:
    p = torch.tensor([P_A, P_B], dtype=torch.float64).T.reshape(1, 4, 1, 2)  # (B, C, H, W)
    return p.log().requires_grad_(True)


def test_soft_dice_and_loss_by_hand() -> None:
    z = logits_ab()
    # Classes 1–3 only: Σp = (0.2 + 0.3 + 0.4) + (0.1 + 0.1 + 0.1) = 1.2; Σt = 1 (pixel a is class 3);
    # Σ p·t = p_a[3] = 0.4. Soft Dice = 2·0.4 / (1.2 + 1 + 0.01).
    dice = 0.8 / 2.21
    assert float(soft_dice(z, TRUTH_AB, 4).detach()) == pytest.approx(dice, abs=1e-12)
    # CE with class weights (.2, .3, .25, .25), weighted mean: (w_3·(−ln 0.4) + w_0·(−ln 0.7)) / (w_3 + w_0).
    ce = (0.25 * -math.log(0.4) + 0.2 * -math.log(0.7)) / (0.25 + 0.2)
    assert float(segmentation().loss(z.detach().float(), TRUTH_AB)) == pytest.approx(
        0.5 * ce + 0.5 * (1 - dice), rel=1e-6
    )


def test_soft_dice_gradient_by_hand() -> None:
    """∂D/∂p_c = 2·t_c/U − 2I/U² for c = 1..3 (0 for class 0), I = 0.4, U = 2.21; then the softmax
    Jacobian: ∂D/∂z_k = p_k·(g_k − Σ_c g_c·p_c)."""
    z = logits_ab()
    soft_dice(z, TRUTH_AB, 4).backward()
    assert z.grad is not None
    u, k = 2.21, 0.8 / 2.21**2
    # Pixel a (truth 3): g = (0, −k, −k, 2/U − k); Σ g·p = −k·0.9 + 0.4·2/U.
    s_a = -k * 0.9 + 0.4 * 2 / u
    grad_a = [0.1 * (0 - s_a), 0.2 * (-k - s_a), 0.3 * (-k - s_a), 0.4 * (2 / u - k - s_a)]
    # Pixel b (truth 0): g = (0, −k, −k, −k); Σ g·p = −0.3k.
    grad_b = [0.7 * 0.3 * k, 0.1 * (-k + 0.3 * k), 0.1 * (-k + 0.3 * k), 0.1 * (-k + 0.3 * k)]
    assert z.grad[0, :, 0, 0].tolist() == pytest.approx(grad_a, abs=1e-12)
    assert z.grad[0, :, 0, 1].tolist() == pytest.approx(grad_b, abs=1e-12)


def test_sample_scores_are_the_mean_true_class_probability_per_slice() -> None:
    z = logits_ab().detach()
    # Pixel a: p[3] = 0.4, pixel b: p[0] = 0.7 → mean 0.55.
    assert segmentation().sample_scores(z, TRUTH_AB).tolist() == pytest.approx([0.55], abs=1e-12)
