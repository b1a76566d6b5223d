"""Tasks as objects: each owns its loss, its batch metric ε, its evaluation and its probe head.

classification(10)            cross-entropy; ε = accuracy; acc, f1_macro, f1_weighted
regression()                  L1; ε = sign accuracy; mae, corr, acc2, acc2_zero, acc7, f1
segmentation()                0.5·CE + 0.5·(1 − soft Dice); ε = mean Dice of ET/TC/WT; dice/*
"""

from __future__ import annotations

from .base import Evaluator, Task
from .classification import Classification
from .regression import SIGN_ZERO, Regression
from .segmentation import Segmentation

TASKS: dict[str, type[Task]] = {t.name: t for t in (Classification, Regression, Segmentation)}


def classification(num_classes: int) -> Classification:
    return Classification(num_classes)


def regression(num_targets: int = 1, sign_zero: str = "negative") -> Regression:
    return Regression(num_targets, sign_zero)


def segmentation(num_classes: int = 4) -> Segmentation:
    return Segmentation(num_classes)


__all__ = [
    "SIGN_ZERO",
    "TASKS",
    "Classification",
    "Evaluator",
    "Regression",
    "Segmentation",
    "Task",
    "classification",
    "regression",
    "segmentation",
]
