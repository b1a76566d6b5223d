"""One modality alone: the fused head sees only `modality`, the others are zero-masked.

This is the ceiling each encoder can reach without competition; comparing its linear-probe
accuracy with the jointly trained encoder's measures modality imbalance. The other encoders get
no gradient (their aux heads still train on their frozen features, so the probe stays complete).
The trainer evaluates the fused model as it was trained (val/test with the other modalities
zero-masked; in the Shapley game they are null players with value 0); the aux heads and the
linear probe still read every encoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
else:
    from .._lazy import torch

from ..settings import Setting, SettingError
from .base import Method, StepState


class Unimodal(Method):
    name = "unimodal"
    help = "train one modality alone (others zero-masked): each encoder's ceiling"
    settings = [
        Setting("modality", "str", "", "the modality to train (empty = the dataset's last modality)"),
    ]

    @classmethod
    def check(cls, cfg: Mapping[str, Any], modalities: list[str] | None = None) -> None:
        m = cfg.get("modality", "")
        if modalities is not None and m and m not in modalities:
            raise SettingError(
                f"setting 'modality': {m!r} is not a modality of this dataset; allowed: {', '.join(modalities)}"
            )

    @property
    def active_modalities(self) -> list[str]:
        m = self.cfg.get("modality") or self.modalities[-1]
        return [m]

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        active = self.active_modalities
        return {m: (1.0 if m in active else 0.0) for m in self.modalities}
