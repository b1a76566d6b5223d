"""An UPMC-Food-101 folder: train.json, test.json, PNG and JPEG images, optional feature .npy files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .common import check_fault, truncate

FOOD_FAULTS = (
    "missing_file",
    "truncated",
    "bad_label",
    "missing_image",
    "corrupt_image",
    "missing_modality",
    "shape_mismatch",
    "duplicate_id",
    "path_escape",
    "missing_feature_row",
)
CLASSES = ("apple_pie", "baklava", "sushi")
WORDS = ("sweet", "crispy", "rice", "fish", "honey", "nuts", "pastry", "apple", "warm", "raw")


@dataclass
class FoodTruth:
    entries: dict[str, list[dict[str, Any]]]  # json split → the entries written
    pixels: dict[str, np.ndarray] = field(default_factory=dict)  # id → (H, W, 3) uint8 as Pillow decodes it
    features: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # json split → modality → rows
    feature_ids: dict[str, list[str]] = field(default_factory=dict)  # json split → id of each row


def write_food101(
    folder: Path,
    *,
    sizes: dict[str, int] | None = None,
    image_hw: tuple[int, int] = (8, 12),
    features: dict[str, tuple[int, ...]] | None = None,
    seed: int = 0,
    fault: str | None = None,
) -> FoodTruth:
    """Write the folder. Images alternate PNG (lossless) and JPEG; ids are strings ("train_3").

    `features` maps a modality ("image", "text") to one row's shape, e.g. {"image": (7,)}: those
    modalities also get `features/{train,test}_<modality>.npy`, rows in reverse json order (so
    that the ids file matters).
    """
    check_fault(fault, FOOD_FAULTS)
    sizes = sizes or {"train": 12, "test": 6}
    rng = np.random.default_rng(seed)
    truth = FoodTruth(entries={})
    for split, n in sizes.items():
        entries = []
        for i in range(n):
            sid = f"{split}_{i}"
            label = CLASSES[i % len(CLASSES)]
            ext = "png" if i % 2 == 0 else "jpg"
            rel = f"images/{split}/{label}/{sid}.{ext}"
            tokens = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(2, 7)))]
            entries.append({"id": sid, "text_tokens": tokens, "label": label, "img_path": rel})
            img_path = folder / rel
            img_path.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, size=(*image_hw, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(img_path, format="PNG" if ext == "png" else "JPEG", quality=90)
            with Image.open(img_path) as im:
                truth.pixels[sid] = np.asarray(im.convert("RGB"))
        truth.entries[split] = entries
    if fault == "bad_label":
        truth.entries["test"][2]["label"] = "not_a_dish"
    elif fault == "duplicate_id":
        truth.entries["train"][3]["id"] = truth.entries["train"][1]["id"]
    elif fault == "path_escape":
        truth.entries["train"][0]["img_path"] = "../outside.png"
    for split, entries in truth.entries.items():
        (folder / f"{split}.json").write_text(json.dumps(entries))
    if fault == "missing_file":
        (folder / "test.json").unlink()
    elif fault == "truncated":
        truncate(folder / "train.json")
    elif fault == "missing_image":
        (folder / truth.entries["train"][5]["img_path"]).unlink()
    elif fault == "corrupt_image":
        truncate(folder / truth.entries["test"][0]["img_path"], keep=0.3)
    if features:
        fdir = folder / "features"
        fdir.mkdir()
        for split, entries in truth.entries.items():
            ids = [e["id"] for e in reversed(entries)]
            truth.feature_ids[split] = ids
            if fault == "missing_feature_row" and split == "test":
                ids = ids[:-1]
            np.save(fdir / f"{split}_ids.npy", np.asarray(ids))
            truth.features[split] = {}
            for m, shape in features.items():
                if fault == "missing_modality" and split == "test" and m == "text":
                    continue
                row_shape = (*shape[:-1], shape[-1] + 1) if fault == "shape_mismatch" and split == "test" else shape
                rows = rng.normal(size=(len(ids), *row_shape)).astype(np.float32)
                truth.features[split][m] = rows
                np.save(fdir / f"{split}_{m}.npy", rows)
    return truth
