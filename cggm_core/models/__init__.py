"""Models: the registry (torch-free, for the catalog) and the network classes (loaded on first use).

    MODELS["mlp"]          vectors: MLP encoders, concatenation, MLP head
    MODELS["transformer"]  sequences: Conv1d + transformer encoders, a fusion transformer, residual head
    MODELS["cnn"]          images: a small ResNet per modality, concatenation, MLP head
    MODELS["segnet"]       images, segmentation: ResNet encoders, a shared decoder, aux decoders

Adding a model is one spec class in `registry.py` plus its implementation module, or a plugin
(an entry point in the group `cggm_monitor.models`: cggm_core/plugins.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .. import plugins
from .registry import CNN, MLP, ModelSpec, SegNet, Transformer

MODELS: dict[str, type[ModelSpec]] = {m.name: m for m in (MLP, Transformer, CNN, SegNet)}
# Users' models from the entry-point group `cggm_monitor.models` (cggm_core/plugins.py); built-ins win a clash.
plugins.load_into(MODELS, "model", ModelSpec)

_EXPORTS = {
    "AuxHeads": "base",
    "ConcatFusion": "base",
    "MultimodalNet": "base",
    "last_layer": "base",
    "last_linear": "base",
    "infer_feat_dims": "base",
    "MLPEncoder": "mlp",
    "build_mlp_net": "mlp",
    "build_transformer_net": "transformer",
    "ResNetEncoder": "resnet",
    "build_cnn_net": "cnn",
    "SegDecoder": "segnet",
    "build_segnet": "segnet",
}

if TYPE_CHECKING:
    from .base import AuxHeads, ConcatFusion, MultimodalNet, infer_feat_dims, last_layer, last_linear
    from .cnn import build_cnn_net
    from .mlp import MLPEncoder, build_mlp_net
    from .resnet import ResNetEncoder
    from .segnet import SegDecoder, build_segnet
    from .transformer import build_transformer_net


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cggm_core.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "MODELS",
    "AuxHeads",
    "ConcatFusion",
    "MLPEncoder",
    "ModelSpec",
    "MultimodalNet",
    "ResNetEncoder",
    "SegDecoder",
    "build_cnn_net",
    "build_mlp_net",
    "build_segnet",
    "build_transformer_net",
    "infer_feat_dims",
    "last_layer",
    "last_linear",
]
