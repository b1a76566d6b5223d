"""Task evaluation metrics against hand-computed values (classification F1, the MOSI metrics)."""

from __future__ import annotations

import math

import pytest
import torch

from cggm_core.tasks import Classification, Regression, classification, regression
from cggm_core.tasks.classification import confusion_metrics
from cggm_core.tasks.regression import regression_metrics


def test_confusion_metrics_by_hand() -> None:
    # truth 0 0 0 1 1 2 ; prediction 0 0 1 1 2 2
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 1, 2, 2]), 3).float()
    ev = classification(3).evaluator()
    ev.update(pred[:4], y[:4])  # in two batches: the matrix accumulates
    ev.update(pred[4:], y[4:])
    got = ev.compute()
    # class 0: tp 2, support 3, predicted 2 → F1 = 4/5; class 1: tp 1, 2, 2 → 1/2; class 2: tp 1, 1, 2 → 2/3
    f1 = [4 / 5, 1 / 2, 2 / 3]
    assert got["acc"] == pytest.approx(4 / 6)
    assert got["f1_macro"] == pytest.approx(sum(f1) / 3)
    assert got["f1_weighted"] == pytest.approx((3 * f1[0] + 2 * f1[1] + 1 * f1[2]) / 6)


def test_macro_f1_skips_classes_absent_from_truth_and_predictions() -> None:
    # 4 classes, class 3 never occurs: sklearn's default labels leave it out of the macro mean.
    counts = torch.tensor([[2, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    got = confusion_metrics(counts)
    # class 0: F1 1; class 1: tp 1, support 1, predicted 2 → 2/3; class 2: tp 0 → 0
    assert got["f1_macro"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_classification_sample_scores_are_the_true_class_probability() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])  # softmax (1/4, 3/4), (3/4, 1/4)
    got = Classification(2).sample_scores(logits, torch.tensor([1, 1]))
    torch.testing.assert_close(got, torch.tensor([0.75, 0.25]))


def test_regression_metrics_by_hand() -> None:
    pred = torch.tensor([0.5, -1.0, 0.0, 2.6, -0.4, 1.0], dtype=torch.float64)
    y = torch.tensor([1.0, -2.0, 0.0, 3.4, 0.3, 0.0], dtype=torch.float64)
    got = regression_metrics(pred, y)
    # |errors| 0.5 1 0 0.8 0.7 1 → MAE 4/6
    assert got["mae"] == pytest.approx(4.0 / 6)
    # non-zero labels: samples 0, 1, 3, 4; pred > 0: T F T F; y > 0: T F T T → 3 of 4
    assert got["acc2"] == pytest.approx(3 / 4)
    # every sample, zeros negative: pred > 0: T F F T F T; y > 0: T F F T T F → 4 of 6
    assert got["acc2_zero"] == pytest.approx(4 / 6)
    # round(clip(·, −3, 3)): pred 0 −1 0 3 −0 1 (0.5 and −0.4 round to 0); y 1 −2 0 3 0 0 → agree at 2, 3, 4 → 3/6
    assert got["acc7"] == pytest.approx(3 / 6)
    # F1 weighted on non-zero labels: truth (pos, neg, pos, pos), pred (pos, neg, pos, neg):
    # pos: tp 2, support 3, predicted 2 → 4/5; neg: tp 1, support 1, predicted 2 → 2/3
    assert got["f1"] == pytest.approx((3 * 4 / 5 + 1 * 2 / 3) / 4)
    pc, yc = pred - pred.mean(), y - y.mean()
    assert got["corr"] == pytest.approx(float((pc * yc).sum() / (pc.norm() * yc.norm())))
    assert got["sign_acc"] == got["acc2_zero"]  # the default convention counts zeros as negative
    # ≥ 0: pred T F T T F T, y T F T T T T → 5 of 6
    assert regression_metrics(pred, y, "positive")["sign_acc"] == pytest.approx(5 / 6)


def test_regression_evaluator_accumulates_batches_and_targets_shaped_n_by_1() -> None:
    ev = regression().evaluator()
    ev.update(torch.tensor([[0.5], [-1.0]]), torch.tensor([[1.0], [-2.0]]))
    ev.update(torch.tensor([[0.0]]), torch.tensor([[0.0]]))
    got = ev.compute()
    assert got["mae"] == pytest.approx(1.5 / 3)
    assert got["acc2"] == 1.0  # the zero label is left out


def test_regression_sample_scores_are_minus_the_error() -> None:
    got = Regression(1).sample_scores(torch.tensor([[0.5], [2.0]]), torch.tensor([[1.0], [-1.0]]))
    torch.testing.assert_close(got, torch.tensor([-0.5, -3.0]))


def test_constant_predictions_have_no_correlation() -> None:
    got = regression_metrics(
        torch.zeros(4, dtype=torch.float64), torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    )
    assert math.isnan(got["corr"])


def test_primary_metrics_and_which_way_is_better() -> None:
    assert (Classification(3).primary, Classification(3).higher_is_better) == ("acc", True)
    r = Regression(1)
    assert (r.primary, r.higher_is_better) == ("mae", False)
    assert r.better(0.7, 0.8) and not r.better(0.8, 0.7)
