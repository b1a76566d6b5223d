"""A mini-batch as every part of the training step sees it, and the collate that makes one.

    Batch.xs[m]     (B, D) vectors, (B, T, D) sequences, (B, C, H, W) images — per modality
    Batch.y         (B,) class ids, (B, K) regression targets, (B, H, W) label maps
    Batch.masks[m]  (B, T) bool, True at real positions, for sequence modalities that were padded
    Batch.groups    (B,) int64, the volume/case a sample belongs to (per-volume evaluation)

A modality without a mask has no padding. `pad_collate` builds a Batch from samples of
variable-length sequences: it pads each to the longest in the batch (zeros) and records the mask.
Token ids (T,) int64 pad the same way, with id 0 (the padding id) and their dtype kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
else:
    from ._lazy import torch


@dataclass
class Batch:
    xs: dict[str, torch.Tensor]
    y: torch.Tensor
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    groups: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            {m: x.to(device, non_blocking=non_blocking) for m, x in self.xs.items()},
            self.y.to(device, non_blocking=non_blocking),
            {m: k.to(device, non_blocking=non_blocking) for m, k in self.masks.items()},
            None if self.groups is None else self.groups.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) on custom batch types."""
        return Batch(
            {m: x.pin_memory() for m, x in self.xs.items()},
            self.y.pin_memory(),
            {m: k.pin_memory() for m, k in self.masks.items()},
            None if self.groups is None else self.groups.pin_memory(),
        )


def _tensor(a: Any) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    arr = np.asarray(a)
    # (np.ascontiguousarray would turn a 0-d label into shape (1,); copy only what is not contiguous.)
    return torch.from_numpy(arr if arr.flags.c_contiguous else arr.copy())


def pad_collate(samples: Sequence[tuple[Mapping[str, Any], Any] | tuple[Mapping[str, Any], Any, int]]) -> Batch:
    """Samples (xs, label[, group]) → Batch. Sequences (T_i, D) of unequal T_i are zero-padded at
    the end to the batch's longest and get a mask; equal shapes are stacked as they are."""
    first = samples[0][0]
    xs: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for m in first:
        parts = [_tensor(s[0][m]) for s in samples]
        shapes = {tuple(p.shape) for p in parts}
        if len(shapes) == 1:
            xs[m] = torch.stack(parts).float() if parts[0].is_floating_point() else torch.stack(parts)
            continue
        ids = all(p.ndim == 1 and not p.is_floating_point() for p in parts)  # (T,) token ids
        if not ids and (any(p.ndim != 2 for p in parts) or len({p.shape[1] for p in parts}) != 1):
            raise ValueError(
                f"modality {m!r}: samples differ in shape {sorted(shapes)}; only (T, D) sequences and (T,) ids pad"
            )
        lengths = torch.tensor([p.shape[0] for p in parts])
        t_max = int(lengths.max())
        if ids:
            padded = torch.zeros(len(parts), t_max, dtype=torch.int64)  # (B, T), 0 = the padding id
        else:
            padded = torch.zeros(len(parts), t_max, parts[0].shape[1], dtype=torch.float32)  # (B, T, D)
        for i, p in enumerate(parts):
            padded[i, : p.shape[0]] = p
        xs[m] = padded
        masks[m] = torch.arange(t_max).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    labels = [_tensor(np.asarray(s[1])) for s in samples]
    y = torch.stack(labels)
    if y.is_floating_point():
        y = y.float()
    groups = torch.tensor([int(s[2]) for s in samples], dtype=torch.int64) if len(samples[0]) > 2 else None  # type: ignore[misc]
    return Batch(xs, y, masks, groups)
