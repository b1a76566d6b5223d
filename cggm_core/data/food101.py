"""UPMC-Food-101 from the user's folder (101 classes; image and text), with three kinds of encoders.

`path` is the folder under the data root holding `train.json`, `test.json` (lists of
{id, text_tokens, label, img_path}) and the images (the reader, cggm_core.data.files.food101,
checks every entry, label and image file when the run starts, and names the file).

Splits: `test` is test.json; `valid` is `valid_fraction` of train.json, per class, drawn by
`data_seed`. The official code validates (and picks its best epoch) on the test split: that is
`validate_on_test`, off by default.

Where each modality's input comes from (`image_source`, `text_source`):
- `features`: precomputed feature files in `features` ({train,test}_ids.npy and
  {train,test}_<modality>.npy with (N, T, D) rows: sequences, e.g. ViT's 197 × 768 tokens).
- `hf`: a local Hugging Face model folder (`image_encoder`: a ViT; `text_encoder`: a BERT with
  its tokenizer), frozen, run once over both json files; its `last_hidden_state` sequences are
  cached on disk beside the data (cggm_core.data.hf_features says where and why) and read like
  precomputed features. Needs the `hf` extra (`transformers`); never downloads.
- `builtin` (the default): raw inputs for an encoder trained from scratch — images resized to
  `image_size`² (the `transformer` model turns them into patch tokens), text as ids of a
  vocabulary built on the training split (words seen at least `vocab_min_freq` times; the
  model embeds them), at most `max_tokens` per entry.
Feature sequences have one length per modality (no masks); token ids vary (padded, masked).
Samples are read per entry by the DataLoader (`LoaderSplit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import tasks
from ..settings import Setting, SettingError
from .base import InputKind, InputSpec, LoaderSplit, MultimodalData
from .files import DataFormatError, ImagePipeline, read_food101
from .files.food101 import FOOD101_CLASSES, MODALITIES, TEXT_MAX_TOKENS
from .from_files import FileBacked, path_setting

SOURCES = ("builtin", "features", "hf")
ENCODER_SETTING = {"image": "image_encoder", "text": "text_encoder"}
CACHE_FOLDER = "cggm_features"


class Food101(FileBacked):
    name = "food101"
    help = (
        "UPMC-Food-101 from your folder under the data root ($CGGM_DATA_DIR): 101 dishes from a photo "
        "and its recipe text; encoders from feature files, local Hugging Face folders, or built in"
    )
    default_model = "transformer"
    path_settings = ("path", "features", "image_encoder", "text_encoder", "feature_cache")
    settings = [
        path_setting("food101", "the UPMC-Food-101 folder (train.json, test.json, the images)"),
        Setting("image_source", "str", "builtin", "where the image input comes from", choices=SOURCES),
        Setting("text_source", "str", "builtin", "where the text input comes from", choices=SOURCES),
        path_setting("", "source 'features': the folder of {train,test}_ids.npy and _<modality>.npy", "features"),
        path_setting("", "image_source 'hf': a local Hugging Face ViT folder", "image_encoder"),
        path_setting("", "text_source 'hf': a local Hugging Face BERT folder (with its tokenizer)", "text_encoder"),
        path_setting("", "where the hf features are cached (empty: <path>/cggm_features)", "feature_cache"),
        Setting(
            "validate_on_test",
            "bool",
            False,
            "the official quirk: validate on the test split (and train on all of train.json)",
        ),
        Setting("valid_fraction", "float", 0.1, "fraction of train.json held out to validate", min=0.0, max=0.9),
        Setting("food_classes", "str", "food101", "the class list", choices=("food101", "from_train")),
        Setting(
            "image_size", "int", 224, "builtin images: resized to this square side (official: 224)", min=8, max=1024
        ),
        Setting("max_tokens", "int", TEXT_MAX_TOKENS, "text: tokens kept per entry (official: 50)", min=1, max=4096),
        Setting("vocab_min_freq", "int", 3, "builtin text: words seen fewer times are unknown", min=1, max=1_000_000),
    ]

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        super().check(cfg)
        sources = {m: cfg[f"{m}_source"] for m in MODALITIES}
        if "features" in sources.values() and not cfg["features"]:
            raise SettingError("setting 'features': a source is 'features', so give the folder of the feature files")
        if "features" not in sources.values() and cfg["features"]:
            raise SettingError("setting 'features' is given, but neither image_source nor text_source is 'features'")
        for m, name in ENCODER_SETTING.items():
            if sources[m] == "hf" and not cfg[name]:
                raise SettingError(f"setting '{name}': {m}_source is 'hf', so give the model folder")
            if sources[m] != "hf" and cfg[name]:
                raise SettingError(f"setting '{name}' is given, but {m}_source is {sources[m]!r}, not 'hf'")
        if not cfg["validate_on_test"] and cfg["valid_fraction"] == 0.0:
            raise SettingError("setting 'valid_fraction' is 0: hold out some of train.json, or set validate_on_test")

    @classmethod
    def modality_names(cls, cfg: Mapping[str, Any]) -> list[str]:
        return list(MODALITIES)

    @classmethod
    def task_name(cls, cfg: Mapping[str, Any]) -> str:
        return "classification"

    @classmethod
    def input_kinds(cls, cfg: Mapping[str, Any]) -> dict[str, InputKind]:
        raw: dict[str, InputKind] = {"image": "image", "text": "tokens"}
        return {m: ("sequence" if cfg[f"{m}_source"] != "builtin" else raw[m]) for m in MODALITIES}

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        folder = cls.resolve_path(cfg)
        sources = {m: cfg[f"{m}_source"] for m in MODALITIES}
        common: dict[str, Any] = {
            "valid_fraction": float(cfg["valid_fraction"]),
            "seed": data_seed,
            "validate_on_test": bool(cfg["validate_on_test"]),
            "classes": FOOD101_CLASSES if cfg["food_classes"] == "food101" else None,
            "image": ImagePipeline(size=int(cfg["image_size"])),
            "text": "ids" if sources["text"] == "builtin" else "tokens",
            "max_tokens": int(cfg["max_tokens"]),
            "min_freq": int(cfg["vocab_min_freq"]),
        }
        features: dict[str, str | Path] = {
            m: cls.resolve_path(cfg, "features") for m in MODALITIES if sources[m] == "features"
        }
        hf = [m for m in MODALITIES if sources[m] == "hf"]
        if hf:
            features.update(cls._hf_features(cfg, folder, hf, common, dict(features)))
        ds = read_food101(folder, features=features or None, **common)
        inputs: dict[str, InputSpec] = {}
        for m in MODALITIES:
            shape = ds.sample_shapes[m]
            if sources[m] != "builtin":
                if len(shape) != 2:
                    raise DataFormatError(
                        Path(features[m]) / f"train_{m}.npy",
                        f"rows are {shape}, expected (T, D) sequences (save pooled (N, D) features as (N, 1, D))",
                    )
                inputs[m] = InputSpec("sequence", (int(shape[0]), int(shape[1])))  # type: ignore[arg-type]
            elif m == "image":
                inputs[m] = InputSpec("image", (3, int(cfg["image_size"]), int(cfg["image_size"])))
            else:
                vocab = ds.info["vocabulary"]
                inputs[m] = InputSpec("tokens", (ds.seq_lens["text"],), variable_length=True, vocab_size=len(vocab))
        info = {k: v for k, v in ds.info.items() if k != "vocabulary"}
        return MultimodalData(
            name=cls.name,
            modalities=list(MODALITIES),
            task=tasks.classification(int(ds.num_classes or 0)),
            train=LoaderSplit(ds.train),
            val=LoaderSplit(ds.valid),
            test=LoaderSplit(ds.test),
            info={**info, "sources": sources, "sizes": [len(ds.train), len(ds.valid), len(ds.test)]},
            inputs=inputs,
        )

    @classmethod
    def _hf_features(
        cls,
        cfg: Mapping[str, Any],
        folder: Path,
        modalities: list[str],
        common: dict[str, Any],
        precomputed: dict[str, str | Path],
    ) -> dict[str, Path]:
        """Run the frozen encoders over both json files (once: cached on disk); their feature folders."""
        from .files.food101 import JSON_SPLITS
        from .hf_features import Entry, cached_features

        # Every entry of both json files, in file order (validate_on_test keeps train.json whole).
        every = read_food101(
            folder, features=precomputed or None, **{**common, "validate_on_test": True, "text": "tokens"}
        )
        entries = {
            json_split: [Entry(e.id, e.tokens, e.image) for e in split.entries]  # type: ignore[attr-defined]
            for json_split, split in zip(JSON_SPLITS, (every.train, every.test), strict=True)
        }
        cache_root = cls.resolve_path(cfg, "feature_cache") if cfg["feature_cache"] else folder / CACHE_FOLDER
        return {
            m: cached_features(
                m, cls.resolve_path(cfg, ENCODER_SETTING[m]), entries, cache_root, max_tokens=int(cfg["max_tokens"])
            )
            for m in modalities
        }
