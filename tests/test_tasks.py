"""Task metrics by hand: regression sign accuracy and where a zero counts (DESIGN §4.1: negative)."""

from __future__ import annotations

import pytest
import torch

from cggm_core.config import resolve
from cggm_core.settings import SettingError
from cggm_core.tasks import Regression, classification, regression
from cggm_core.trainer import Trainer

# Zeros in both predictions and targets.
PRED = torch.tensor([[0.0], [0.0], [1.0], [-1.0], [0.5], [0.0]])
TRUE = torch.tensor([[0.0], [1.0], [0.0], [-2.0], [0.3], [-1.0]])


def test_sign_accuracy_counts_zero_as_negative_by_default() -> None:
    # `> 0` on both sides, as the official evaluation code:
    #   pred > 0: F F T F T F;  true > 0: F T F F T F  →  agree: T F F T T T  → 4/6.
    assert float(regression().metric(PRED, TRUE)) == pytest.approx(4 / 6, abs=1e-12)
    assert float(regression(1, "negative").metric(PRED, TRUE)) == pytest.approx(4 / 6, abs=1e-12)
    assert float(Regression(1).metric(PRED, TRUE)) == pytest.approx(4 / 6, abs=1e-12)


def test_sign_accuracy_can_count_zero_as_positive() -> None:
    # `>= 0` on both sides:
    #   pred ≥ 0: T T T F T T;  true ≥ 0: T T T F T F  →  agree: T T T T T F  → 5/6.
    assert float(regression(1, "positive").metric(PRED, TRUE)) == pytest.approx(5 / 6, abs=1e-12)


def test_sign_zero_is_checked() -> None:
    with pytest.raises(ValueError, match="sign_zero 'zero' is not allowed; allowed: negative, positive"):
        Regression(1, sign_zero="zero")


def test_metric_is_an_exact_float64_fraction() -> None:
    # 1 of 3 right: the float64 1/3, not a float32 rounding of it.
    got = classification(2).metric(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), torch.tensor([0, 0, 0]))
    assert got.dtype == torch.float64 and float(got) == 1 / 3


def test_sign_zero_is_a_trainer_setting_with_the_official_default() -> None:
    job = resolve({"dataset": "synthetic", "method": "joint"})
    assert job.trainer.sign_zero == "negative"
    assert resolve({"dataset": "synthetic", "method": "joint", "sign_zero": "positive"}).trainer.sign_zero == "positive"
    with pytest.raises(
        SettingError, match="setting 'sign_zero': 'zero' is not allowed; expected one of negative, positive"
    ):
        resolve({"dataset": "synthetic", "method": "joint", "sign_zero": "zero"})


@pytest.mark.parametrize(("sign_zero", "expected"), [("negative", 0.0), ("positive", 1.0)])
def test_trainer_threads_sign_zero_to_the_task(sign_zero: str, expected: float) -> None:
    job = resolve(
        {"dataset": "synthetic", "method": "joint", "task": "regression", "train_size": 64, "sign_zero": sign_zero}
    )
    trainer = Trainer(job, device="cpu", progress=False)
    trainer.setup()
    # A zero prediction of a positive target: wrong if zero is negative, right if it is positive.
    zeros, ones = torch.zeros(4, 1), torch.ones(4, 1)
    for task in (trainer.data.task, trainer.stepper.task):  # what validation and the steps read
        assert float(task.metric(zeros, ones)) == expected
