"""Small factories shared by the tests."""

from __future__ import annotations

import torch

from cggm_core.models import AuxHeads, MultimodalNet, build_mlp_net


def tiny_net(names: list[str], in_dim: int = 3, classes: int = 3) -> tuple[MultimodalNet, AuxHeads]:
    net = build_mlp_net({m: in_dim for m in names}, 8, 4, 6, classes)
    aux = AuxHeads({m: 4 for m in names}, 6, classes)
    return net, aux


def random_batch(
    names: list[str], n: int, classes: int, in_dim: int = 3
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    return {m: torch.randn(n, in_dim) for m in names}, torch.randint(0, classes, (n,))
