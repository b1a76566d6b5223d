"""The file-backed path's DataLoader: a torch Dataset over a sample source, the in-memory order,
seeded workers, the padding collate. Imported only when a run reads a file-backed split."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import numpy as np
import torch
import torch.utils.data

from ..batch import Batch, pad_collate


class SampleSource(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[Mapping[str, Any], Any]: ...


class Samples(torch.utils.data.Dataset):
    """A torch Dataset over a sample source; adds the sample's group when there is one."""

    def __init__(self, source: SampleSource, groups: np.ndarray | None) -> None:
        self.source = source
        self.groups = groups

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        xs, label = self.source[i]
        return (xs, label) if self.groups is None else (xs, label, int(self.groups[i]))


class InMemoryOrder(torch.utils.data.Sampler[int]):
    """The in-memory path's order: randperm(n, generator) when shuffling, arange otherwise."""

    def __init__(self, n: int, generator: torch.Generator | None) -> None:
        self.n = n
        self.generator = generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if self.generator is None:
            return iter(range(self.n))
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


class RankSlices(torch.utils.data.Sampler[list[int]]):
    """One rank's part of each global batch of `order` (several processes, cggm_core/distributed.py):
    its contiguous slice, or the batch's first sample when the slice is empty (a rank that runs it
    gives it weight 0). The DataLoader then reads and collates only this rank's samples."""

    def __init__(self, order: InMemoryOrder, batch_size: int, rank: int, world: int) -> None:
        self.order = order
        self.batch_size = batch_size
        self.rank = rank
        self.world = world

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        from ..distributed import slice_bounds

        idx = list(self.order)
        for i in range(0, len(idx), self.batch_size):
            chunk = idx[i : i + self.batch_size]
            start, end = slice_bounds(len(chunk), self.world, self.rank)
            yield chunk[start:end] if end > start else chunk[:1]


def seed_worker(worker_id: int) -> None:
    # The DataLoader seeds each worker's torch RNG from its generator; numpy and random follow it, so
    # augmentation inside a sample source is reproducible per (seed, worker).
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    source: SampleSource,
    groups: np.ndarray | None,
    batch_size: int,
    generator: torch.Generator | None,
    num_workers: int,
    pin_memory: bool,
    seed: int,
    shard: tuple[int, int] | None = None,
) -> torch.utils.data.DataLoader[Batch]:
    """`shard` = (rank, world): only that rank's slice of each global batch (`RankSlices`)."""
    order = InMemoryOrder(len(source), generator)
    batching: dict[str, Any] = (
        {"batch_size": batch_size, "sampler": order}
        if shard is None
        else {"batch_sampler": RankSlices(order, batch_size, *shard)}
    )
    return torch.utils.data.DataLoader(
        Samples(source, groups),
        **batching,
        collate_fn=pad_collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker if num_workers else None,
        generator=torch.Generator().manual_seed(seed),
    )
