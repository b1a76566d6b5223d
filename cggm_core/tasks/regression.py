"""Regression (CMU-MOSI style sentiment in [−3, 3]): L1, ε = sign accuracy, the MulT/CGGM metrics.

Sign accuracy counts a zero as negative by default, as the official CGGM (and MulT) evaluation
code does (`preds > 0` against `truths > 0`, zrguo/CGGM src/eval_metrics.py lines 40-41, 50-51);
`sign_zero = "positive"` counts it as positive (`>= 0`). The metric is a float64 mean, so a batch
accuracy is exactly count/n, as the official code's sklearn accuracy is.

Evaluation (over a whole split, as the official `eval_senti`):
    mae        mean |pred − y|
    corr       Pearson correlation of pred and y
    acc2       binary accuracy of pred > 0 vs y > 0 over the samples with a non-zero label
    acc2_zero  the same over every sample, zeros negative (what the official code reports)
    acc7       round(clip(pred, −3, 3)) == round(clip(y, −3, 3)) (seven classes)
    f1         weighted F1 of pred > 0 vs y > 0 over the non-zero labels
    sign_acc   ε over the split, with this task's sign_zero convention
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import nn
else:
    from .._lazy import F, nn, torch

from .base import MetricInfo, Task
from .classification import confusion_metrics

SIGN_ZERO = ("negative", "positive")  # choices of the trainer setting `sign_zero`


@dataclass(frozen=True)
class Regression(Task):
    num_outputs: int = 1  # regression targets
    sign_zero: str = "negative"  # the sign a zero counts as (official: negative)

    name: ClassVar[str] = "regression"
    metric_name: ClassVar[str] = "sign_acc"
    primary: ClassVar[str] = "mae"
    higher_is_better: ClassVar[bool] = False
    metrics: ClassVar[tuple[MetricInfo, ...]] = (
        MetricInfo("sign_acc", "sign accuracy (ε; zero counts as negative by default)"),
        MetricInfo("mae", "mean absolute error", "min"),
        MetricInfo("corr", "Pearson correlation"),
        MetricInfo("acc2", "binary accuracy, non-zero labels"),
        MetricInfo("acc2_zero", "binary accuracy, zeros negative (the official)"),
        MetricInfo("acc7", "7-class accuracy"),
        MetricInfo("f1", "weighted F1, non-zero labels"),
    )

    def __post_init__(self) -> None:
        if self.sign_zero not in SIGN_ZERO:
            raise ValueError(f"sign_zero {self.sign_zero!r} is not allowed; allowed: {', '.join(SIGN_ZERO)}")

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(pred.reshape(y.shape), y)

    def positive(self, v: torch.Tensor) -> torch.Tensor:
        return v >= 0 if self.sign_zero == "positive" else v > 0

    def metric(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (self.positive(pred.reshape(y.shape)) == self.positive(y)).double().mean()

    def sample_scores(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return -(pred.reshape(y.shape) - y).abs().reshape(len(y), -1).mean(dim=1)  # −|error|, (B,)

    def evaluator(self) -> RegressionEvaluator:
        return RegressionEvaluator(self)

    def probe_head(self, feats: torch.Tensor, y: torch.Tensor) -> nn.Module:
        return nn.Linear(feats.reshape(feats.shape[0], -1).shape[1], self.num_outputs)

    def with_settings(self, trainer: Any) -> Regression:
        return replace(self, sign_zero=getattr(trainer, "sign_zero", self.sign_zero))


class RegressionEvaluator:
    """Keeps every prediction and target of the split (N floats each) and scores them at the end."""

    def __init__(self, task: Regression) -> None:
        self.task = task
        self.preds: list[torch.Tensor] = []
        self.truths: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, y: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        self.preds.append(pred.reshape(y.shape).reshape(-1).double().cpu())
        self.truths.append(y.reshape(-1).double().cpu())

    def compute(self) -> dict[str, float]:
        return regression_metrics(torch.cat(self.preds), torch.cat(self.truths), self.task.sign_zero)


def regression_metrics(pred: torch.Tensor, y: torch.Tensor, sign_zero: str = "negative") -> dict[str, float]:
    """The evaluation metrics of 1-D float64 predictions and targets (see the module docstring)."""
    n = pred.numel()
    out: dict[str, float] = {"mae": float((pred - y).abs().mean())}
    pc, yc = pred - pred.mean(), y - y.mean()
    denom = math.sqrt(float((pc * pc).sum()) * float((yc * yc).sum()))
    out["corr"] = float((pc * yc).sum()) / denom if denom > 0 else math.nan
    non_zero = y != 0
    if bool(non_zero.any()):
        p2, y2 = pred[non_zero] > 0, y[non_zero] > 0
        out["acc2"] = float((p2 == y2).double().mean())
        counts = torch.zeros(2, 2, dtype=torch.int64)
        counts.index_put_((y2.long(), p2.long()), torch.ones_like(y2, dtype=torch.int64), accumulate=True)
        out["f1"] = confusion_metrics(counts)["f1_weighted"]
    else:
        out["acc2"] = out["f1"] = math.nan
    out["acc2_zero"] = float(((pred > 0) == (y > 0)).double().mean())
    out["acc7"] = float((pred.clamp(-3, 3).round() == y.clamp(-3, 3).round()).double().mean())
    positive = (lambda v: v >= 0) if sign_zero == "positive" else (lambda v: v > 0)
    out["sign_acc"] = float((positive(pred) == positive(y)).double().mean()) if n else math.nan
    return out
