"""One balanced training step with the probe: the piece the trainer and users' own loops share.

    stepper = Stepper(net, classification(10), method="cggm", settings={"rho": 1.3}, lr=1e-3)
    for xs, y in loader:
        stepper.step(xs, y)            # or stepper.step(xs, y, masks) for padded sequences

`Stepper` owns the auxiliary heads (the model's own, built before the first step when the model
knows its feature shapes, else from the first batch's features), the model and aux optimizers
(the aux heads' of the model's kind by default, as the official code; lr · `aux_lr_ratio`, their
own weight decay), the method, gradient clipping and probe logging. Diagnostics and device syncs happen only on
logging steps (`step % log_every == 0`). `precision` (fp32 | bf16 | fp16) puts the forward under
autocast and, for fp16, the backward under a gradient scaler (cggm_core.amp). Settings left out default to the trainer's
(`TrainerConfig`); `Stepper.from_job` takes a resolved job as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from . import probe
from .amp import Precision
from .batch import Batch
from .config import TrainerConfig
from .distributed import LOCAL, Dist
from .methods import METHODS, resolve_method_settings
from .methods.base import Method, StepState
from .models import AuxHeads, MultimodalNet
from .tasks import Task
from .tracking import Sink, log_dict

if TYPE_CHECKING:
    from .config import JobConfig

_DEFAULTS = TrainerConfig()


class Stepper:
    def __init__(
        self,
        model: MultimodalNet,
        task: Task,
        method: str = "cggm",
        settings: Mapping[str, Any] | None = None,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float | None = None,
        aux_lr_ratio: float | None = None,
        clip: float | None = None,
        log_every: int | None = None,
        sink: Sink | None = None,
        aux: AuxHeads | None = None,
        optimizer_name: str | None = None,
        weight_decay: float | None = None,
        momentum: float | None = None,
        aux_optimizer_name: str | None = None,
        aux_weight_decay: float | None = None,
        precision: str | None = None,
        resolved: bool = False,
        dist: Dist | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
        self.model = model
        self.task = task
        self.method_name = method
        # A job's method settings were resolved (parsed, checked) once already; a user's are partial.
        self.method_cfg = (
            dict(settings or {}) if resolved else resolve_method_settings(method, settings or {}, model.modalities)
        )
        self.lr = _DEFAULTS.lr if lr is None else lr
        self.aux_lr = self.lr * (_DEFAULTS.aux_lr_ratio if aux_lr_ratio is None else aux_lr_ratio)
        self.clip = _DEFAULTS.clip if clip is None else clip
        self.log_every = _DEFAULTS.log_every if log_every is None else log_every
        self.sink = sink
        self.dist = dist or LOCAL  # several processes: the step's statistics and gradients are all-reduced
        # fp32 | bf16 | fp16 (cggm_core.amp): autocast and, for fp16, a gradient scaler.
        self.amp = Precision(precision or _DEFAULTS.precision, next(model.parameters()).device)
        self.momentum = _DEFAULTS.momentum if momentum is None else momentum
        kind = optimizer_name or _DEFAULTS.optimizer
        METHODS[method].check_task(task.name, self.method_cfg)
        lr_groups = METHODS[method].lr_groups(self.method_cfg, model)
        if optimizer is not None and lr_groups:
            raise ValueError(
                f"method {method!r} gives parts of the model their own learning rate through the optimizer's "
                "parameter groups; let the Stepper build the optimizer (optimizer_name=, lr=, weight_decay=)"
            )
        self.optimizer = (
            optimizer
            if optimizer is not None
            else make_optimizer(
                kind,
                param_groups(model, lr_groups, self.lr),
                self.lr,
                _DEFAULTS.weight_decay if weight_decay is None else weight_decay,
                self.momentum,
            )
        )
        # The official code builds the aux heads' optimizer of the model's kind (getattr(optim, optim)).
        aux_kind = aux_optimizer_name or _DEFAULTS.aux_optimizer
        self.aux_optimizer_name = kind if aux_kind == "same" else aux_kind
        self.aux_weight_decay = _DEFAULTS.aux_weight_decay if aux_weight_decay is None else aux_weight_decay
        self.aux: AuxHeads | None = None
        self.aux_optimizer: torch.optim.Optimizer | None = None
        self.method: Method | None = None
        self.global_step = 0
        self.last: dict[str, float] = {}
        if aux is not None:
            self.attach_aux(aux)

    @classmethod
    def from_job(
        cls, model: MultimodalNet, task: Task, job: JobConfig, sink: Sink | None = None, dist: Dist | None = None
    ) -> Stepper:
        """The Stepper of a resolved job: its method settings and trainer settings as they are."""
        t = job.trainer
        return cls(
            model,
            task,
            job.method,
            job.method_settings,
            lr=t.lr,
            aux_lr_ratio=t.aux_lr_ratio,
            clip=t.clip,
            log_every=t.log_every,
            sink=sink,
            optimizer_name=t.optimizer,
            weight_decay=t.weight_decay,
            momentum=t.momentum,
            aux_optimizer_name=t.aux_optimizer,
            aux_weight_decay=t.aux_weight_decay,
            precision=t.precision,
            resolved=True,
            dist=dist,
        )

    # -- set-up --------------------------------------------------------------------------------
    def attach_aux(self, aux: AuxHeads) -> None:
        """Use these aux heads (with their own optimizer) and build the method around them."""
        self.aux = aux
        self.aux_optimizer = make_optimizer(
            self.aux_optimizer_name, aux.parameters(), self.aux_lr, self.aux_weight_decay, self.momentum
        )
        self.method = METHODS[self.method_name](self.method_cfg, self.model, aux, self.task)
        self.method.dist = self.dist

    # -- the step ------------------------------------------------------------------------------
    def step(
        self,
        xs: Mapping[str, torch.Tensor],
        y: torch.Tensor,
        masks: Mapping[str, torch.Tensor] | None = None,
        share: float | None = None,
    ) -> dict[str, float]:
        """One optimisation step; returns the logged values on logging steps, {} otherwise.

        With several processes (`dist`), (xs, y) is this rank's slice of the global batch and `share`
        its fraction n_r / N of the samples (None: equal slices); ε, every method's batch statistics
        and the gradients are all-reduced, so every rank takes the step one process would take on
        the global batch (cggm_core/distributed.py)."""
        dist = self.dist
        share = 1.0 / dist.world if share is None else share
        self.global_step += 1
        step = self.global_step
        log = self.log_every > 0 and step % self.log_every == 0
        model, task = self.model, self.task
        masks = dict(masks or {})
        model.train()
        amp = self.amp
        with amp.autocast():  # the forward, the losses and the method's extra forward work
            feats = model.encode(xs, masks)  # h_m: (B, D_m), (B, T, D) or (B, C, h, w)
            if self.aux is None:
                self.attach_aux(model.make_aux(feats))
            assert self.aux is not None and self.method is not None and self.aux_optimizer is not None
            method = self.method
            pred = method.predict(feats, masks=masks)
            task_loss = task.loss(pred, y)
            aux_logits = self.aux(feats, masks)  # heads read sg(h_m)
            aux_losses = {m: task.loss(z, y) for m, z in aux_logits.items()}
            eps = {m: task.metric(z, y) for m, z in aux_logits.items()}
            if dist.enabled:  # ε of the global batch: B and every coefficient the same on every rank
                # In float64 and back: the global k/N rounds as one process's float32 k/N does.
                reduced = dist.mean(torch.stack([e.double() for e in eps.values()]), share)
                eps = {m: r.to(eps[m].dtype) for m, r in zip(eps, reduced.unbind(), strict=True)}
            state = StepState(step, log, xs, y, feats, pred, task_loss, aux_logits, aux_losses, eps, masks, share=share)
            extra = method.before_backward(state)
        if log and not state.cos:
            reduce = (lambda g: dist.mean(g, share)) if dist.enabled else None
            state.cos = probe.gradient_cosines(model, self.aux, task_loss, aux_losses, reduce=reduce)
        loss = task_loss if extra is None else task_loss + extra

        self.aux_optimizer.zero_grad(set_to_none=True)
        aux_total = torch.stack(list(aux_losses.values())).sum()
        norms: dict[str, torch.Tensor] = {}
        norms_mod: dict[str, torch.Tensor] = {}
        coef: dict[str, torch.Tensor | float] = {}
        # θ before any pass: `update_norm/<m>` is the whole step's move (MLA makes one pass per modality).
        before = probe.encoder_snapshot(model) if log else {}

        # Most methods make one pass; the next pass is built after this one's optimizer step.
        for i, p in enumerate(amp.each(method.passes(state, loss))):
            self.optimizer.zero_grad(set_to_none=True)
            # The aux losses ride on the first backward; they reach only the aux heads (detached input).
            amp.backward(p.loss + aux_total if i == 0 else p.loss)
            if dist.enabled:  # before the method reads or scales them; the aux heads' only on the first pass
                dist.reduce_grads([*model.parameters(), *(self.aux.parameters() if i == 0 else ())], share)
            # fp16: true gradients before the probe, the method and the clip read or scale them. After the
            # all-reduce, so every rank sees the same inf/NaN and skips the same steps.
            amp.unscale_(self.optimizer, *([self.aux_optimizer] if i == 0 else []))
            if log:
                norms.update({m: probe.grad_norm(model.encoder_params(m)) for m in p.modalities})
            coef.update(method.modulate(state))
            if log:
                norms_mod.update({m: probe.grad_norm(model.encoder_params(m)) for m in p.modalities})
            if self.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
            amp.step(self.optimizer)
            if i == 0:  # the aux heads' gradients are all in (their losses rode on this backward)
                amp.step(self.aux_optimizer)
            amp.update()  # per pass: a scaler unscales an optimizer once between updates
        if not log:
            return {}
        values = self._collect(state, loss, coef, norms, norms_mod, probe.update_norms(model, before))
        self.last = values
        if self.sink is not None:
            log_dict(self.sink, values, step)
        return values

    def step_batch(self, batch: Batch) -> dict[str, float]:
        """A step on a global batch: with several processes, on this rank's slice of it."""
        local, share = self.dist.shard(batch)
        return self.step(local.xs, local.y, local.masks, share=share)

    def _collect(
        self,
        state: StepState,
        loss: torch.Tensor,
        coef: Mapping[str, torch.Tensor | float],
        norms: Mapping[str, torch.Tensor],
        norms_mod: Mapping[str, torch.Tensor],
        updates: Mapping[str, torch.Tensor],
    ) -> dict[str, float]:
        task = self.task
        tensors: dict[str, torch.Tensor | float] = {
            "train/loss": state.task_loss.detach(),
            f"train/{task.metric_name}": task.metric(state.pred.detach(), state.y),
            "loss/total": loss.detach(),
            "lr": float(self.optimizer.param_groups[0]["lr"]),  # the model's, as its schedule set it
        }
        for m in self.model.modalities:
            tensors[f"acc/{m}"] = state.eps[m]
            tensors[f"loss/aux/{m}"] = state.aux_losses[m].detach()
            tensors[f"grad_norm/{m}"] = norms[m]
            tensors[f"grad_norm_mod/{m}"] = norms_mod[m]
            tensors[f"update_norm/{m}"] = updates[m]
            tensors[f"cos/{m}"] = state.cos[m]
            c = coef[m]
            tensors[f"coef/{m}"] = c.detach() if isinstance(c, torch.Tensor) else float(c)
        tensors.update(state.scalars)
        tensors.update(state.slice_means)
        if self.dist.enabled:  # the slice's means become the global batch's (one all-reduce)
            local = ["train/loss", f"train/{task.metric_name}", "loss/total"]
            local += [f"loss/aux/{m}" for m in self.model.modalities] + list(state.slice_means)
            stacked = torch.stack([torch.as_tensor(tensors[k]).detach().float().reshape(()) for k in local])
            tensors.update(zip(local, self.dist.mean(stacked, state.share).unbind(), strict=True))
        scale = self.amp.grad_scale()
        if scale is not None:
            tensors["amp/grad_scale"] = scale  # halves on each step the scaler skipped (inf/NaN)
        values = self._to_floats(tensors, state.task_loss.device)
        active = self.method.active_modalities if self.method else self.model.modalities
        values.update(
            probe.imbalance(
                {m: values[f"acc/{m}"] for m in self.model.modalities},
                {m: values[f"grad_norm/{m}"] for m in active},
            )
        )
        return values

    @staticmethod
    def _to_floats(tensors: Mapping[str, torch.Tensor | float], device: torch.device) -> dict[str, float]:
        """All of a step's numbers with one device sync: device tensors are stacked and read once;
        host tensors and plain floats need none (a `.cpu()` per tensor would sync once each)."""
        on_device = [k for k, t in tensors.items() if isinstance(t, torch.Tensor) and t.device == device]
        values: dict[str, float] = {}
        if on_device:
            stacked = torch.stack([tensors[k].detach().float().reshape(()) for k in on_device])  # type: ignore[union-attr]
            values.update(zip(on_device, stacked.tolist(), strict=True))
        for k, t in tensors.items():
            if k not in values:
                values[k] = float(t.detach().float()) if isinstance(t, torch.Tensor) else float(t)
        return {k: values[k] for k in tensors}  # keys in their logging order

    # -- checkpointing -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        assert self.aux is not None and self.method is not None and self.aux_optimizer is not None
        return {
            "model": self.model.state_dict(),
            "aux": self.aux.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict(),
            "method": self.method.state_dict(),
            "global_step": self.global_step,
            "amp": self.amp.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any], aux: AuxHeads) -> None:
        self.attach_aux(aux)
        assert self.aux is not None and self.method is not None and self.aux_optimizer is not None
        self.model.load_state_dict(state["model"])
        self.aux.load_state_dict(state["aux"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.aux_optimizer.load_state_dict(state["aux_optimizer"])
        self.method.load_state_dict(state["method"])
        self.amp.load_state_dict(state.get("amp"))
        self.global_step = int(state["global_step"])


def param_groups(
    model: torch.nn.Module, groups: list[tuple[list[torch.nn.Parameter], float]], lr: float
) -> list[dict[str, Any]] | Any:
    """The model's parameters, or optimizer groups when a method gives some parts an lr multiplier:
    the rest first (group 0 keeps the base lr), then each part at lr × multiplier. Each group
    records its multiplier as `lr_scale`, so that a schedule setting the lr can keep the ratio."""
    if not groups:
        return model.parameters()
    taken = {id(p) for params, _ in groups for p in params}
    rest = [p for p in model.parameters() if id(p) not in taken]
    out: list[dict[str, Any]] = [{"params": rest, "lr": lr, "lr_scale": 1.0}] if rest else []
    out += [{"params": params, "lr": lr * scale, "lr_scale": scale} for params, scale in groups if params]
    return out


def make_optimizer(
    name: str, params: Any, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (with `momentum`; the official BraTS: 0.9) over `params`: parameters, or
    optimizer group dicts (each with its own "params" and "lr")."""
    params = list(params)
    flat = [q for g in params for q in g["params"]] if params and isinstance(params[0], dict) else params
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        # Fused Adam: one kernel for all parameters. Measured 3.5x faster than the default
        # per-tensor loop on the CPU (bench/step_time.py), where Adam was half of a training step.
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in flat)
        return cls(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; allowed: adam, adamw, sgd")
