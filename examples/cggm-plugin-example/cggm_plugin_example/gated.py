"""`gated_mlp`: per modality a gated MLP encoder (a GLU layer, then a projection), concatenation,
an MLP head. The spec is torch-free (the backend reads it for the catalog); the network is in
`gated_net`, imported by `build` when a run starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cggm_core.models.registry import ModelSpec
from cggm_core.settings import Setting

if TYPE_CHECKING:
    from cggm_core.data.base import MultimodalData
    from cggm_core.models.base import MultimodalNet


class GatedMLP(ModelSpec):
    name = "gated_mlp"
    help = "a gated (GLU) MLP encoder per modality, concatenation, an MLP head (example plugin; vector inputs)"
    settings = [
        Setting("gated_hidden", "int", 32, "width of each encoder's gated layer", min=1, max=4096),
        Setting("gated_feat", "int", 16, "encoder output width (per modality)", min=1, max=4096),
    ]
    input_kinds = frozenset({"vector"})
    tasks = frozenset({"classification", "regression"})

    @classmethod
    def build(cls, cfg: Mapping[str, Any], data: MultimodalData) -> MultimodalNet:
        from .gated_net import build_gated_net

        return build_gated_net(data.in_dims, cfg["gated_hidden"], cfg["gated_feat"], data.task.num_outputs)
