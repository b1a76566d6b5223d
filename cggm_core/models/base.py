"""Multimodal network: one encoder per modality, a fusion module, a task head; plus the aux heads.

`MultimodalNet` is also the drop-in wrapper for people's own models: give it your encoders,
fusion and head and every balancing method and the probe work on it (see README).

    h_m = φ_m(x_m[, mask_m])             encode: any shape per modality ((B, D), (B, T, D), (B, C, h, w))
    ŷ   = Ω(fusion([h_1 … h_M][, masks]))  fuse: modalities outside `keep` are zero-masked
    z_m = f_m(sg(h_m)[, mask_m])         aux heads: never send gradient into an encoder

Encoders and the fusion get a `masks=` argument only when the batch has padded sequences.
CGGM's direction term reads the task head's last layer W_Ω and every aux head's last layer
(`last_layer`): an `nn.Linear`, or the 1×1 convolution that ends a segmentation decoder; both kinds
of last layer have the same shape in the head and in each aux head.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

LastLayer = nn.Linear | nn.Conv1d | nn.Conv2d


class ConcatFusion(nn.Module):
    """Late fusion by concatenation along the feature dimension, in the model's modality order."""

    def forward(
        self, feats: Sequence[torch.Tensor], masks: Sequence[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        return torch.cat(list(feats), dim=1)  # (B, Σ D_m) or (B, Σ C_m, h, w)


def last_layer(module: nn.Module) -> LastLayer:
    """The last `nn.Linear` or convolution registered in `module`: its output layer."""
    found = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    if not found:
        raise ValueError("the module has no nn.Linear or convolution; CGGM needs its last layer's weight")
    return found[-1]


def last_linear(module: nn.Module) -> nn.Linear:
    """The last `nn.Linear` registered in `module` (the MLP heads' W_Ω)."""
    found = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError("the task head has no nn.Linear layer; CGGM needs its last-layer weight")
    return found[-1]


def _call(module: nn.Module, x: object, mask: object) -> torch.Tensor:
    out: torch.Tensor = module(x) if mask is None else module(x, mask=mask)
    return out


class AuxHeads(nn.Module):
    """One predictor f_m per modality on sg(h_m); its last layer shaped like the task head's.

    `AuxHeads(feat_dims, last_in, out_dim)` builds the MLP heads `Linear(D_m, last_in) → ReLU →
    Linear(last_in, out_dim)`, whose last weight has the shape of W_Ω (out, last_in) when the task
    head's last layer reads `last_in` inputs. `AuxHeads.of(modules)` wraps heads a model builds
    itself (a small transformer, a decoder), each called as `head(h_m[, mask=mask_m])`.
    """

    def __init__(
        self,
        feat_dims: Mapping[str, int] | None = None,
        last_in: int = 0,
        out_dim: int = 0,
        *,
        heads: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if heads is None:
            if feat_dims is None:
                raise ValueError("AuxHeads needs feat_dims (MLP heads) or heads=")
            heads = {
                m: nn.Sequential(nn.Linear(d, last_in), nn.ReLU(), nn.Linear(last_in, out_dim))
                for m, d in feat_dims.items()
            }
        self.heads = nn.ModuleDict(dict(heads))

    @classmethod
    def of(cls, heads: Mapping[str, nn.Module]) -> AuxHeads:
        return cls(heads=heads)

    def forward(
        self, feats: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        # Stop-gradient: the aux heads learn from the encoders but never train them (DESIGN §4).
        masks = masks or {}
        return {m: _call(head, feats[m].detach(), masks.get(m)) for m, head in self.heads.items()}

    def head_forward(self, m: str, feat: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Head m on features *with* their graph (MMPareto's unimodal loss reaches the encoder)."""
        return _call(self.heads[m], feat, mask)

    def last_layer(self, m: str) -> LastLayer:
        return last_layer(self.heads[m])


class MultimodalNet(nn.Module):
    """φ_m per modality → fusion → head Ω.

    `encoders` maps modality name → module; `fusion` takes the list of features in the order of
    `modalities`; `head` maps the fused features to the task output. `feat_dims` (the width of
    each h_m) lets the default MLP aux heads be built before the first batch; `aux_factory` builds
    a model's own aux heads instead.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        head: nn.Module,
        fusion: nn.Module | None = None,
        feat_dims: Mapping[str, int] | None = None,
        aux_factory: Callable[[], AuxHeads] | None = None,
    ) -> None:
        super().__init__()
        if len(encoders) < 1:
            raise ValueError("a multimodal net needs at least one encoder")
        self.modalities: list[str] = list(encoders)
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion if fusion is not None else ConcatFusion()
        self.head = head
        self.feat_dims = dict(feat_dims) if feat_dims is not None else None
        self._aux_factory = aux_factory

    def encode(
        self, xs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        masks = masks or {}
        return {m: self.encode_one(m, xs[m], masks.get(m)) for m in self.modalities}

    def encode_one(self, m: str, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return _call(self.encoders[m], x, mask)

    def fuse(
        self,
        feats: Mapping[str, torch.Tensor],
        keep: Iterable[str] | None = None,
        masks: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Ω(h_1…h_M); modalities not in `keep` are zero-masked (unimodal runs, Shapley, AGM)."""
        kept = set(self.modalities if keep is None else keep)
        parts = [feats[m] if m in kept else torch.zeros_like(feats[m]) for m in self.modalities]
        fused = self.fusion(parts, masks=[masks.get(m) for m in self.modalities]) if masks else self.fusion(parts)
        out: torch.Tensor = self.head(fused)
        return out

    def forward(self, xs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.fuse(self.encode(xs, masks), masks=masks)

    def head_last_layer(self) -> LastLayer:
        return last_layer(self.head)

    def encoder_params(self, m: str) -> list[nn.Parameter]:
        return [p for p in self.encoders[m].parameters() if p.requires_grad]

    def encoder_body_params(self, m: str) -> list[nn.Parameter]:
        """Parameters of the encoder's body if it declares one (`.body`), else all of them."""
        enc = self.encoders[m]
        body = getattr(enc, "body", None)
        mods = body if isinstance(body, nn.Module) else enc
        return [p for p in mods.parameters() if p.requires_grad]

    def can_make_aux(self) -> bool:
        """Aux heads can be built before any batch (the model knows its feature shapes)."""
        return self._aux_factory is not None or self.feat_dims is not None

    def make_aux(self, feats: Mapping[str, torch.Tensor] | None = None) -> AuxHeads:
        """The model's aux heads: its own factory's, else MLP heads on `feat_dims` (or on the
        widths of `feats`, the first batch's features, for a user's model that gave neither)."""
        if self._aux_factory is not None:
            aux = self._aux_factory()
        else:
            if self.feat_dims is not None:
                dims = dict(self.feat_dims)
            elif feats is not None:
                dims = {m: int(f.reshape(f.shape[0], -1).shape[1]) for m, f in feats.items()}
            else:
                raise ValueError("this model has neither feat_dims nor an aux factory: pass the first batch's feats")
            last = self.head_last_layer()
            if not isinstance(last, nn.Linear):
                raise ValueError("MLP aux heads need a task head ending in nn.Linear; give the model an aux_factory")
            aux = AuxHeads(dims, last.in_features, last.out_features)
        return aux.to(next(self.parameters()).device)

    def probe_features(self, m: str, feat: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """What the linear probe of encoder m reads: vectors as they are, sequences averaged over
        their real positions (B, T, D) → (B, D), feature maps kept (B, C, h, w)."""
        if feat.ndim == 3:
            if mask is None:
                return feat.mean(dim=1)
            w = mask.to(feat.dtype).unsqueeze(-1)  # (B, T, 1)
            return (feat * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
        if feat.ndim == 4:
            return feat
        return feat.reshape(feat.shape[0], -1)


def infer_feat_dims(net: MultimodalNet, example: Mapping[str, torch.Tensor]) -> dict[str, int]:
    if net.feat_dims is not None:
        return dict(net.feat_dims)
    with torch.no_grad():
        feats = net.encode({m: x[:1] for m, x in example.items()})
    return {m: int(f.reshape(1, -1).shape[1]) for m, f in feats.items()}
