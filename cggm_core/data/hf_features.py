"""Frozen Hugging Face encoders (ViT, BERT) from local folders, run once, their outputs cached on disk.

The official Food-101 run feeds each batch through a frozen ViT and a frozen BERT under
`torch.no_grad()` (models in eval mode, as `from_pretrained` leaves them) and trains on their
`last_hidden_state`: the image's 197 × 768 tokens, the text's 50 × 768 (BERT's input padded to
`max_length`, padding included). Frozen and without dropout, those outputs are the same every
epoch, so we compute them once per split and store them in the feature-file layout the Food-101
reader reads (`{train,test}_ids.npy`, `{train,test}_<modality>.npy`, memory-mapped per sample).
Departures: the official augments training images (flip, colour jitter, grey, blur) before ViT;
precomputed features cannot, so every image goes through the evaluation transform (Resize to the
ViT's size, ToTensor: no normalisation, as the official). The cache is float16 (measured need:
Food-101 in float32 is ~64 GB on disk; float16 halves it, and the encoders' LayerNorm outputs of
order 1 lose ~5e-4 of relative precision).

Where: on disk, beside the data (`<food folder>/cggm_features/<modality>-<key>/`, or the
`feature_cache` folder), never in memory (Food-101's train split alone would be ~37 GB of image
tokens). The key hashes the encoder folder's files (names, sizes, modification times), the
json entries and the preprocessing, so a changed model or data set computes anew. A folder is
written under a temporary name and renamed when complete: an interrupted run leaves no half cache,
and two workers racing keep one.

Only local folders are read (`local_files_only=True`): nothing is downloaded. `transformers` is
the optional `hf` extra, imported only when an encoder folder is given.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .files import DataFormatError, ImagePipeline
from .files.images import load_rgb, preprocess

log = logging.getLogger("cggm_core.data")

CACHE_DTYPE = np.float16
BATCH = 32
HF_FOLDER = (
    "a Hugging Face model folder saved with save_pretrained (config.json and model.safetensors or "
    "pytorch_model.bin; for text also the tokenizer files)"
)
_FORMAT_VERSION = 1  # bump when what is written changes


@dataclass(frozen=True)
class Entry:
    """One json entry, as the encoders need it."""

    id: str
    tokens: tuple[str, ...]
    image: Path


def transformers_module() -> ModuleType:
    try:
        return importlib.import_module("transformers")
    except ImportError as e:
        raise ImportError(
            "a Hugging Face encoder folder needs the Python package 'transformers': install the 'hf' extra "
            "(pip install 'cggm-monitor[hf]'), or use precomputed features or the built-in encoders"
        ) from e


def check_model_folder(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        what = "no such folder" if not folder.exists() else "no config.json in this folder"
        raise DataFormatError(folder, f"{what}; expected {HF_FOLDER}")


def cache_key(modality: str, encoder: Path, entries: dict[str, list[Entry]], preprocessing: dict[str, Any]) -> str:
    """A digest of everything the cached features depend on (file contents by size and mtime)."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": _FORMAT_VERSION, "m": modality, "prep": preprocessing}, sort_keys=True).encode())
    for p in sorted(encoder.iterdir()):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    for split in sorted(entries):
        for e in entries[split]:
            h.update(f"{split}\0{e.id}\0{' '.join(e.tokens) if modality == 'text' else e.image}\n".encode())
    return h.hexdigest()[:16]


def cached_features(
    modality: str,
    encoder: Path,
    entries: dict[str, list[Entry]],
    cache_root: Path,
    *,
    max_tokens: int,
    device: str | None = None,
) -> Path:
    """The folder holding `modality`'s features for every json split, computed now if not cached."""
    tf = transformers_module()
    check_model_folder(encoder)
    try:
        config = tf.AutoConfig.from_pretrained(encoder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise DataFormatError(encoder, f"cannot be read as {HF_FOLDER} ({e})") from e
    image_size = int(getattr(config, "image_size", 224))
    prep = {"max_tokens": max_tokens} if modality == "text" else {"image_size": image_size}
    folder = cache_root / f"{modality}-{cache_key(modality, encoder, entries, prep)}"
    if (folder / "complete").is_file():
        log.info("%s features from the cache %s", modality, folder)
        return folder
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(cache_root / f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise DataFormatError(
            cache_root,
            f"cannot write the feature cache here ({e.strerror or e}); set feature_cache to a writable folder "
            "under the data root",
        ) from e
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        model = tf.AutoModel.from_pretrained(encoder, local_files_only=True).to(dev).eval()
        tokenizer = tf.AutoTokenizer.from_pretrained(encoder, local_files_only=True) if modality == "text" else None
    except (OSError, ValueError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataFormatError(encoder, f"cannot be loaded as {HF_FOLDER} ({e})") from e
    pipeline = ImagePipeline(size=image_size)
    log.info("computing %s features with the frozen %s (%s) on %s", modality, type(model).__name__, encoder, dev)
    try:
        for split, es in entries.items():
            np.save(tmp / f"{split}_ids.npy", np.asarray([e.id for e in es]))
            out: np.memmap[Any, Any] | None = None
            for start, outputs in _encode(model, tokenizer, es, pipeline, max_tokens, dev):
                if out is None:  # (N, T, D), T and D known from the first batch
                    shape = (len(es), *outputs.shape[1:])
                    out = np.lib.format.open_memmap(tmp / f"{split}_{modality}.npy", "w+", CACHE_DTYPE, shape)
                out[start : start + len(outputs)] = outputs
            if out is not None:
                out.flush()
                del out
        (tmp / "complete").write_text(json.dumps({"encoder": str(encoder), **prep}) + "\n")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same cache first: keep its copy
            if not (folder / "complete").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _encode(
    model: Any, tokenizer: Any, entries: Sequence[Entry], pipeline: ImagePipeline, max_tokens: int, dev: Any
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, (B, T, D) float16 last_hidden_state) per batch of entries, in order."""
    import torch

    for start in range(0, len(entries), BATCH):
        chunk = entries[start : start + BATCH]
        with torch.inference_mode():
            if tokenizer is not None:
                # As the official Food101 loader: the tokens joined by spaces, padded to max_length.
                enc = tokenizer(
                    [" ".join(e.tokens) for e in chunk],
                    add_special_tokens=True,
                    padding="max_length",
                    max_length=max_tokens,
                    truncation=True,
                    return_tensors="pt",
                )
                hidden = model(**{k: v.to(dev) for k, v in enc.items()}).last_hidden_state
            else:
                pixels = np.stack([preprocess(load_rgb(e.image), pipeline) for e in chunk])  # (B, 3, S, S)
                hidden = model(pixel_values=torch.from_numpy(pixels).to(dev)).last_hidden_state
        yield start, hidden.float().cpu().numpy().astype(CACHE_DTYPE)
