"""A small ResNet encoder for one image modality (the `cnn` and `segnet` models share it).

    x (B, C_in, H, W) → stem: 3×3 conv, BN, ReLU                        (B, w, H, W)
                      → body: `stages` stages of `blocks` basic blocks; stage i has width
                        w·2^i and halves the resolution (stride 2) for i ≥ 1
                                                                        (B, w·2^(S−1), H/2^(S−1), W/2^(S−1))
                      → (pool=True) global average pooling              (B, w·2^(S−1))

The split into `stem` and `body` is what CGGM's `reference` variant reads (`MultimodalNet.
encoder_body_params` scales only `.body`): the official code leaves each modality's input
projection unscaled and scales the encoder after it (zrguo/CGGM src/msatrain.py: `encoders.{i}`
is scaled, the per-modality input projection `proj[i]` is not), so our stem plays the part of that
input projection. `paper` and `stable` scale the whole encoder, stem included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """ResNet's basic block: 3×3 conv, BN, ReLU, 3×3 conv, BN, plus the shortcut, then ReLU.

    The shortcut is the identity, or a strided 1×1 conv and BN when the width or resolution changes.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """φ_m for an image modality: `stem` then `body` (see the module docstring); maps or pooled vectors."""

    def __init__(self, in_channels: int, width: int, stages: int, blocks: int, pool: bool) -> None:
        super().__init__()
        if min(in_channels, width, stages, blocks) < 1:
            raise ValueError(
                f"in_channels, width, stages and blocks must be ≥ 1, got {in_channels}, {width}, {stages}, {blocks}"
            )
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        layers: list[nn.Module] = []
        c = width
        for i in range(stages):
            c_out = width * 2**i
            for j in range(blocks):
                layers.append(BasicBlock(c, c_out, stride=2 if i > 0 and j == 0 else 1))
                c = c_out
        self.body = nn.Sequential(*layers)
        self.out_channels = c
        self.stride = 2 ** (stages - 1)  # input pixels per feature-map pixel, per side
        self.pool = pool
        init_resnet_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.stem(x))  # (B, C, H/stride, W/stride)
        return h.mean(dim=(2, 3)) if self.pool else h  # (B, C) pooled, or the map


def init_resnet_(module: nn.Module) -> None:
    """He initialisation of the convolutions (fan-out, as torchvision's ResNet); BN starts as the identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
