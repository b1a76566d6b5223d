"""The transformer model for sequence modalities: the official CGGM model of CMU-MOSI and IEMOCAP.

After zrguo/CGGM models/msamodel.py (`MSAModel`, `Classifier`) and modules/transformer.py; our own
code, batch-first, with padding masks:

    x_m (B, T_m, D_m) ─Conv1d(k=1)→ (B, T_m, d) ─encoder_m→ h_m (B, T_m, d)     encoders.{m}.proj / .body
    [h_1 … h_M] ─concat over time→ (B, ΣT, d) ─fusion transformer→ first position (B, d)
    (B, d) ─proj1 → relu → dropout → proj2, + residual → out_layer (W_Ω)→ (B, out)
    aux head m: h_m ─small transformer→ first position ─proj1 → relu→ out_layer (same shape as W_Ω)

Each transformer is pre-norm (LayerNorm before attention and before the feed-forward block, a last
LayerNorm after the stack), scales its input by √d and adds sinusoidal positions (the tensor2tensor
form the official code takes from fairseq: positions count from 1, sin on the first half of the
channels and cos on the second), and uses the official dropouts: `embed_dropout` after the
positions, `attn_dropout` on the attention weights, `relu_dropout` inside the feed-forward block,
`res_dropout` on each block's output before the residual sum, `out_dropout` in the head.

Padding (where we depart from the official code). A batch of variable-length sequences carries a
mask (B, T), True at real steps. Attention never reads a padded key, positions count real steps
only (a padded step gets position 0, whose embedding is zero, as fairseq's `padding_idx`), and
encoder outputs are zero at padded steps. The fusion concatenates the padded sequences with their
masks, so the first real step of modality 2 has position len_1 + 1 whatever the padding: a padded
batch gives each sample the output it gets alone. The official code has no masks: MulT's files are
zero-padded, and its positional embedding treats a step whose *first feature* is exactly 0 as
padding (no position) but still attends to it. We do not offer that behaviour.

The official aux head (`Classifier`) applies `proj1` twice (`proj1(x)`, then `relu(proj1(·))`): a
quirk, offered as the setting `aux_proj_twice` (off by default, DESIGN §4.1); by default the head
is the paper's "transformer + linear" with one hidden layer: proj1 → relu → out_layer. Either way
out_layer's weight has W_Ω's shape (out, d), as CGGM's direction term needs.

CGGM's `reference` variant scales only encoder bodies: `.body` is the transformer, and the Conv1d
projection (`.proj`) sits outside it, as the official code's `proj.{i}` outside `encoders.{i}`.

Input adapters (ours: the official model reads only feature sequences). Where no frozen
pretrained encoder gives the sequences (UPMC-Food-101 without ViT/BERT features), `.proj` turns
raw inputs into the d-wide sequence the transformer reads, and is trained from scratch:
- "image" (B, C, H, W): a patch embedding, Conv2d(C, d, kernel = stride = patch_size), as ViT's;
  (B, d, H/p, W/p) → (B, HW/p², d), patches in row-major order; a border smaller than a patch is
  dropped, as ViT's convolution drops it.
- "tokens" (B, T) int64 ids: nn.Embedding(vocab, d, padding_idx=0); the batch's mask marks the
  padding, as for sequences.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import AuxHeads, MultimodalNet


def sinusoidal_embedding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Embeddings (..., dim) of integer positions (...); position 0 (padding) embeds as zeros.

    sin(p·f_i) on the first ⌊dim/2⌋ channels and cos(p·f_i) on the next ones, f_i = 10000^(−i/(half−1));
    an odd `dim` gets a last channel of zeros (fairseq's `get_embedding`).
    """
    half = dim // 2
    step = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, device=positions.device, dtype=torch.float32) * -step)  # (half,)
    angles = positions.unsqueeze(-1).float() * freqs  # (..., half)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (..., 2·half)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb * (positions != 0).unsqueeze(-1).to(emb.dtype)


def real_positions(batch: int, length: int, mask: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """(B, T) int64: 1, 2, … over the real steps of each row, 0 at padded steps."""
    if mask is None:
        return torch.arange(1, length + 1, device=device).expand(batch, length)
    return mask.long().cumsum(dim=1) * mask.long()


def xavier_linear(d_in: int, d_out: int) -> nn.Linear:
    """The official transformer's Linear: Xavier-uniform weight, zero bias."""
    layer = nn.Linear(d_in, d_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class SelfAttention(nn.Module):
    """Multi-head self-attention that never attends to padded keys."""

    def __init__(self, d_model: int, heads: int, attn_dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model={d_model} is not divisible by heads={heads}")
        self.heads = heads
        self.attn_dropout = attn_dropout
        # One (3d, d) input projection initialised as one matrix, as the official in_proj_weight.
        self.in_proj = xavier_linear(d_model, 3 * d_model)
        self.out_proj = xavier_linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.in_proj(x).chunk(3, dim=-1)  # 3 × (B, T, d)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, H, T, d/H)
        keys = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, T): True = may attend
        p = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=p)  # (B, H, T, d/H)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))  # (B, T, d)


class TransformerLayer(nn.Module):
    """Pre-norm: x + drop(attn(LN(x))), then x + drop(fc2(drop(relu(fc1(LN(x))))))."""

    def __init__(self, d_model: int, heads: int, attn_dropout: float, relu_dropout: float, res_dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads, attn_dropout)
        self.ff_norm = nn.LayerNorm(d_model)
        self.fc1 = xavier_linear(d_model, 4 * d_model)
        self.fc2 = xavier_linear(4 * d_model, d_model)
        self.relu_drop = nn.Dropout(relu_dropout)
        self.res_drop = nn.Dropout(res_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.res_drop(self.attn(self.attn_norm(x), mask))
        return x + self.res_drop(self.fc2(self.relu_drop(F.relu(self.fc1(self.ff_norm(x))))))


class TransformerEncoder(nn.Module):
    """√d-scaled input + sinusoidal positions → dropout → pre-norm layers → LayerNorm; (B, T, d) → (B, T, d).

    With a mask (B, T), padded steps get no position, are never attended to, and come out as zeros.
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        layers: int,
        attn_dropout: float = 0.0,
        relu_dropout: float = 0.0,
        res_dropout: float = 0.0,
        embed_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.embed_drop = nn.Dropout(embed_dropout)
        self.layers = nn.ModuleList(
            [TransformerLayer(d_model, heads, attn_dropout, relu_dropout, res_dropout) for _ in range(layers)]
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        positions = real_positions(b, t, mask, x.device)  # (B, T)
        x = self.embed_drop(math.sqrt(d) * x + sinusoidal_embedding(positions, d))
        for layer in self.layers:
            x = layer(x, mask)
        x = self.norm(x)
        return x if mask is None else x * mask.unsqueeze(-1).to(x.dtype)


class SequenceEncoder(nn.Module):
    """`proj` then `body` (the transformer) → (B, T, d). By input kind, `proj` is a Conv1d (kernel 1:
    D_in → d per step) of (B, T, D_in) sequences, a patch embedding of (B, C, H, W) images (C =
    `in_dim`), or an embedding of (B, T) token ids (`in_dim` = the vocabulary size)."""

    def __init__(self, in_dim: int, body: TransformerEncoder, kind: str = "sequence", patch_size: int = 16) -> None:
        super().__init__()
        self.kind = kind
        self.proj: nn.Module
        if kind == "sequence":
            self.proj = nn.Conv1d(in_dim, body.d_model, kernel_size=1)
        elif kind == "image":
            self.proj = nn.Conv2d(in_dim, body.d_model, kernel_size=patch_size, stride=patch_size)
        elif kind == "tokens":
            self.proj = nn.Embedding(in_dim, body.d_model, padding_idx=0)
        else:
            raise ValueError(f"the transformer reads sequence, image or tokens inputs, not {kind!r}")
        self.body = body

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "sequence":
            h = self.proj(x.transpose(1, 2)).transpose(1, 2)  # (B, D_in, T) → (B, d, T) → (B, T, d)
        elif self.kind == "image":
            h = self.proj(x).flatten(2).transpose(1, 2)  # (B, d, H/p, W/p) → (B, d, T) → (B, T, d)
        else:
            h = self.proj(x)  # (B, T) ids → (B, T, d)
        return self.body(h, mask)


class SequenceFusion(nn.Module):
    """A transformer over the modalities' sequences concatenated in time; its first position (B, d).

    The first position is modality 1's first step, always a real one (every sequence has a step).
    """

    def __init__(self, body: TransformerEncoder) -> None:
        super().__init__()
        self.body = body

    def forward(
        self, feats: Sequence[torch.Tensor], masks: Sequence[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        x = torch.cat(list(feats), dim=1)  # (B, ΣT_m, d)
        mask = None
        if masks is not None and any(k is not None for k in masks):
            mask = torch.cat(
                [
                    torch.ones(f.shape[:2], dtype=torch.bool, device=f.device) if k is None else k
                    for f, k in zip(feats, masks, strict=True)
                ],
                dim=1,
            )  # (B, ΣT_m)
        return self.body(x, mask)[:, 0]  # (B, d)


class ResidualHead(nn.Module):
    """The official output block: h + proj2(dropout(relu(proj1(h)))), then out_layer (W_Ω); (B, d) → (B, out)."""

    def __init__(self, d_model: int, out_dim: int, out_dropout: float) -> None:
        super().__init__()
        self.proj1 = nn.Linear(d_model, d_model)
        self.proj2 = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(out_dropout)
        self.out_layer = nn.Linear(d_model, out_dim)  # registered last: `last_layer` finds it

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out_layer(h + self.proj2(self.drop(F.relu(self.proj1(h)))))


class SequenceAuxHead(nn.Module):
    """Aux head f_m: a small transformer on sg(h_m), its first position, proj1 → relu → out_layer.

    With `proj_twice` it is the official `Classifier`: out_layer(relu(proj1(proj1(·)))).
    """

    def __init__(self, body: TransformerEncoder, out_dim: int, proj_twice: bool = False) -> None:
        super().__init__()
        self.body = body
        self.proj1 = nn.Linear(body.d_model, body.d_model)
        self.out_layer = nn.Linear(body.d_model, out_dim)  # same shape as the task head's W_Ω
        self.proj_twice = proj_twice

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.body(h, mask)[:, 0]  # (B, d)
        if self.proj_twice:
            x = self.proj1(x)
        return self.out_layer(F.relu(self.proj1(x)))  # (B, out)


def build_transformer_net(
    in_dims: Mapping[str, int],
    out_dim: int,
    *,
    d_model: int = 40,
    heads: int = 5,
    enc_layers: int = 5,
    fusion_layers: int = 3,
    aux_layers: int = 2,
    attn_dropout: float = 0.15,
    relu_dropout: float = 0.15,
    embed_dropout: float = 0.2,
    res_dropout: float = 0.1,
    out_dropout: float = 0.1,
    aux_proj_twice: bool = False,
    input_kinds: Mapping[str, str] | None = None,
    patch_size: int = 16,
) -> MultimodalNet:
    """The MSA model for modalities of widths `in_dims` (in order); defaults: the official MOSI run.

    `input_kinds[m]` ("sequence" when not given) picks encoder m's input adapter (module docstring).
    """
    kinds = dict(input_kinds or {})

    def transformer(layers: int) -> TransformerEncoder:
        return TransformerEncoder(d_model, heads, layers, attn_dropout, relu_dropout, res_dropout, embed_dropout)

    encoders = {
        m: SequenceEncoder(d, transformer(enc_layers), kinds.get(m, "sequence"), patch_size) for m, d in in_dims.items()
    }
    fusion = SequenceFusion(transformer(fusion_layers))
    head = ResidualHead(d_model, out_dim, out_dropout)

    def aux_factory() -> AuxHeads:
        return AuxHeads.of({m: SequenceAuxHead(transformer(aux_layers), out_dim, aux_proj_twice) for m in in_dims})

    return MultimodalNet(encoders, head, fusion, aux_factory=aux_factory)
