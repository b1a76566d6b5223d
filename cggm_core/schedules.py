"""Learning-rate schedules of the model's optimizer, chosen by the trainer setting `scheduler`.

    none           the lr stays `lr`.
    plateau        torch's ReduceLROnPlateau on the validation loss, stepped once per epoch
                   (mode min, `plateau_patience`, `plateau_factor`; its other arguments at torch's
                   defaults): the official MOSI / IEMOCAP / Food-101 schedule (src/msatrain.py,
                   src/foodtrain.py: patience = `when` = 10, factor 0.1, `scheduler.step(val_loss)`).
    warmup_cosine  set before every step from the global step alone: a linear warm-up from
                   `warmup_start_lr` to `lr` over `warmup_epochs`, then a half cosine from `lr`
                   towards `final_lr` over the remaining steps: the official BraTS schedule
                   (`cosine_scheduler` in src/eval_metrics.py, indexed by the iteration in
                   src/segtrain.py).
    step           torch's StepLR, stepped once after each epoch: the lr is multiplied by
                   `lr_step_gamma` after every `lr_step_epochs` epochs, i.e. epoch e (1-based) trains at
                   lr · gamma^⌊(e − 1) / lr_step_epochs⌋: the official OGM-GE, AGM, PMR and MLA schedule
                   (`StepLR(optimizer, lr_decay_step=70, lr_decay_ratio=0.1)` with `scheduler.step()`
                   at the end of each training epoch; see cggm_core/presets.py for the lines).

As the official code, a schedule drives only the model's optimizer; the aux heads keep their fixed
lr (`lr · aux_lr_ratio`). Where we depart: the official validation loss is the mean of per-batch
mean losses, ours the per-sample mean (`probe.evaluate`); the two differ only through a short last
batch. When a run is shorter than its warm-up, the official `cosine_scheduler` fails an assertion;
here the ramp keeps its slope and the run ends part-way up it.

A schedule's state goes into the checkpoint (`state_dict`), so a resumed run continues the
uninterrupted one's schedule (the plateau's best loss and bad-epoch count included).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .config import TrainerConfig


def warmup_cosine_lr(
    step: int, *, base_lr: float, final_lr: float, start_lr: float, warmup_steps: int, total_steps: int
) -> float:
    """The lr of 0-based step `step`, as the official `cosine_scheduler(...)[step]`.

    Warm-up: `np.linspace(start_lr, base_lr, warmup_steps)` (its last step is `base_lr`). Then, for
    j = step − warmup_steps in [0, n) with n = total_steps − warmup_steps:
    final_lr + ½ (base_lr − final_lr)(1 + cos(π j / n)), which starts at `base_lr` and never quite
    reaches `final_lr`.
    """
    if step < warmup_steps:
        if warmup_steps == 1:
            return start_lr
        return start_lr + (base_lr - start_lr) * step / (warmup_steps - 1)
    n = total_steps - warmup_steps
    j = step - warmup_steps
    if j >= n:  # beyond the planned steps (the trainer never asks): stay at the curve's last value
        j, n = max(n - 1, 0), max(n, 1)
    return final_lr + 0.5 * (base_lr - final_lr) * (1.0 + math.cos(math.pi * j / n))


class Schedule:
    """No schedule: the lr stays as the optimizer was built. Subclasses override the two hooks."""

    name = "none"

    def before_step(self, step: int) -> None:
        """Called before each optimisation step with the number of steps done so far (0-based index)."""

    def after_epoch(self, val_loss: float) -> None:
        """Called after each epoch's validation."""

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name", self.name) != self.name:
            raise ValueError(f"checkpoint holds a {state['name']!r} schedule, this run uses {self.name!r}")


class Plateau(Schedule):
    name = "plateau"

    def __init__(self, optimizer: torch.optim.Optimizer, patience: int, factor: float) -> None:
        self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=patience, factor=factor)

    def after_epoch(self, val_loss: float) -> None:
        self.inner.step(val_loss)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.inner.load_state_dict(state["inner"])


class StepDecay(Schedule):
    """The lr × gamma every `step_epochs` epochs (torch's StepLR, stepped after each epoch).

    torch's StepLR multiplies every parameter group's lr, so a method's per-group multiplier
    (MSLR's `lr_scale`) keeps its ratio to the base lr.
    """

    name = "step"

    def __init__(self, optimizer: torch.optim.Optimizer, step_epochs: int, gamma: float) -> None:
        self.inner = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_epochs, gamma=gamma)

    def after_epoch(self, val_loss: float) -> None:
        self.inner.step()  # the official steps it at the end of each training epoch, whatever the loss

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.inner.load_state_dict(state["inner"])


class WarmupCosine(Schedule):
    name = "warmup_cosine"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        base_lr: float,
        final_lr: float,
        start_lr: float,
        warmup_steps: int,
        total_steps: int,
    ) -> None:
        self.optimizer = optimizer
        self.base_lr, self.final_lr, self.start_lr = base_lr, final_lr, start_lr
        self.warmup_steps, self.total_steps = warmup_steps, total_steps

    def before_step(self, step: int) -> None:
        lr = warmup_cosine_lr(
            step,
            base_lr=self.base_lr,
            final_lr=self.final_lr,
            start_lr=self.start_lr,
            warmup_steps=self.warmup_steps,
            total_steps=self.total_steps,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # a method's per-part multiplier (MSLR) survives

    # Stateless beyond the global step (which the Stepper's checkpoint holds): the base class's
    # state_dict is enough, and an extended resume follows the new run length's curve.


def make_schedule(t: TrainerConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Schedule:
    """The schedule the trainer settings name, driving `optimizer` (the model's)."""
    if t.scheduler == "none":
        return Schedule()
    if t.scheduler == "plateau":
        return Plateau(optimizer, t.plateau_patience, t.plateau_factor)
    if t.scheduler == "warmup_cosine":
        return WarmupCosine(
            optimizer,
            base_lr=t.lr,
            final_lr=t.final_lr,
            start_lr=t.warmup_start_lr,
            warmup_steps=t.warmup_epochs * steps_per_epoch,
            total_steps=t.epochs * steps_per_epoch,
        )
    if t.scheduler == "step":
        return StepDecay(optimizer, t.lr_step_epochs, t.lr_step_gamma)
    raise ValueError(f"unknown scheduler {t.scheduler!r}; allowed: none, plateau, warmup_cosine, step")
