"""Multimodal network: one encoder per modality, a fusion module, a task head; plus aux heads.

`MultimodalNet` is also the drop-in wrapper for people's own models: give it your encoders,
fusion and head and every balancing method and the probe work on it (see README).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn


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


class ConcatFusion(nn.Module):
    """Late fusion by concatenation, in the model's modality order."""

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(feats), dim=1)  # (B, sum feat_dim)


def last_linear(module: nn.Module) -> nn.Linear:
    """The last `nn.Linear` registered in `module`: the task head's output layer W_Ω."""
    found = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError("the task head has no nn.Linear layer; CGGM needs its last-layer weight")
    return found[-1]


class MultimodalNet(nn.Module):
    """φ_m per modality → fusion → head Ω.

    `encoders` maps modality name → module; `fusion` takes the list of features in the order of
    `modalities`; `head` maps the fused vector to the task output.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        head: nn.Module,
        fusion: nn.Module | None = None,
        feat_dims: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        if len(encoders) < 1:
            raise ValueError("a multimodal net needs at least one encoder")
        self.modalities: list[str] = list(encoders)
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion if fusion is not None else ConcatFusion()
        self.head = head
        self.feat_dims = dict(feat_dims) if feat_dims is not None else None

    def encode(self, xs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.encoders[m](xs[m]) for m in self.modalities}

    def fuse(self, feats: Mapping[str, torch.Tensor], keep: Iterable[str] | None = None) -> torch.Tensor:
        """Ω(h_1…h_M); modalities not in `keep` are zero-masked (unimodal runs, Shapley, AGM)."""
        kept = set(self.modalities if keep is None else keep)
        parts = [feats[m] if m in kept else torch.zeros_like(feats[m]) for m in self.modalities]
        return self.head(self.fusion(parts))

    def forward(self, xs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.fuse(self.encode(xs))

    def head_last_layer(self) -> nn.Linear:
        return last_linear(self.head)

    def encoder_params(self, m: str) -> list[nn.Parameter]:
        return [p for p in self.encoders[m].parameters() if p.requires_grad]

    def encoder_body_params(self, m: str) -> list[nn.Parameter]:
        """Parameters of the encoder's body if it declares one (`.body`), else all of them."""
        enc = self.encoders[m]
        body = getattr(enc, "body", None)
        mods = body if isinstance(body, nn.Module) else enc
        return [p for p in mods.parameters() if p.requires_grad]


class AuxHeads(nn.Module):
    """One classifier f_m per modality on sg(h_m); last layer shaped like the task head's.

    Each head is `Linear(feat_m, hidden) → ReLU → Linear(hidden, out)` so that its last weight has
    the shape of W_Ω (out, hidden) when the task head's last layer reads `hidden` inputs.
    """

    def __init__(self, feat_dims: Mapping[str, int], last_in: int, out_dim: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(d, last_in), nn.ReLU(), nn.Linear(last_in, out_dim))
                for m, d in feat_dims.items()
            }
        )

    def forward(self, feats: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Stop-gradient: the aux heads learn from the encoders but never train them (DESIGN §4).
        return {m: head(feats[m].detach()) for m, head in self.heads.items()}

    def last_layer(self, m: str) -> nn.Linear:
        return last_linear(self.heads[m])


def build_mlp_net(
    in_dims: Mapping[str, int], hidden: int, feat_dim: int, head_hidden: int, out_dim: int
) -> MultimodalNet:
    encoders = {m: MLPEncoder(d, hidden, feat_dim) for m, d in in_dims.items()}
    head = nn.Sequential(nn.Linear(feat_dim * len(in_dims), head_hidden), nn.ReLU(), nn.Linear(head_hidden, out_dim))
    return MultimodalNet(encoders, head, ConcatFusion(), feat_dims={m: feat_dim for m in in_dims})


def infer_feat_dims(net: MultimodalNet, example: Mapping[str, torch.Tensor]) -> dict[str, int]:
    if net.feat_dims is not None:
        return dict(net.feat_dims)
    with torch.no_grad():
        feats = net.encode({m: x[:1] for m, x in example.items()})
    return {m: int(f.reshape(1, -1).shape[1]) for m, f in feats.items()}


ModelFactory = Callable[[], MultimodalNet]
