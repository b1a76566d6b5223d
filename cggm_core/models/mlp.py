"""The MLP model for vector modalities: an MLP encoder per modality, concatenation, an MLP head."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import nn

from .base import ConcatFusion, MultimodalNet


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    dims = [in_dim] + [hidden] * layers
    blocks: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        blocks += [nn.Linear(a, b), nn.ReLU()]
    blocks.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*blocks)


class MLPEncoder(nn.Module):
    """`body` (the MLP trunk) then `proj` (a linear map to the fusion width).

    The split matters for CGGM's `reference` variant, which scales only the encoder body's
    gradients, as the official code does.
    """

    def __init__(self, in_dim: int, hidden: int, feat_dim: int, layers: int = 2) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        body: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            body += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*body)
        self.proj = nn.Linear(hidden, feat_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x))  # (B, feat_dim)


def build_mlp_net(
    in_dims: Mapping[str, int], hidden: int, feat_dim: int, head_hidden: int, out_dim: int
) -> MultimodalNet:
    encoders = {m: MLPEncoder(d, hidden, feat_dim) for m, d in in_dims.items()}
    head = nn.Sequential(nn.Linear(feat_dim * len(in_dims), head_hidden), nn.ReLU(), nn.Linear(head_hidden, out_dim))
    return MultimodalNet(encoders, head, ConcatFusion(), feat_dims={m: feat_dim for m in in_dims})
