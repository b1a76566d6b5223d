"""The probe (DESIGN §6): per-modality diagnostics that every method logs under the same keys.

Per-step quantities are computed only on logging steps (they cost autograd calls and device
syncs); validation contributions use exact Shapley values over zero-masked subsets; the end-of-run
linear probe trains a linear classifier on each frozen encoder (the OGM-GE protocol).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import torch

from .data.base import Split
from .models import AuxHeads, MultimodalNet
from .tasks import Task


def grad_norm(params: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack(norms))


def gradient_cosines(
    model: MultimodalNet, aux: AuxHeads, task_loss: torch.Tensor, aux_losses: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """cos(g_m, g_Ω): aux head m's last-layer gradient vs the task head's (DESIGN §4 step 5)."""
    head_w = model.head_last_layer().weight
    g_head = torch.autograd.grad(task_loss, head_w, retain_graph=True, allow_unused=True)[0]
    out: dict[str, torch.Tensor] = {}
    for m, loss in aux_losses.items():
        w = aux.last_layer(m).weight
        g = torch.autograd.grad(loss, w, retain_graph=True)[0]
        if g_head is None:
            out[m] = torch.zeros((), device=g.device)
        else:
            out[m] = torch.nn.functional.cosine_similarity(g.reshape(1, -1), g_head.reshape(1, -1), eps=1e-12)[0]
    return out


def imbalance(eps: Mapping[str, float], norms: Mapping[str, float]) -> dict[str, float]:
    out = {"imbalance/acc_gap": max(eps.values()) - min(eps.values())}
    lo = min(norms.values())
    hi = max(norms.values())
    out["imbalance/grad_ratio"] = hi / lo if lo > 0 else math.inf
    return out


def shapley_values(value: Callable[[frozenset[str]], float], players: Sequence[str]) -> dict[str, float]:
    """Exact Shapley values: φ_m = Σ_{S ⊆ N∖{m}} |S|!(n−|S|−1)!/n! · (v(S ∪ {m}) − v(S))."""
    n = len(players)
    cache: dict[frozenset[str], float] = {}

    def v(s: frozenset[str]) -> float:
        if s not in cache:
            cache[s] = value(s)
        return cache[s]

    out: dict[str, float] = {}
    for m in players:
        others = [p for p in players if p != m]
        total = 0.0
        for k in range(n):
            weight = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
            for subset in itertools.combinations(others, k):
                s = frozenset(subset)
                total += weight * (v(s | {m}) - v(s))
        out[m] = total
    return out


@torch.no_grad()
def evaluate(
    model: MultimodalNet,
    aux: AuxHeads,
    task: Task,
    split: Split,
    batch_size: int = 1024,
    keep: Sequence[str] | None = None,
    with_aux: bool = True,
) -> dict[str, float]:
    """Fused loss/metric (and each aux head's metric) on a split, batch-weighted."""
    model.eval()
    aux.eval()
    n = len(split)
    loss_sum = 0.0
    metric_sum = 0.0
    aux_sum = {m: 0.0 for m in model.modalities}
    for xs, y in split.batches(batch_size):
        feats = model.encode(xs)
        pred = model.fuse(feats, keep=keep)
        b = len(y)
        loss_sum += float(task.loss(pred, y)) * b
        metric_sum += float(task.metric(pred, y)) * b
        if with_aux:
            for m, z in aux(feats).items():
                aux_sum[m] += float(task.metric(z, y)) * b
    model.train()
    aux.train()
    out = {"loss": loss_sum / n, task.metric_name: metric_sum / n}
    if with_aux:
        out.update({f"{task.metric_name}/{m}": s / n for m, s in aux_sum.items()})
    return out


def contributions(
    model: MultimodalNet,
    aux: AuxHeads,
    task: Task,
    split: Split,
    max_modalities: int,
    active: Sequence[str] | None = None,
) -> dict[str, float]:
    """Shapley value of each modality for the fused metric; {} if there are too many modalities.

    The game is v(S) = fused metric with only S ∩ active kept (`active`: the modalities the
    method trains the fused model on; all by default). A modality outside `active` never changes
    v, so it is a null player with value exactly 0, and the others' values are those of the game
    on `active` alone: that is what is computed (2^|active| evaluations; `max_modalities` bounds
    |active|). For a `unimodal` run, φ_m = v({m}) − v(∅) and every other modality gets 0.
    """
    players = list(model.modalities if active is None else active)
    if len(players) > max_modalities:
        return {}

    def value(subset: frozenset[str]) -> float:
        return evaluate(model, aux, task, split, keep=sorted(subset), with_aux=False)[task.metric_name]

    values = shapley_values(value, players)
    return {m: values.get(m, 0.0) for m in model.modalities}


@torch.no_grad()
def _features(model: MultimodalNet, m: str, split: Split, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    parts = [model.encoders[m](xs[m]).reshape(len(y), -1) for xs, y in split.batches(batch_size)]
    model.train()
    return torch.cat(parts)


def linear_probe(
    model: MultimodalNet, task: Task, train: Split, test: Split, steps: int = 300, seed: int = 0
) -> dict[str, float]:
    """Linear classifier (or regressor) on each frozen encoder's features: train on train, score on test."""
    out: dict[str, float] = {}
    for m in model.modalities:
        f_train = _features(model, m, train)
        f_test = _features(model, m, test)
        mean, std = f_train.mean(0, keepdim=True), f_train.std(0, keepdim=True).clamp_min(1e-6)
        f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
        gen = torch.Generator().manual_seed(seed)
        with torch.enable_grad():
            lin = torch.nn.Linear(f_train.shape[1], task.num_outputs).to(f_train.device)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen).to(f_train.device) * 0.01)
                lin.bias.zero_()
            opt = torch.optim.Adam(lin.parameters(), lr=0.05)
            for _ in range(steps):  # full-batch: the features are small and fixed
                opt.zero_grad(set_to_none=True)
                loss = task.loss(lin(f_train), train.y) + 1e-4 * lin.weight.pow(2).sum()
                loss.backward()
                opt.step()
        with torch.no_grad():
            out[m] = float(task.metric(lin(f_test), test.y))
    return out
