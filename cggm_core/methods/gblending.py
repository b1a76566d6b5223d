"""G-Blending, online (Wang, Tran & Feiszli, "What Makes Training Multi-modal Classification
Networks Hard?", CVPR 2020), with super-epochs.

The model is trained on a blend of the fused loss and one loss per modality,

    L = w_fused · L_task + Σ_m w_m · ℓ(f_m(h_m), y),

the weights re-estimated at the start of every super-epoch (`gblend_super_epoch` epochs) from the
overfitting-to-generalisation behaviour of each head, the paper's online G-Blend:

* A held-out part V of the training split (`gblend_holdout`, a seeded draw with the data seed;
  the trainer never trains on it) stands in for the true distribution, T is the rest.
* For each k in {fused, every modality}: a copy of the current model is trained for one
  super-epoch on T with k's loss alone: the fused loss (every parameter), or ℓ(f_k(φ_k(x_k)), y)
  (encoder k and a copy of aux head k). Before and after, in evaluation mode, its mean loss on T
  and on V is measured:
      G_k = L_V(before) − L_V(after)                              (generalisation gained)
      O_k = (L_V − L_T)(after) − (L_V − L_T)(before)              (overfitting gained)
      w_k ∝ max(G_k, 0) / O_k²,   Σ_k w_k = 1
  (the paper's w* ∝ G/O², normalised). The copies train with a fresh optimizer of the trainer's
  kind, lr, weight decay and clip, with their own seeded shuffles, and inside `fork_rng`: the
  estimate leaves the run's random stream (dropout draws) as it was.
* Between estimates the weights are fixed; coef/<m> = w_m, and every estimate logs
  gblend/weight/<k>, gblend/G/<k>, gblend/O/<k> (k = fused or a modality).

Sources. Facebook's code (facebookresearch/VMZ at 4cc542d) has only the blended loss with fixed,
hand-entered weights — c2/lib/models/loss/loss_creator.py `add_weighted_loss` (lines 119–200:
a_loss·audio_weight + v_loss·visual_weight + av_loss·av_weight) with one extra fc head per
modality (c2/lib/models/audio_visual_model.py lines 483–497) — and a table of weights the paper
estimated (c2/tutorials/gradient_blending.md); the weight estimation is not published. It follows
the paper's algorithm (G-Blend weight estimation, applied every super-epoch in the online variant).
Checked against GeWu-Lab/BalanceBenchmark (4c1482f, balancemm/trainer/GBlending_trainer.py
`super_epoch_origin`), a re-implementation, where we depart: it takes |G/O²| (a modality whose
held-out loss *rose* still gets weight; we give it 0), and it compares running sums of batch
losses over a training epoch with sums over validation batches (different counts); we measure
both losses as per-sample means of the checkpoint in evaluation mode.

Where we depart from the paper: the unimodal heads are our aux heads (a linear head per modality
in the paper and in VMZ). As in `uniform`, the unimodal loss reaches encoder m only (the head's
parameters held constant) and the aux heads keep training as the probe does, so acc/<m> means
the same under every method. If every G_k ≤ 0 (nothing generalises) the weights are equal.
Outside the trainer (a user's own Stepper loop, no epochs) the weights stay equal, 1/(M+1).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ..batch import Batch
    from ..data.base import DataSplit
    from ..models import AuxHeads, MultimodalNet
else:
    from .._lazy import torch

from ..settings import Setting
from ..tasks import Task
from .base import EpochContext, Method, Pass, StepState
from .uniform import unimodal_losses

FUSED = "fused"
TINY = 1e-12  # floors O² so that an unchanged overfitting gap gives a large, finite weight


def blend_weights(gain: Mapping[str, float], overfit: Mapping[str, float]) -> dict[str, float]:
    """w_k = max(G_k, 0) / max(O_k², TINY), normalised to sum 1; equal weights when every G_k ≤ 0."""
    raw = {k: max(gain[k], 0.0) / max(overfit[k] ** 2, TINY) for k in gain}
    total = sum(raw.values())
    if not total > 0 or not math.isfinite(total):
        return {k: 1.0 / len(raw) for k in raw}
    return {k: v / total for k, v in raw.items()}


def gain_and_overfit(before: tuple[float, float], after: tuple[float, float]) -> tuple[float, float]:
    """(G, O) from (L_T, L_V) before and after training: G = ΔL_V decrease, O = change of L_V − L_T."""
    (t0, v0), (t1, v1) = before, after
    return v0 - v1, (v1 - t1) - (v0 - t0)


class GBlending(Method):
    name = "gblending"
    help = "G-Blending (CVPR 2020), online: fused + unimodal losses weighted by G/O² re-estimated every super-epoch"
    settings = [
        Setting(
            "gblend_super_epoch",
            "int",
            10,
            "epochs per super-epoch: the weights are re-estimated at its start, by training a copy "
            "for this many epochs per head (BalanceBenchmark's default: 10)",
            min=1,
            max=10_000,
        ),
        Setting(
            "gblend_holdout",
            "float",
            0.1,
            "fraction of the training split held out (never trained on) to measure each head's generalisation",
            min=0.01,
            max=0.5,
        ),
    ]

    @classmethod
    def holdout_fraction(cls, cfg: Mapping[str, Any]) -> float:
        return float(cfg["gblend_holdout"])

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        self.super_epoch: int = self.cfg["gblend_super_epoch"]
        keys = [FUSED, *self.modalities]
        self.weights: dict[str, float] = {k: 1.0 / len(keys) for k in keys}

    # -- the weights -----------------------------------------------------------------------------
    def on_epoch_start(self, ctx: EpochContext) -> dict[str, float]:
        if (ctx.epoch - 1) % self.super_epoch:
            return {}
        if ctx.heldout is None:
            raise ValueError("gblending needs the trainer's held-out part of train (holdout_fraction > 0)")
        gain, overfit = self.estimate(ctx)
        # Every rank estimates on the whole split with the same seeds; rank 0's figures are taken
        # so that a non-deterministic kernel (CUDA) cannot leave the ranks with different weights.
        gain, overfit = self.dist.gather_objects((gain, overfit))[0]
        self.weights = blend_weights(gain, overfit)
        out: dict[str, float] = {}
        for k in self.weights:
            out[f"gblend/weight/{k}"] = self.weights[k]
            out[f"gblend/G/{k}"] = gain[k]
            out[f"gblend/O/{k}"] = overfit[k]
        return out

    def estimate(self, ctx: EpochContext) -> tuple[dict[str, float], dict[str, float]]:
        """(G_k, O_k) for every head k, each from one super-epoch of training a copy on k's loss."""
        assert ctx.heldout is not None
        device = next(self.model.parameters()).device
        gain: dict[str, float] = {}
        overfit: dict[str, float] = {}
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for i, k in enumerate([FUSED, *self.modalities]):
                torch.manual_seed(ctx.seed * 7919 + ctx.epoch * 131 + i)
                net = copy.deepcopy(self.model)
                heads = copy.deepcopy(self.aux)
                loss_of = self.head_loss(k, net, heads)
                params = (
                    list(net.parameters()) if k == FUSED else [*net.encoder_params(k), *heads.heads[k].parameters()]
                )
                opt = ctx.make_optimizer(params)
                before = self.train_and_heldout_loss(loss_of, ctx, net, heads)
                for e in range(self.super_epoch):
                    gen = torch.Generator().manual_seed(ctx.seed * 1_000_003 + ctx.epoch * 1009 + i * 97 + e)
                    for batch in ctx.train.batches(ctx.batch_size, generator=gen):
                        opt.zero_grad(set_to_none=True)
                        loss_of(batch).backward()
                        if ctx.clip > 0:
                            torch.nn.utils.clip_grad_norm_(params, ctx.clip)
                        opt.step()
                after = self.train_and_heldout_loss(loss_of, ctx, net, heads)
                gain[k], overfit[k] = gain_and_overfit(before, after)
        return gain, overfit

    def head_loss(self, k: str, net: MultimodalNet, heads: AuxHeads) -> Callable[[Batch], torch.Tensor]:
        """The loss of head k on a batch, for the copies `net`, `heads` (with graph)."""
        task = self.task

        def fused(batch: Batch) -> torch.Tensor:
            return task.loss(net.fuse(net.encode(batch.xs, batch.masks), masks=batch.masks), batch.y)

        def unimodal(batch: Batch) -> torch.Tensor:
            mask = batch.masks.get(k)
            return task.loss(heads.head_forward(k, net.encode_one(k, batch.xs[k], mask), mask), batch.y)

        return fused if k == FUSED else unimodal

    def train_and_heldout_loss(
        self, loss_of: Callable[[Batch], torch.Tensor], ctx: EpochContext, *modules: torch.nn.Module
    ) -> tuple[float, float]:
        """(L_T, L_V): the copy's mean loss on the training part and on the held-out part."""
        assert ctx.heldout is not None
        train = self.mean_loss(loss_of, ctx.train, ctx.batch_size, *modules)
        return train, self.mean_loss(loss_of, ctx.heldout, ctx.batch_size, *modules)

    @staticmethod
    def mean_loss(
        loss_of: Callable[[Batch], torch.Tensor], split: DataSplit, batch_size: int, *modules: torch.nn.Module
    ) -> float:
        """Per-sample mean loss over a split, in evaluation mode (the batch means weighted by size)."""
        for module in modules:
            module.eval()
        total, n = 0.0, 0
        with torch.no_grad():
            for batch in split.batches(batch_size):
                total += float(loss_of(batch)) * len(batch)
                n += len(batch)
        for module in modules:
            module.train()
        return total / max(n, 1)

    # -- the step --------------------------------------------------------------------------------
    def passes(self, state: StepState, loss: torch.Tensor) -> Iterator[Pass]:
        uni = unimodal_losses(self.aux, self.task, state.feats, state.y, state.masks, self.modalities)
        if state.log:
            state.slice_means.update({f"gblend/loss_uni/{m}": u.detach() for m, u in uni.items()})
        blended = self.weights[FUSED] * state.task_loss + sum(self.weights[m] * uni[m] for m in self.modalities)
        yield Pass(blended, self.modalities)

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        return {m: self.weights[m] for m in self.modalities}

    def state_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.weights = dict(state["weights"])
