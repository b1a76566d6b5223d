"""The segmentation task's linear probe head (imported when a probe is built: it needs torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvProbe(nn.Module):
    """The segmentation probe: a 1×1 convolution on frozen feature maps, upsampled to the label size."""

    def __init__(self, channels: int, classes: int, size: tuple[int, ...]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, classes, kernel_size=1)
        self.size = size

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        logits = self.conv(feats)  # (B, C, h, w)
        if tuple(logits.shape[-2:]) != self.size:
            logits = F.interpolate(logits, size=self.size, mode="bilinear", align_corners=False)
        return logits  # (B, C, H, W)
