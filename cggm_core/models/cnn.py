"""The `cnn` model for image modalities (classification, regression): a small ResNet per modality.

    h_m = φ_m(x_m)            ResNetEncoder with global average pooling: (B, C_m, H, W) → (B, D)
    ŷ   = Ω([h_1 … h_M])      concatenation (B, M·D) → Linear → ReLU → Linear = W_Ω (B, K)
    z_m = f_m(sg(h_m))        MLP aux heads Linear(D, head_hidden) → ReLU → Linear(head_hidden, K),
                              whose last weight has W_Ω's shape (K, head_hidden)

D = width·2^(stages−1). The aux heads are `MultimodalNet`'s default MLP heads, built from
`feat_dims` and the head's last layer.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from .base import ConcatFusion, MultimodalNet
from .resnet import ResNetEncoder


def build_cnn_net(
    in_channels: Mapping[str, int], width: int, stages: int, blocks: int, head_hidden: int, out_dim: int
) -> MultimodalNet:
    encoders = {m: ResNetEncoder(c, width, stages, blocks, pool=True) for m, c in in_channels.items()}
    feat = width * 2 ** (stages - 1)
    head = nn.Sequential(nn.Linear(feat * len(encoders), head_hidden), nn.ReLU(), nn.Linear(head_hidden, out_dim))
    return MultimodalNet(encoders, head, ConcatFusion(), feat_dims=dict.fromkeys(encoders, feat))
