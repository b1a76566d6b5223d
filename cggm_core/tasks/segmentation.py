"""Segmentation (BraTS style): pixel classes 0 background, 1 necrotic core, 2 oedema, 3 enhancing.

As the official CGGM code (zrguo/CGGM src/eval_metrics.py, `SegLoss`, `Dice`, `train_eval_seg`):

* Loss: (1 − α)·CE(class weights .2, .3, .25, .25) + α·(1 − soft Dice), α = 0.5, the soft Dice
  pooled over the whole batch and the tumour classes 1–3: 2·Σ p·t / (Σ p + Σ t + 0.01), with p the
  softmax and t the one-hot truth.
* Regions of the hard prediction (argmax): ET = class 3, TC = 1 ∪ 3, WT = every class but 0.
  Dice of a region on one slice: (2·|A∩B| + 2e) / (|A| + |B| + 2e), e = 1e-3, so a slice where
  prediction and truth are both empty scores 1.
* ε = the batch mean of the per-slice Dice, averaged over ET, TC and WT.

Evaluation: `dice/et`, `dice/tc`, `dice/wt`, `dice/avg`, averaged over slices; when the split
gives each slice its volume (`groups`), the same keys are per-volume Dice (intersections and sizes
summed over a volume's slices, then averaged over volumes), the BraTS protocol. `dice` (ε over the
split) is always the slice average.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import nn
else:
    from .._lazy import F, nn, torch

from .base import MetricInfo, Task

REGIONS = ("et", "tc", "wt")
DICE_EPS = 1e-3  # the official `Dice`'s smoothing
SOFT_DICE_SMOOTH = 0.01  # the official `SegLoss`'s smoothing
CLASS_WEIGHTS = (0.2, 0.3, 0.25, 0.25)


def region_masks(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boolean masks of ET, TC and WT for a label map of any shape."""
    return {"et": labels == 3, "tc": (labels == 1) | (labels == 3), "wt": labels != 0}


def slice_dice(pred_labels: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-slice Dice of each region: {region: (B,) float64} for (B, H, W) label maps."""
    out: dict[str, torch.Tensor] = {}
    p_regions, t_regions = region_masks(pred_labels), region_masks(y)
    for r in REGIONS:
        p, t = p_regions[r].double(), t_regions[r].double()
        inter = (p * t).sum(dim=(1, 2)) + DICE_EPS
        union = p.sum(dim=(1, 2)) + t.sum(dim=(1, 2)) + 2 * DICE_EPS
        out[r] = 2 * inter / union
    return out


def soft_dice(logits: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    """The official loss's soft Dice: pooled over the batch and the tumour classes 1..C−1."""
    probs = logits.softmax(dim=1)[:, 1:]  # (B, C−1, H, W)
    truth = F.one_hot(y, classes).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)  # (B, C−1, H, W)
    inter = (probs * truth).sum()
    return 2.0 * inter / (probs.sum() + truth.sum() + SOFT_DICE_SMOOTH)


@dataclass(frozen=True)
class Segmentation(Task):
    num_outputs: int = 4  # pixel classes
    dice_weight: float = 0.5  # α: loss = (1 − α)·CE + α·(1 − soft Dice)
    class_weights: tuple[float, ...] = CLASS_WEIGHTS

    name: ClassVar[str] = "segmentation"
    metric_name: ClassVar[str] = "dice"
    primary: ClassVar[str] = "dice/avg"
    higher_is_better: ClassVar[bool] = True
    metrics: ClassVar[tuple[MetricInfo, ...]] = (
        MetricInfo("dice", "mean Dice of ET, TC, WT (ε, slice average)"),
        MetricInfo("dice/et", "Dice, enhancing tumour"),
        MetricInfo("dice/tc", "Dice, tumour core"),
        MetricInfo("dice/wt", "Dice, whole tumour"),
        MetricInfo("dice/avg", "Dice, mean of ET, TC, WT (per volume when the data has volumes)"),
    )

    def __post_init__(self) -> None:
        if len(self.class_weights) != self.num_outputs:
            raise ValueError(f"class_weights has {len(self.class_weights)} values for {self.num_outputs} classes")

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # pred (B, C, H, W) logits; y (B, H, W) class ids
        weight = torch.tensor(self.class_weights, dtype=pred.dtype, device=pred.device)
        ce = F.cross_entropy(pred, y, weight=weight)
        return (1 - self.dice_weight) * ce + self.dice_weight * (1 - soft_dice(pred, y, self.num_outputs))

    def metric(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            dice = slice_dice(pred.argmax(dim=1), y)
            return torch.stack([dice[r].mean() for r in REGIONS]).mean()

    def sample_scores(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            p_true = pred.softmax(dim=1).gather(1, y.unsqueeze(1)).squeeze(1)  # (B, H, W)
            return p_true.reshape(len(y), -1).mean(dim=1)  # mean confidence in the true class, (B,)

    def evaluator(self) -> DiceEvaluator:
        return DiceEvaluator()

    def probe_head(self, feats: torch.Tensor, y: torch.Tensor) -> nn.Module:
        from .conv_probe import ConvProbe  # an nn.Module: torch loads when a probe is built, not with the catalog

        return ConvProbe(feats.shape[1], self.num_outputs, tuple(y.shape[-2:]))


class DiceEvaluator:
    """Per-slice Dice sums, and per volume the sums of intersections and sizes (when groups are given)."""

    def __init__(self) -> None:
        self.slices = 0
        self.slice_sums = dict.fromkeys(REGIONS, 0.0)
        # volume id → region → [intersection, |prediction|, |truth|]
        self.volumes: dict[int, dict[str, list[float]]] = defaultdict(lambda: {r: [0.0, 0.0, 0.0] for r in REGIONS})

    def update(self, pred: torch.Tensor, y: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        labels = pred.argmax(dim=1)
        for r, d in slice_dice(labels, y).items():
            self.slice_sums[r] += float(d.sum())
        self.slices += len(y)
        if groups is None:
            return
        p_regions, t_regions = region_masks(labels), region_masks(y)
        g = groups.reshape(-1).cpu().tolist()
        for r in REGIONS:
            p, t = p_regions[r].reshape(len(y), -1), t_regions[r].reshape(len(y), -1)
            inter = (p & t).sum(dim=1).cpu().tolist()
            sp, st = p.sum(dim=1).cpu().tolist(), t.sum(dim=1).cpu().tolist()
            for vol, i, a, b in zip(g, inter, sp, st, strict=True):
                acc = self.volumes[int(vol)][r]
                acc[0] += i
                acc[1] += a
                acc[2] += b

    def compute(self) -> dict[str, float]:
        n = max(self.slices, 1)
        per_slice = {r: self.slice_sums[r] / n for r in REGIONS}
        out = {"dice": sum(per_slice.values()) / len(REGIONS)}
        if self.volumes:
            per_volume = {
                r: sum((2 * v[r][0] + 2 * DICE_EPS) / (v[r][1] + v[r][2] + 2 * DICE_EPS) for v in self.volumes.values())
                / len(self.volumes)
                for r in REGIONS
            }
            regions = per_volume
        else:
            regions = per_slice
        out.update({f"dice/{r}": regions[r] for r in REGIONS})
        out["dice/avg"] = sum(regions.values()) / len(REGIONS)
        return out
