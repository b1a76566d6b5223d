"""The `gated_mlp` network (torch): built on cggm_core's MultimodalNet, so every balancing method
and the per-modality probe work on it unchanged."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from cggm_core.models.base import ConcatFusion, MultimodalNet


class GatedEncoder(nn.Module):
    """`body` (Linear → GLU) then `proj`: CGGM's `reference` variant scales only `body`'s gradient."""

    def __init__(self, in_dim: int, hidden: int, feat_dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_dim, 2 * hidden), nn.GLU(dim=-1))  # (B, 2h) → (B, h)
        self.proj = nn.Linear(hidden, feat_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x))  # (B, feat_dim)


def build_gated_net(in_dims: Mapping[str, int], hidden: int, feat_dim: int, out_dim: int) -> MultimodalNet:
    encoders = {m: GatedEncoder(d, hidden, feat_dim) for m, d in in_dims.items()}
    # The head ends in nn.Linear: CGGM's W_Ω, and the default MLP aux heads take its shape.
    head = nn.Sequential(nn.Linear(feat_dim * len(in_dims), hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    return MultimodalNet(encoders, head, ConcatFusion(), feat_dims={m: feat_dim for m in in_dims})
