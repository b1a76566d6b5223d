"""MLA: Multimodal Learning with Alternating Unimodal Adaptation (Zhang, Yoon, Bansal & Yao, CVPR 2024).

Training alternates between modalities with a head shared by all of them. Each step is M passes,
one per modality in turn (`Method.passes`): the shared head on modality m alone, its loss, a
backward that reaches only encoder m and the head, the head's gradient modification, an optimizer
step; the next modality's pass is built on the updated head. At test time the unimodal outputs
are fused with weights from their uncertainty (`Method.predict`, also what the run logs and is
evaluated and Shapley-scored with):

    z_m = Ω(0…h_m…0)                         the shared head on modality m (the others zero-masked)
    pass m: L_m = ℓ(z_m, y);  backward;  ∇W ← ∇W·Pᵀ (the head's last layer);  step
    ŷ = Σ_m w_m z_m,   w = softmax_m(−H(softmax(z_m)))      (per sample; per pixel for segmentation)

The head's gradient modification is an orthogonal-weight-modification projector P (identity at the
start, shared by every modality, updated with each pass's mean input r of the head's last layer),
as the official `GSPlugin.before_update`: α = 0.1^(1 + b/n) for batch b of n in the epoch,
k = P rᵀ, P ← P − k kᵀ / (α + r k), P ← P / ‖P‖_F, ∇W ← ∇W Pᵀ, skipped at the very first pass.

Sources: Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation at ab6c184:
main.py lines 419–477 (the alternating passes: `out_a = fc_out(a)`, backward, `before_update`,
`optimizer.step()`, `zero_grad`, then the next modality), lines 65–106 (`calculate_entropy`,
`calculate_gating_weights`), lines 636–651 (the test-time fusion, `--dynamic`, else fixed
`av_alpha` = 0.5); utils/utils.py lines 12–41 (`GSPlugin`); models/basic_model.py line 32 (with
`gs_flag` the fusion head is one Linear on a single modality's 512-d feature). The official runs
use SGD (momentum 0.9, weight decay 1e-4, lr 1e-3, StepLR), main.py line 749.

Where we depart, and what the official code does:
* The shared head. The official head is one Linear on a modality's feature vector (the encoders
  share a width). Ours is the model's own fusion and head with the other modalities zero-masked,
  the same Ω(0…h_m…0) OGM-GE and AGM use, so MLA runs on every model; the projection acts on the
  head's last layer (W_Ω: an nn.Linear, or the 1×1 convolution of a segmentation decoder, whose
  input channels are projected), the layer every modality's pass shares. For a head that is a
  single Linear this is the official setting exactly.
* The projection, `mla_projection`: `owm` (default) is the update above with the scalar
  denominator α + r·k of orthogonal weight modification (P r rᵀ P / (α + rᵀ P r)). The official
  code computes `torch.mm(k, r)`, a D×D outer product, so its denominator is elementwise
  (α + k_i r_j): `official` reproduces that formula as written. And in the official main.py the
  projection never runs: `before_update` looks for a parameter named "module.weight" in the
  `fc_out` Linear, whose parameters are named "weight" and "bias" (utils/utils.py line 32), so no
  gradient is modified; `off` is that behaviour. (GeWu-Lab/BalanceBenchmark's MLA matches
  "weight" and adds the projected gradient to the raw one, ∇W ← ∇W + ∇W Pᵀ: a third reading.)
* The fusion, `mla_fusion`: `dynamic` is the paper's per-sample uncertainty weighting (entropy of
  each sample's class distribution; per pixel for segmentation). The official `calculate_entropy`
  takes the softmax over the *batch* dimension (`F.softmax(output, dim=0)`) and sums the entropy
  over the whole batch, so one weight per modality per batch, and a sample's prediction depends on
  the rest of its evaluation batch: `dynamic_batch` reproduces it. `fixed` averages (the official
  without `--dynamic`, av_alpha = 0.5). `auto` (default) is `dynamic`, and `fixed` for regression,
  whose point predictions have no entropy (`dynamic` is refused for regression).
* The official computes every modality's features once, before the first pass; so do we (encoder
  m's weights do not change before its own pass, as in the official). The aux heads' probe loss
  rides on the first pass. The Stepper clips each pass's gradient (the trainer's `clip`; the
  official does not clip).
coef/<m> is 1 (no per-modality coefficient); diagnostics mla/loss/<m> (pass m's loss) and
mla/fusion_weight/<m> (the batch mean of w_m in the step's fused prediction).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..models import AuxHeads, MultimodalNet
else:
    from .._lazy import nn, torch

from ..settings import Setting, SettingError
from ..tasks import Task
from .base import EpochContext, Method, Pass, StepState

FUSIONS = ("auto", "dynamic", "dynamic_batch", "fixed")
PROJECTIONS = ("owm", "official", "off")


def owm_update(p: torch.Tensor, r: torch.Tensor, alpha: float, official: bool = False) -> torch.Tensor:
    """One projector update: k = P rᵀ; P − k kᵀ / (α + r k), then divided by its Frobenius norm.

    `p` (D, D), `r` (1, D). `official`: the denominator as the official code writes it,
    α + k rᵀ... i.e. `torch.mm(k, r)`, a (D, D) matrix divided elementwise.
    """
    k = p @ r.T  # (D, 1)
    denom = alpha + (k @ r if official else r @ k)  # (D, D) elementwise, or (1, 1)
    p = p - (k @ k.T) / denom
    return p / torch.linalg.matrix_norm(p)


def project_(weight_grad: torch.Tensor, p: torch.Tensor) -> None:
    """∇W ← ∇W Pᵀ over W's input dimension: (out, D) for a Linear, (out, D, *kernel) for a conv."""
    if weight_grad.ndim == 2:
        weight_grad.copy_(weight_grad @ p.T)
    else:
        moved = weight_grad.movedim(1, -1)  # (out, *kernel, D)
        weight_grad.copy_((moved @ p.T).movedim(-1, 1))


def entropy_weights(outputs: list[torch.Tensor]) -> torch.Tensor:
    """Per sample (per pixel) fusion weights (M, B, 1, …): softmax over modalities of −H(softmax(z_m))."""
    entropies = []
    for z in outputs:
        logp = z.log_softmax(dim=1)
        entropies.append(-(logp.exp() * logp).sum(dim=1))  # (B, …)
    # exp(max_k e_k − e_m) / Σ_j exp(max_k e_k − e_j) (official gating) = softmax(−e)_m
    return torch.softmax(-torch.stack(entropies), dim=0).unsqueeze(2)


def batch_entropy_weights(outputs: list[torch.Tensor]) -> torch.Tensor:
    """The official `calculate_gating_weights`: softmax over the batch dimension, entropy summed over
    the whole batch, one weight per modality (M,), shaped to broadcast (M, 1, 1, …)."""
    entropies = []
    for z in outputs:
        logp = z.log_softmax(dim=0)
        entropies.append(-(logp.exp() * logp).sum())
    w = torch.softmax(-torch.stack(entropies), dim=0)  # (M,)
    return w.reshape(-1, *([1] * outputs[0].ndim))


class MLA(Method):
    name = "mla"
    help = (
        "MLA (CVPR 2024): alternating unimodal passes through a shared head, projected head gradients, entropy fusion"
    )
    settings = [
        Setting(
            "mla_fusion",
            "str",
            "auto",
            "test-time fusion: dynamic (per-sample entropy weights, the paper), dynamic_batch (the official code's "
            "batch-level entropy), fixed (equal weights), auto (dynamic; fixed for regression)",
            choices=FUSIONS,
        ),
        Setting(
            "mla_projection",
            "str",
            "owm",
            "shared-head gradient modification: owm (orthogonal weight modification), official (the official "
            "formula as written), off (what the official main.py runs: its projection never fires)",
            choices=PROJECTIONS,
        ),
    ]

    @classmethod
    def check_task(cls, task: str, cfg: Mapping[str, Any]) -> None:
        super().check_task(task, cfg)
        if task == "regression" and cfg["mla_fusion"] in ("dynamic", "dynamic_batch"):
            raise SettingError(
                f"setting 'mla_fusion': {cfg['mla_fusion']!r} weighs modalities by the entropy of their class "
                "probabilities, and regression has none; use fixed (or auto)"
            )

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        fusion = self.cfg["mla_fusion"]
        self.fusion: str = ("fixed" if task.name == "regression" else "dynamic") if fusion == "auto" else fusion
        self.projection: str = self.cfg["mla_projection"]
        self.head_layer = model.head_last_layer()
        self.head_layer.register_forward_pre_hook(self._capture_input)
        self._capturing = False
        self.head_input: torch.Tensor | None = None  # the last pass's input of W_Ω
        self.projector: torch.Tensor | None = None  # P (D, D), made at the first update
        self.updates = 0  # passes so far (the official `exp_count`)
        self.batch_in_epoch = 0
        self.batches_per_epoch: int | None = None  # known from the trainer's epoch hook
        self.last_weights: torch.Tensor | None = None  # (M,) batch-mean fusion weights of the last predict

    def _capture_input(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._capturing:
            self.head_input = args[0].detach()

    # -- test-time fusion ------------------------------------------------------------------------
    def predict(
        self,
        feats: Mapping[str, torch.Tensor],
        keep: Iterable[str] | None = None,
        masks: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        kept = [m for m in self.modalities if keep is None or m in set(keep)]
        if not kept:  # no modality: the head on zeros, as every method's v(∅)
            return self.model.fuse(feats, keep=[], masks=masks)
        outs = [self.model.fuse(feats, keep=[m], masks=masks) for m in kept]
        with torch.no_grad():
            if self.fusion == "fixed" or len(outs) == 1:
                w = torch.full((len(outs),) + (1,) * outs[0].ndim, 1.0 / len(outs), device=outs[0].device)
            elif self.fusion == "dynamic":
                w = entropy_weights(outs)
            else:
                w = batch_entropy_weights(outs)
            if len(kept) == len(self.modalities):
                self.last_weights = w.reshape(len(outs), -1).mean(dim=1)
        return torch.stack([wm * z for wm, z in zip(w, outs, strict=True)]).sum(dim=0)

    # -- training --------------------------------------------------------------------------------
    def on_epoch_start(self, ctx: EpochContext) -> dict[str, float]:
        self.batch_in_epoch = 0
        self.batches_per_epoch = math.ceil(len(ctx.train) / ctx.batch_size)
        return {}

    def passes(self, state: StepState, loss: torch.Tensor) -> Iterator[Pass]:
        for m in self.modalities:
            self._capturing = True
            z = self.model.fuse(state.feats, keep=[m], masks=state.masks)  # on the head as the last pass left it
            self._capturing = False
            loss_m = self.task.loss(z, state.y)
            if state.log:
                state.slice_means[f"mla/loss/{m}"] = loss_m.detach()
            yield Pass(loss_m, [m])
        self.batch_in_epoch += 1

    def alpha(self) -> float:
        """α = 0.1^(1 + b/n), b the batch's index in the epoch, n the epoch's batches (official)."""
        frac = self.batch_in_epoch / self.batches_per_epoch if self.batches_per_epoch else 0.0
        return 1.0 * 0.1 ** (frac + 1)

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        if self.projection != "off":
            self.project_head_gradient(state.share)
        self.updates += 1
        if state.log and self.last_weights is not None:
            state.slice_means.update(
                {f"mla/fusion_weight/{m}": w for m, w in zip(self.modalities, self.last_weights, strict=True)}
            )
        return dict.fromkeys(self.modalities, 1.0)

    def project_head_gradient(self, share: float = 1.0) -> None:
        grad = self.head_layer.weight.grad
        if self.head_input is None or grad is None:
            return
        x = self.head_input
        dims = [d for d in range(x.ndim) if d != (x.ndim - 1 if isinstance(self.head_layer, nn.Linear) else 1)]
        r = x.float().mean(dim=dims).reshape(1, -1)  # (1, D): the batch's mean input of W_Ω
        r = self.dist.mean(r, share)  # several processes: the global batch's
        if self.projector is None:
            self.projector = torch.eye(r.shape[1], device=r.device)
        if self.updates == 0:  # the official skips its very first update (`train_exp_counter != 0`)
            return
        self.projector = owm_update(self.projector.to(r.device), r, self.alpha(), self.projection == "official")
        project_(grad, self.projector.to(grad.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {
            "projector": self.projector,
            "updates": self.updates,
            "batch_in_epoch": self.batch_in_epoch,
            "batches_per_epoch": self.batches_per_epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.projector = state.get("projector")
        self.updates = int(state.get("updates", 0))
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        self.batches_per_epoch = state.get("batches_per_epoch")
