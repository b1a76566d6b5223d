"""Model registry: name → `ModelSpec` (its settings, what data it reads, how to build it).

A job chooses its model with the `model` setting (default: the dataset's `default_model`). Each
spec declares the input kinds it reads (vector, sequence, image) and the tasks it serves, so a job
that pairs a model with data it cannot read is refused at POST, before any worker claims it. This
module imports no torch: the backend reads the catalog from it. `build` imports the model's
implementation when a run starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..settings import Setting, SettingError

if TYPE_CHECKING:
    from ..data.base import MultimodalData
    from .base import MultimodalNet


class ModelSpec:
    name: ClassVar[str]
    help: ClassVar[str]
    settings: ClassVar[list[Setting]] = []
    input_kinds: ClassVar[frozenset[str]]  # every modality's input must be one of these
    tasks: ClassVar[frozenset[str] | None] = None  # the tasks it serves; None = any

    @classmethod
    def check(cls, cfg: Mapping[str, Any], kinds: set[str], task: str) -> None:
        """Refuse data this model cannot read (raise SettingError naming what it reads)."""
        bad = sorted(kinds - cls.input_kinds)
        if bad:
            raise SettingError(
                f"model {cls.name!r} reads {', '.join(sorted(cls.input_kinds))} inputs, but this dataset's "
                f"modalities are {', '.join(bad)}; choose a model that reads them"
            )
        if cls.tasks is not None and task not in cls.tasks:
            raise SettingError(f"model {cls.name!r} serves {', '.join(sorted(cls.tasks))}, not {task}")

    @classmethod
    def build(cls, cfg: Mapping[str, Any], data: MultimodalData) -> MultimodalNet:
        raise NotImplementedError

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "help": cls.help,
            "settings": [s.to_json() for s in cls.settings],
            "input_kinds": sorted(cls.input_kinds),
            "tasks": None if cls.tasks is None else sorted(cls.tasks),
        }


class MLP(ModelSpec):
    name = "mlp"
    help = "an MLP encoder per modality, concatenation, an MLP head (vector inputs)"
    settings = [
        Setting("hidden", "int", 64, "encoder MLP width", min=1, max=8192),
        Setting("feat_dim", "int", 32, "encoder output width (per modality)", min=1, max=8192),
        Setting("head_hidden", "int", 64, "task-head hidden width (= aux heads' last-layer input)", min=1, max=8192),
    ]
    input_kinds = frozenset({"vector"})
    tasks = frozenset({"classification", "regression"})

    @classmethod
    def build(cls, cfg: Mapping[str, Any], data: MultimodalData) -> MultimodalNet:
        from .mlp import build_mlp_net

        return build_mlp_net(data.in_dims, cfg["hidden"], cfg["feat_dim"], cfg["head_hidden"], data.task.num_outputs)


class Transformer(ModelSpec):
    name = "transformer"
    help = (
        "the official CGGM MSA model (sequence inputs): per modality a Conv1d projection and a transformer, "
        "a fusion transformer over the concatenated sequences, a residual MLP head; padding masks"
    )
    # Defaults: the official CMU-MOSI run (DESIGN §4.1).
    settings = [
        Setting(
            "d_model", "int", 40, "transformer width d (every encoder, the fusion, the aux heads)", min=2, max=4096
        ),
        Setting("heads", "int", 5, "attention heads (must divide d_model)", min=1, max=256),
        Setting("enc_layers", "int", 5, "transformer layers of each modality's encoder", min=0, max=64),
        Setting(
            "fusion_layers", "int", 3, "layers of the fusion transformer (official: enc_layers − 2)", min=0, max=64
        ),
        Setting("aux_layers", "int", 2, "transformer layers of each aux head", min=0, max=64),
        Setting("attn_dropout", "float", 0.15, "dropout on the attention weights", min=0.0, max=0.99),
        Setting("relu_dropout", "float", 0.15, "dropout inside each feed-forward block", min=0.0, max=0.99),
        Setting("embed_dropout", "float", 0.2, "dropout after adding the positions", min=0.0, max=0.99),
        Setting(
            "res_dropout", "float", 0.1, "dropout on each block's output before the residual sum", min=0.0, max=0.99
        ),
        Setting("out_dropout", "float", 0.1, "dropout in the residual output head", min=0.0, max=0.99),
        Setting(
            "aux_proj_twice",
            "bool",
            False,
            "the official aux head's quirk: apply its hidden layer proj1 twice (off: proj1 → relu → out_layer)",
        ),
        Setting(
            "patch_size",
            "int",
            16,
            "image inputs: side of the square patches the patch embedding turns into tokens",
            min=1,
            max=1024,
        ),
    ]
    # Sequences, and images and token ids through an input adapter that makes them sequences
    # (models/transformer.py). Not vectors: a vector read as a length-1 sequence makes attention
    # the identity (one key), so the model would be an MLP in disguise; `mlp` is the model for vectors.
    input_kinds = frozenset({"sequence", "image", "tokens"})
    tasks = frozenset({"classification", "regression"})

    @classmethod
    def check(cls, cfg: Mapping[str, Any], kinds: set[str], task: str) -> None:
        super().check(cfg, kinds, task)
        if cfg["d_model"] % cfg["heads"]:
            raise SettingError(
                f"setting 'heads': {cfg['heads']} does not divide d_model={cfg['d_model']}; "
                "choose heads that divide d_model"
            )

    @classmethod
    def build(cls, cfg: Mapping[str, Any], data: MultimodalData) -> MultimodalNet:
        from .transformer import build_transformer_net

        for m in data.modalities:
            spec = data.inputs[m]
            if spec.kind == "image" and min(spec.shape[1:]) < cfg["patch_size"]:
                raise SettingError(
                    f"setting 'patch_size': {cfg['patch_size']} is larger than modality {m!r}'s images "
                    f"{spec.shape[1]} × {spec.shape[2]}; choose a smaller patch (or larger images)"
                )
        return build_transformer_net(
            {m: data.inputs[m].features for m in data.modalities},
            data.task.num_outputs,
            input_kinds={m: data.inputs[m].kind for m in data.modalities},
            **{s.name: cfg[s.name] for s in cls.settings},
        )


class CNN(ModelSpec):
    name = "cnn"
    help = "a small ResNet per image modality (global average pooling), concatenation, an MLP head"
    settings = [
        Setting(
            "cnn_width", "int", 16, "channels of the stem and the first stage (doubling per stage)", min=1, max=1024
        ),
        Setting("cnn_stages", "int", 3, "ResNet stages (each after the first halves the resolution)", min=1, max=6),
        Setting("cnn_blocks", "int", 1, "basic blocks per stage", min=1, max=16),
        Setting(
            "cnn_head_hidden", "int", 64, "task-head hidden width (= aux heads' last-layer input)", min=1, max=8192
        ),
    ]
    input_kinds = frozenset({"image"})
    tasks = frozenset({"classification", "regression"})

    @classmethod
    def build(cls, cfg: Mapping[str, Any], data: MultimodalData) -> MultimodalNet:
        from .cnn import build_cnn_net

        return build_cnn_net(
            data.in_dims,
            cfg["cnn_width"],
            cfg["cnn_stages"],
            cfg["cnn_blocks"],
            cfg["cnn_head_hidden"],
            data.task.num_outputs,
        )


class SegNet(ModelSpec):
    name = "segnet"
    help = (
        "segmentation: a ResNet encoder per image modality, a shared decoder ending in a 1×1 conv, "
        "an aux decoder per modality"
    )
    settings = [
        Setting(
            "segnet_width",
            "int",
            16,
            "encoder channels of the stem and first stage (doubling per stage)",
            min=1,
            max=1024,
        ),
        Setting("segnet_stages", "int", 2, "encoder stages (each after the first halves the resolution)", min=1, max=6),
        Setting("segnet_blocks", "int", 1, "basic blocks per encoder stage", min=1, max=16),
        Setting(
            "segnet_dec_width", "int", 32, "decoders' width (= the 1×1 conv's input: W_Ω and aux)", min=1, max=4096
        ),
    ]
    input_kinds = frozenset({"image"})
    tasks = frozenset({"segmentation"})

    @classmethod
    def build(cls, cfg: Mapping[str, Any], data: MultimodalData) -> MultimodalNet:
        from .segnet import build_segnet

        return build_segnet(
            {m: spec.shape for m, spec in data.inputs.items()},
            cfg["segnet_width"],
            cfg["segnet_stages"],
            cfg["segnet_blocks"],
            cfg["segnet_dec_width"],
            data.task.num_outputs,
        )
