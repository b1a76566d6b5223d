"""The balancing-method interface, the same small one for every method.

A training step (see `cggm_core.step.Stepper`) runs:

    feats = encode(x, masks);  pred = fuse(feats, keep=method.active_modalities, masks=masks)
    z_m = aux_m(sg(h_m));  ε_m = task.metric(z_m, y)
    extra = method.before_backward(state)          # e.g. CGGM's λ·L_gm (0 for most methods)
    backward(L_task + extra + Σ L_aux)             # aux losses reach only the aux heads
    coef = method.modulate(state)                  # scale encoder gradients in place
    clip, step

so the probe measures every method at the same points: `grad_norm/<m>` just before `modulate`,
`grad_norm_mod/<m>` just after it. Adding a method is one file plus one registry line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from ..models import AuxHeads, MultimodalNet
else:
    from .._lazy import torch

from ..settings import Setting
from ..tasks import Task


@dataclass
class StepState:
    """Everything a method may read during one optimisation step."""

    step: int
    log: bool  # a logging step: the place for diagnostics and device syncs
    xs: Mapping[str, torch.Tensor]
    y: torch.Tensor
    feats: dict[str, torch.Tensor]  # h_m, with graph
    pred: torch.Tensor  # fused output
    task_loss: torch.Tensor
    aux_logits: dict[str, torch.Tensor]  # z_m = f_m(sg(h_m))
    aux_losses: dict[str, torch.Tensor]
    eps: dict[str, torch.Tensor]  # ε_m, 0-d tensors
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, T) of padded sequence modalities
    # Filled by methods for the probe (0-d tensors); the probe computes what is missing.
    cos: dict[str, torch.Tensor] = field(default_factory=dict)
    scalars: dict[str, torch.Tensor] = field(default_factory=dict)  # extra keys to log, e.g. loss/gm


class Method:
    name: ClassVar[str]
    help: ClassVar[str]
    settings: ClassVar[list[Setting]] = []

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        self.cfg = dict(cfg)
        self.model = model
        self.aux = aux
        self.task = task
        self.modalities = list(model.modalities)

    @classmethod
    def check(cls, cfg: Mapping[str, Any], modalities: list[str] | None = None) -> None:
        """Cross-setting validation (raise SettingError); `modalities` when the data is known."""

    @property
    def active_modalities(self) -> list[str]:
        """Modalities the fused prediction sees, in training and in evaluation; the rest are zero-masked."""
        return self.modalities

    def on_epoch_start(self, epoch: int) -> None:
        """The trainer calls this before each epoch's first step (epochs count from 1); methods with
        a modulation window (OGM-GE, AGM) read it. A Stepper driven by hand calls it itself."""

    def before_backward(self, state: StepState) -> torch.Tensor | None:
        """Extra loss added to L_task before backward (None for none)."""
        return None

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        """Rescale encoder gradients in place; return the coefficient per modality."""
        return {m: 1.0 for m in self.modalities}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


def scale_grads_(params: list[torch.nn.Parameter], scale: torch.Tensor | float) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        if isinstance(scale, torch.Tensor):  # a float64 coefficient scales in the gradients' dtype
            scale = scale.to(grads[0].dtype)
        torch._foreach_mul_(grads, scale)
