"""The balancing-method interface, the same small one for every method.

A training step (see `cggm_core.step.Stepper`) runs:

    feats = encode(x, masks);  pred = fuse(feats, keep=method.active_modalities, masks=masks)
    z_m = aux_m(sg(h_m));  ε_m = task.metric(z_m, y)
    extra = method.before_backward(state)          # e.g. CGGM's λ·L_gm (0 for most methods)
    for each pass in method.passes(state, L_task + extra):   # one pass for most methods
        backward(pass.loss [+ Σ L_aux on the first])  # aux losses reach only the aux heads
        coef = method.modulate(state)              # scale encoder gradients in place
        clip, step

so the probe measures every method at the same points: `grad_norm/<m>` just before `modulate`,
`grad_norm_mod/<m>` just after it (for each modality in the pass that trains it), and
`update_norm/<m>` = ‖θ_m after the last pass's optimizer step − θ_m before the first‖. Adding a method
is one file plus one registry line.

Hooks beyond the step, each with a default that changes nothing (the Trainer calls the epoch ones):

* `predict(feats, keep, masks)`: the fused prediction the run trains, logs and is evaluated with
  (default: the model's fusion; MLA fuses unimodal outputs with test-time weights);
* `passes(state, loss)`: the step's backward/optimizer passes (MLA: one per modality, in turn);
* `lr_groups(cfg, model)`: parameter groups with their own lr multiplier (MSLR), used when the
  Stepper builds the model's optimizer;
* `holdout_fraction(cfg)`: a seeded part of the training split the trainer keeps out of training
  and hands to the method (G-Blending's held-out weight estimation);
* `on_epoch_start(ctx)`: work at an epoch boundary with the data (PMR's prototypes, G-Blending's
  super-epochs); returns values to log;
* `tasks` / `check_task`: the tasks a method serves (PMR needs classes), checked when a job is
  resolved and when a Stepper is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from ..data.base import DataSplit
    from ..models import AuxHeads, MultimodalNet
else:
    from .._lazy import torch

from ..settings import Setting, SettingError
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


@dataclass
class Pass:
    """One backward and optimizer step of a training step: its loss and the encoders it trains."""

    loss: torch.Tensor
    modalities: list[str]  # the probe reads these encoders' gradient norms in this pass


@dataclass
class EpochContext:
    """What a method may use at the start of an epoch (`Method.on_epoch_start`, called by the Trainer)."""

    epoch: int  # 1-based, as the trainer counts
    epochs: int
    train: DataSplit  # what the model trains on (the method's held-out part removed)
    heldout: DataSplit | None  # the held-out part (`holdout_fraction` > 0), else None
    batch_size: int
    seed: int  # the trainer's seed
    clip: float  # the trainer's gradient-norm clip (0 = off)
    optimizer: torch.optim.Optimizer  # the model's
    make_optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]  # a fresh one of its kind


class Method:
    name: ClassVar[str]
    help: ClassVar[str]
    settings: ClassVar[list[Setting]] = []
    tasks: ClassVar[frozenset[str] | None] = None  # the tasks it serves; None = every task
    tasks_why: ClassVar[str] = ""  # why the others are refused (said in the error)

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        self.cfg = dict(cfg)
        self.model = model
        self.aux = aux
        self.task = task
        self.modalities = list(model.modalities)

    @classmethod
    def check(cls, cfg: Mapping[str, Any], modalities: list[str] | None = None) -> None:
        """Cross-setting validation (raise SettingError); `modalities` when the data is known."""

    @classmethod
    def check_task(cls, task: str, cfg: Mapping[str, Any]) -> None:
        """Refuse a task this method cannot train (raise SettingError naming the tasks it serves)."""
        if cls.tasks is not None and task not in cls.tasks:
            why = f" ({cls.tasks_why})" if cls.tasks_why else ""
            raise SettingError(
                f"method {cls.name!r} serves {', '.join(sorted(cls.tasks))}, not {task}{why}; choose another method"
            )

    @classmethod
    def lr_groups(cls, cfg: Mapping[str, Any], model: MultimodalNet) -> list[tuple[list[torch.nn.Parameter], float]]:
        """Parameter groups trained at lr × their multiplier; every other parameter trains at lr."""
        return []

    @classmethod
    def holdout_fraction(cls, cfg: Mapping[str, Any]) -> float:
        """The part of the training split the trainer holds out for this method (0 = none)."""
        return 0.0

    @property
    def active_modalities(self) -> list[str]:
        """Modalities the fused prediction sees, in training and in evaluation; the rest are zero-masked."""
        return self.modalities

    def set_epoch(self, epoch: int) -> None:
        """The trainer calls this before each epoch's first step (epochs count from 1); methods with
        a modulation window (OGM-GE, AGM) read it. A Stepper driven by hand calls it itself."""

    def predict(
        self,
        feats: Mapping[str, torch.Tensor],
        keep: Iterable[str] | None = None,
        masks: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The fused prediction (training, validation, test, Shapley): only `keep`, when given, is seen."""
        return self.model.fuse(feats, keep=self.active_modalities if keep is None else keep, masks=masks)

    def on_epoch_start(self, ctx: EpochContext) -> dict[str, float]:
        """Called by the Trainer before each epoch's batches; returns values to log at the current step."""
        return {}

    def before_backward(self, state: StepState) -> torch.Tensor | None:
        """Extra loss added to L_task before backward (None for none)."""
        return None

    def passes(self, state: StepState, loss: torch.Tensor) -> Iterator[Pass]:
        """The step's passes, each backward + modulate + clip + optimizer step. Default: one pass of
        `loss` (L_task + before_backward's extra) over every encoder. A generator: the Stepper asks
        for the next pass after the previous one's optimizer step, so it sees the updated weights."""
        yield Pass(loss, self.modalities)

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
