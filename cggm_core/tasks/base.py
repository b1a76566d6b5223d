"""The task interface: everything that differs between classification, regression and segmentation.

A method, the probe and the trainer never ask which task they train. They ask the task for:

* `loss(pred, y)`: ℓ, the training loss of the fused model and of every aux head;
* `metric(pred, y)`: ε on one batch (DESIGN §4 step 3), a float64 0-d tensor and no device sync;
* `sample_scores(pred, y)`: how sure a prediction is of the truth, per sample (OGM-GE's s_m);
* `evaluator()`: accumulates a whole split and returns the task's evaluation metrics;
* `probe_head(feats, y)`: the linear probe's head for frozen features of that shape.

`metric_name` names ε (keys `train/<metric_name>`, `acc/<m>` is ε of aux head m); `primary` names
the evaluation metric a run is judged by (`val/<primary>`, the best epoch, the summary), with
`higher_is_better` saying which way is better (MAE is lower-better).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class MetricInfo:
    """One metric a task reports: its key segment (val/<name>), a title, and which end is better."""

    name: str
    title: str
    better: str = "max"  # "max" or "min"


class Evaluator(Protocol):
    """Accumulates predictions over a split; `compute` returns {metric: value}."""

    def update(self, pred: torch.Tensor, y: torch.Tensor, groups: torch.Tensor | None = None) -> None: ...

    def compute(self) -> dict[str, float]: ...


class Task:
    """Base class of the tasks; subclasses are frozen dataclasses holding their own settings."""

    name: ClassVar[str]  # "classification", "regression", "segmentation"
    metric_name: ClassVar[str]  # ε's key suffix
    primary: ClassVar[str]  # the evaluation metric a run is judged by
    higher_is_better: ClassVar[bool]
    # What `evaluator().compute()` returns: ε over the split (metric_name) first, then the task's own
    # metrics. cggm_core.keys builds the dashboard's key families from these declarations.
    metrics: ClassVar[tuple[MetricInfo, ...]]
    num_outputs: int  # width of the last layer: classes, or regression targets

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def metric(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample_scores(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) float: higher means the prediction is surer of the truth (no gradient)."""
        raise NotImplementedError

    def evaluator(self) -> Evaluator:
        raise NotImplementedError

    def probe_head(self, feats: torch.Tensor, y: torch.Tensor) -> nn.Module:
        """A linear head for frozen features shaped like `feats` (B, ...) predicting `y`."""
        raise NotImplementedError

    def with_settings(self, trainer: Any) -> Task:
        """This task with the trainer settings (a TrainerConfig) that concern it applied (e.g.
        regression's sign_zero)."""
        return self

    def better(self, a: float, b: float) -> bool:
        """Is the primary value `a` better than `b`?"""
        return a > b if self.higher_is_better else a < b

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """For the catalog and the dashboard: the task's keys and which way is better."""
        return {
            "name": cls.name,
            "metric": cls.metric_name,
            "primary": cls.primary,
            "higher_is_better": cls.higher_is_better,
            "eval_metrics": [m.name for m in cls.metrics],
        }
