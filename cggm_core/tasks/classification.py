"""Classification: cross-entropy, ε = batch accuracy, evaluation acc / f1_macro / f1_weighted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import nn
else:
    from .._lazy import F, nn, torch

from .base import MetricInfo, Task


@dataclass(frozen=True)
class Classification(Task):
    num_outputs: int  # classes

    name: ClassVar[str] = "classification"
    metric_name: ClassVar[str] = "acc"
    primary: ClassVar[str] = "acc"
    higher_is_better: ClassVar[bool] = True
    metrics: ClassVar[tuple[MetricInfo, ...]] = (
        MetricInfo("acc", "accuracy"),
        MetricInfo("f1_macro", "F1, macro average"),
        MetricInfo("f1_weighted", "F1, weighted by class support"),
    )

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(pred, y)

    def metric(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # float64: a batch accuracy is exactly count/n (CGGM differences consecutive ε; see methods/cggm.py).
        with torch.no_grad():
            return (pred.argmax(dim=1) == y).double().mean()

    def sample_scores(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return pred.softmax(dim=1).gather(1, y.reshape(-1, 1)).reshape(-1)  # p_i[y_i], (B,)

    def evaluator(self) -> ConfusionEvaluator:
        return ConfusionEvaluator(self.num_outputs)

    def probe_head(self, feats: torch.Tensor, y: torch.Tensor) -> nn.Module:
        return nn.Linear(feats.reshape(feats.shape[0], -1).shape[1], self.num_outputs)


class ConfusionEvaluator:
    """A confusion matrix accumulated on the host; accuracy and F1 from it (as sklearn defines them)."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.counts = torch.zeros(classes, classes, dtype=torch.int64)  # [truth, prediction]

    def update(self, pred: torch.Tensor, y: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        k = self.classes
        flat = y.reshape(-1).long().cpu() * k + pred.argmax(dim=1).reshape(-1).cpu()
        self.counts += torch.bincount(flat, minlength=k * k).reshape(k, k)

    def compute(self) -> dict[str, float]:
        return confusion_metrics(self.counts)


def confusion_metrics(counts: torch.Tensor) -> dict[str, float]:
    """acc, f1_macro, f1_weighted of a (truth, prediction) count matrix.

    The macro mean runs over the classes that occur in the truth or the predictions, and the
    weighted mean weighs each class by its true samples: sklearn's `f1_score` with
    `average="macro"` / `"weighted"` and its default labels.
    """
    c = counts.double()
    total = float(c.sum())
    tp = c.diag()
    support = c.sum(dim=1)  # true samples per class
    predicted = c.sum(dim=0)
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))
    present = denom > 0
    acc = float(tp.sum()) / total if total else float("nan")
    macro = float(f1[present].mean()) if bool(present.any()) else float("nan")
    weighted = float((f1 * support).sum() / support.sum()) if float(support.sum()) > 0 else float("nan")
    return {"acc": acc, "f1_macro": macro, "f1_weighted": weighted}
