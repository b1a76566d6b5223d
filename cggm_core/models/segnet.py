"""The `segnet` model (BraTS style segmentation): a CNN encoder per modality, a shared decoder, and
one aux decoder per modality whose last layer has the shared decoder's shape.

    h_m = φ_m(x_m)                 ResNetEncoder, no pooling: (B, C_in, H, W) → (B, C, h, w)
    ŷ   = Ω([h_1 … h_M])           concatenation (B, M·C, h, w) → SegDecoder → (B, K, H, W)
    z_m = f_m(sg(h_m))             SegDecoder on one modality's map: (B, C, h, w) → (B, K, H, W)

with C = width·2^(stages−1) and (h, w) = (H, W)/2^(stages−1). Every decoder is

    3×3 conv → GroupNorm → ReLU → 3×3 conv → GroupNorm → ReLU      (B, dec_width, h, w)
    → 1×1 conv (W_Ω in the shared decoder, W_fm in aux decoder m)   (B, K, h, w)
    → bilinear upsampling to the label size                         (B, K, H, W)

so W_Ω and every W_fm are (K, dec_width, 1, 1) and CGGM's direction term compares their
gradients. The 1×1 conv comes before the upsampling as in the official DeepLabv3+ decoder
(zrguo/CGGM models/segmodel.py: `last_conv` ends in the 1×1 classifier, then `F.interpolate`),
which is cheaper than convolving at full resolution and the same map: bilinear upsampling mixes
pixels with weights that sum to 1 and a 1×1 conv mixes channels, so the two commute, bias included.

Where we depart from the official model (ResNet-101 + ASPP per modality, a DeepLabv3+ decoder
with a low-level skip, BatchNorm and dropout everywhere): ours is small enough to train on a CPU
(a few basic blocks, no ASPP, no skip). The decoders use GroupNorm, not BatchNorm, because OGM-GE,
AGM and `unimodal` run the shared decoder on zero-masked inputs in training mode (the unimodal
responses Ω(0…h_m…0)) and MMPareto runs each aux decoder twice a step: BatchNorm would fold those
passes into its running statistics, and evaluation would then normalise with statistics of inputs
the model never sees at test time. GroupNorm keeps no running state. The encoders keep BatchNorm
(each runs once per step on real inputs).

CGGM's magnitude modulation scales each encoder's parameters, all of them (`encoder_params`), or
for `reference` its body without the stem (see resnet.py); in the official BraTS code it is a
no-op (it scales parameters named `vision_encoder`/`text_encoder`, which the segmentation model
does not have).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .base import AuxHeads, ConcatFusion, MultimodalNet
from .resnet import ResNetEncoder


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with gcd(channels, 8) groups: 8 for the usual widths, fewer when 8 does not divide them."""
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class SegDecoder(nn.Module):
    """Feature maps → per-pixel class logits at the label size, ending in a 1×1 conv (see module docstring)."""

    def __init__(self, in_channels: int, width: int, classes: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), group_norm(width), nn.ReLU()
        )
        self.refine = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), group_norm(width), nn.ReLU())
        self.classifier = nn.Conv2d(width, classes, 1)  # the last layer: W_Ω or W_fm, (K, width, 1, 1)
        self.size = (int(size[0]), int(size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.refine(self.reduce(x)))  # (B, K, h, w)
        if tuple(logits.shape[-2:]) != self.size:
            logits = F.interpolate(logits, size=self.size, mode="bilinear", align_corners=False)
        return logits  # (B, K, H, W)


def build_segnet(
    inputs: Mapping[str, tuple[int, ...]], width: int, stages: int, blocks: int, dec_width: int, classes: int
) -> MultimodalNet:
    """`inputs`: modality → its per-sample image shape (C_in, H, W); every modality's (H, W) must agree."""
    sizes = {m: tuple(shape[1:]) for m, shape in inputs.items()}
    if any(len(shape) != 3 for shape in inputs.values()):
        raise ValueError(f"segnet reads images (C, H, W) per modality, got {dict(inputs)}")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"segnet concatenates the modalities' feature maps: their (H, W) must agree, got {sizes}")
    size: tuple[int, int] = next(iter(sizes.values()))  # type: ignore[assignment]
    encoders = {m: ResNetEncoder(shape[0], width, stages, blocks, pool=False) for m, shape in inputs.items()}
    channels = width * 2 ** (stages - 1)
    decoder = SegDecoder(channels * len(encoders), dec_width, classes, size)

    def aux_decoders() -> AuxHeads:
        # Each reads one modality's map (C channels); the same dec_width makes W_fm shaped like W_Ω.
        return AuxHeads.of({m: SegDecoder(channels, dec_width, classes, size) for m in encoders})

    return MultimodalNet(encoders, decoder, ConcatFusion(), aux_factory=aux_decoders)
