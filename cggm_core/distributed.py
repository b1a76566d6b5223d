"""One job over several processes (torch.distributed): the plumbing the trainer and the methods share.

    dist = from_env(device)            # LOCAL (one process, every call a no-op) or a ProcessGroupDist
    local, share = dist.shard(batch)   # this rank's contiguous slice of the global batch, n_r / N
    eps = dist.mean(eps, share)        # a per-sample mean over the global batch, on every rank
    dist.reduce_grads(params, share)   # after each backward, before a method reads or scales them

The convention that makes an N-process step equal to the one-process step on the same global
batch: every rank runs the step on its slice as if the slice were the batch (its losses and
statistics are per-sample means over the slice, weighted later by `share` = n_r / N), and each
quantity a method computes *from* the batch is all-reduced before it is used: per-sample means with
`mean` (Σ_r share_r · x_r), batch sums with `sum` (Σ_r x_r), gradients with `reduce_grads` (the same weighted
sum). A batch statistic that enters the loss with its graph (CGGM's g_Ω) goes through `mean_grad`,
whose backward is the identity: the weight is applied once, by `reduce_grads`, so the gradient of
f(Σ_r w_r g_r) summed over ranks is exactly f'(g)·Σ_r w_r ∂g_r/∂θ.

Why not `DistributedDataParallel`'s wrapper: its reducer is armed by its own `forward()` and
averages in one backward per forward, while our step calls the model's parts (`encode`, `fuse`,
`head_last_layer`), MLA makes one backward per modality, CGGM and MMPareto take `autograd.grad`
(which DDP's hooks never see) and several methods need batch statistics reduced before the
backward. One bucketed all-reduce of every gradient after each backward (what DDP's buckets do,
without overlapping communication with the backward) is exact for all of them. Parameters and
buffers start from rank 0's (`broadcast_module`), as DDP's constructor does.

What each method reduces (everything else is computed from reduced values, or from weights that
are the same on every rank): every method, ε (the Stepper) and the gradients after each backward;
`cggm` (`paper`, `stable`) g_Ω with its graph and each g_m (`reference` reads weights only);
`ogm_ge` and `pmr` their per-modality scores (batch sums; PMR's prototypes are computed from the
same batches on every rank and taken from rank 0); `agm` its scores (batch means), its hooks
then scale identical coefficients; `mmpareto` g_uni (autograd.grad of a slice mean); `mla` the
mean input of the shared head's last layer (its projector), one reduction per pass, as each pass
has its own backward; `gblending` estimates on every rank and takes rank 0's G and O; `uniform`,
`mslr`, `unimodal`, `joint` need nothing beyond the gradients. Logged per-slice means (losses,
MLA's fusion weights) are reduced on logging steps (`StepState.slice_means`). Exact as long as the
loss is a mean over samples; a pooled loss (segmentation's soft Dice, a class-weighted CE) becomes
the mean of the slices' losses, as under DDP.

`LOCAL` is the one-process version: `shard` returns the batch and 1.0, every reduction returns its
input; the single-process path pays one attribute lookup per call and nothing else.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .batch import Batch
else:
    from ._lazy import torch

DEFAULT_TIMEOUT_S = 600.0  # a collective that waits longer fails the run (a dead or hung peer): no hang
ENV_TIMEOUT = "CGGM_DIST_TIMEOUT_S"


def slice_bounds(n: int, world: int, rank: int) -> tuple[int, int]:
    """[start, end) of rank's contiguous slice of n samples: the first n % world ranks hold one more."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def slice_shares(n: int, batch_size: int, world: int, rank: int) -> list[float]:
    """n_r / N of rank's slice of each global batch of n samples in batches of batch_size (0 when empty)."""
    out = []
    for i in range(0, n, batch_size):
        size = min(batch_size, n - i)
        start, end = slice_bounds(size, world, rank)
        out.append((end - start) / size)
    return out


class Dist:
    """One process: rank 0 of 1. Every collective is the identity (no cost on the single-process path)."""

    rank = 0
    world = 1
    local_rank = 0
    enabled = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: Batch) -> tuple[Batch, float]:
        """This rank's slice of a global batch and its share n_r / N of the samples."""
        return batch, 1.0

    def mean(self, x: torch.Tensor, share: float) -> torch.Tensor:
        """Σ_r share_r · x_r: the global batch's value of a per-sample mean (no graph)."""
        return x

    def sum(self, x: torch.Tensor, share: float) -> torch.Tensor:
        """Σ_r x_r: the global batch's value of a batch sum (no graph); a borrowed slice (share 0) adds 0."""
        return x

    def mean_grad(self, x: torch.Tensor, share: float) -> torch.Tensor:
        """`mean` with its graph kept: backward is the identity (the weight comes from `reduce_grads`)."""
        return x

    def reduce_grads(self, params: Iterable[torch.nn.Parameter], share: float) -> None:
        """Every gradient becomes Σ_r share_r · grad_r (in place), identical on every rank."""

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's flag on every rank (a Stop reaches every rank)."""
        return flag

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank."""

    def broadcast_tensors(self, tensors: Sequence[torch.Tensor]) -> None:
        """Rank 0's values of these tensors on every rank, in place."""

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        return [obj]

    def close(self, ok: bool = True) -> None:
        """Leave the group: `ok` after a run that ended normally on this rank."""
        return None


LOCAL = Dist()


_identity_backward_mean: Any = None


def _mean_identity_backward() -> Any:
    """The autograd Function of `mean_grad`, defined at first use (importing this module needs no torch)."""
    global _identity_backward_mean
    if _identity_backward_mean is None:

        class MeanWithIdentityBackward(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: torch.Tensor, share: float) -> torch.Tensor:
                out = x.detach() * share
                torch.distributed.all_reduce(out)
                return out

            @staticmethod
            def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None]:
                return grads[0], None

        _identity_backward_mean = MeanWithIdentityBackward
    return _identity_backward_mean


class ProcessGroupDist(Dist):
    """A rank of an initialised torch.distributed process group (gloo on the CPU, NCCL on CUDA)."""

    enabled = True

    def __init__(self, rank: int, world: int, local_rank: int, device: torch.device) -> None:
        self.rank = rank
        self.world = world
        self.local_rank = local_rank
        self.device = device

    def shard(self, batch: Batch) -> tuple[Batch, float]:
        n = len(batch)
        start, end = slice_bounds(n, self.world, self.rank)
        if end == start:
            # A last batch smaller than the world: this rank runs one borrowed sample with weight 0,
            # so that every rank makes the same collectives; it adds exactly nothing.
            start, end, share = 0, 1, 0.0
        else:
            share = (end - start) / n
        return _slice_batch(batch, start, end), share

    def mean(self, x: torch.Tensor, share: float) -> torch.Tensor:
        out = x.detach() * share
        torch.distributed.all_reduce(out)
        return out

    def sum(self, x: torch.Tensor, share: float) -> torch.Tensor:
        out = x.detach().clone() if share > 0 else torch.zeros_like(x)
        torch.distributed.all_reduce(out)
        return out

    def mean_grad(self, x: torch.Tensor, share: float) -> torch.Tensor:
        out: torch.Tensor = _mean_identity_backward().apply(x, share)
        return out

    def reduce_grads(self, params: Iterable[torch.nn.Parameter], share: float) -> None:
        # One flat buffer per dtype: one all-reduce instead of one per tensor (DDP's buckets).
        # Which parameters have a gradient is the same on every rank: they run the same code.
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in params:
            if p.grad is not None:
                by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            flat.mul_(share)
            torch.distributed.all_reduce(flat)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def broadcast_flag(self, flag: bool) -> bool:
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        torch.distributed.broadcast(t, src=0)
        return bool(t.item())

    def broadcast_module(self, module: torch.nn.Module) -> None:
        self.broadcast_tensors([*module.parameters(), *module.buffers()])

    def broadcast_tensors(self, tensors: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            for t in tensors:
                torch.distributed.broadcast(t.data, src=0)

    def gather_objects(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def close(self, ok: bool = True) -> None:
        """After a normal end, every rank meets at a barrier, then destroys the group together.

        Without the barrier, a rank that finished early (rank 0 still tests and probes) tore its
        gloo pairs down while its peer was still connected; under load that ended the early rank in
        std::terminate (SIGABRT) about once in a few dozen 2-process runs. After a failure there is
        no barrier (a peer may be dead: it would only wait out the timeout) and no collective
        destroy; the process exits and the group's parent ends the other ranks.
        """
        if not torch.distributed.is_initialized():
            return
        if ok:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def _slice_batch(batch: Batch, start: int, end: int) -> Batch:
    from .batch import Batch

    return Batch(
        {m: x[start:end] for m, x in batch.xs.items()},
        batch.y[start:end],
        {m: k[start:end] for m, k in batch.masks.items()},
        None if batch.groups is None else batch.groups[start:end],
    )


def env_world() -> int:
    """WORLD_SIZE as torchrun (or `cggm train --nproc-per-node`, or a worker's GPU slot) sets it; 1 if unset."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={raw!r} is not an integer") from None


def timeout_s() -> float:
    raw = os.environ.get(ENV_TIMEOUT)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{ENV_TIMEOUT}={raw!r}: expected a positive number of seconds")
    return value


def from_env(device: torch.device) -> Dist:
    """LOCAL when WORLD_SIZE is unset or 1; else join the process group torchrun describes
    (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): NCCL for a CUDA device, gloo otherwise,
    every collective bounded by $CGGM_DIST_TIMEOUT_S (default 600 s)."""
    world = env_world()
    if world <= 1:
        return LOCAL
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with torchrun")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s())
        )
    return ProcessGroupDist(rank, world, local_rank, device)


def rank_device(device: str) -> str:
    """The device of this rank: with several ranks on CUDA, cuda:LOCAL_RANK (each rank its own GPU)."""
    if env_world() > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device
