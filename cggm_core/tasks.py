"""Tasks: the loss ℓ and the batch metric ε that CGGM and the probe read (DESIGN §4 step 3).

A method never knows which task it trains; it asks the task for `loss(pred, y)` and
`metric(pred, y)`. Classification uses cross-entropy and accuracy; regression uses L1 and sign
accuracy, so that CGGM's ε works unchanged on MOSI-style targets.

Sign accuracy counts a zero as negative by default, as the official CGGM (and MulT) evaluation
code does (`preds > 0` against `truths > 0`, zrguo/CGGM src/eval_metrics.py lines 40-41, 50-51);
the trainer setting `sign_zero = "positive"` counts it as positive (`>= 0`) instead. The metric
is a float64 mean, so a batch accuracy is exactly count/n as the official code's sklearn accuracy
is (CGGM differences it; see methods/cggm.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
else:
    from ._lazy import F, torch


SIGN_ZERO = ("negative", "positive")  # choices of the trainer setting `sign_zero`


@dataclass(frozen=True)
class Task:
    kind: str  # "classification" | "regression"
    num_outputs: int  # classes, or regression targets
    metric_name: str  # key suffix: train/<metric_name>, val/<metric_name>
    sign_zero: str = "negative"  # regression: the sign a zero counts as (official: negative)

    def __post_init__(self) -> None:
        if self.sign_zero not in SIGN_ZERO:
            raise ValueError(f"sign_zero {self.sign_zero!r} is not allowed; allowed: {', '.join(SIGN_ZERO)}")

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "classification":
            return F.cross_entropy(pred, y)
        return F.l1_loss(pred.reshape(y.shape), y)

    def per_sample_loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "classification":
            return F.cross_entropy(pred, y, reduction="none")
        return (pred.reshape(y.shape) - y).abs().reshape(len(y), -1).mean(dim=1)

    def metric(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """ε on one batch, as a float64 0-d tensor (no device sync; callers `.item()` on log steps only)."""
        with torch.no_grad():
            if self.kind == "classification":
                return (pred.argmax(dim=1) == y).double().mean()
            # Sign accuracy, as in MOSI's binary accuracy: a prediction is right when its sign matches.
            p = pred.reshape(y.shape)
            if self.sign_zero == "positive":
                return ((p >= 0) == (y >= 0)).double().mean()
            return ((p > 0) == (y > 0)).double().mean()


def classification(num_classes: int) -> Task:
    return Task(kind="classification", num_outputs=num_classes, metric_name="acc")


def regression(num_targets: int = 1, sign_zero: str = "negative") -> Task:
    return Task(kind="regression", num_outputs=num_targets, metric_name="sign_acc", sign_zero=sign_zero)
