"""A data root holding the paper's data sets as tiny fake files, and the job config that reads each.

`write_case(name, root)` writes one case under `root` (the `CGGM_DATA_DIR` of a test) and returns
the flat job config (dataset, path settings, tiny model and trainer sizes) that trains on it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .brats import write_brats_h5, write_brats_nifti
from .food101 import write_food101
from .iemocap import write_iemocap
from .mosi import write_mosi

TINY_TRANSFORMER = {"d_model": 8, "heads": 2, "enc_layers": 1, "fusion_layers": 1, "aux_layers": 1}
TINY_SEGNET = {"segnet_width": 4, "segnet_dec_width": 4}
TINY_TRAINER = {"epochs": 1, "batch_size": 4, "probe_steps": 5}


def _mosi(root: Path) -> dict[str, Any]:
    (root / "cmu").mkdir()
    write_mosi(root / "cmu" / "mosi_data.pkl")
    return {"dataset": "mosi", "path": "cmu/mosi_data.pkl", **TINY_TRANSFORMER}


def _mosei(root: Path) -> dict[str, Any]:  # an unaligned file: one T per modality
    write_mosi(root / "mosei_noalign.pkl", seq_lens={"text": 4, "audio": 7, "vision": 5}, seed=1)
    return {"dataset": "mosei", "path": "mosei_noalign.pkl", **TINY_TRANSFORMER}


def _iemocap(root: Path) -> dict[str, Any]:
    write_iemocap(root / "iemocap")
    return {"dataset": "iemocap", "path": "iemocap", "fold": 2, **TINY_TRANSFORMER}


def _food_builtin(root: Path) -> dict[str, Any]:
    write_food101(root / "food101")
    return {
        "dataset": "food101",
        "path": "food101",
        "image_size": 16,
        "patch_size": 8,
        "vocab_min_freq": 1,
        **TINY_TRANSFORMER,
    }


def _food_features(root: Path) -> dict[str, Any]:
    write_food101(root / "food", features={"image": (5, 6), "text": (3, 6)})
    return {
        "dataset": "food101",
        "path": "food",
        "image_source": "features",
        "text_source": "features",
        "features": "food/features",
        **TINY_TRANSFORMER,
    }


def _brats_h5(root: Path) -> dict[str, Any]:
    write_brats_h5(root / "brats")
    return {"dataset": "brats", "path": "brats", "crop_size": 8, **TINY_SEGNET}


def _brats_nifti(root: Path) -> dict[str, Any]:
    write_brats_nifti(root / "BraTS2021")
    return {"dataset": "brats", "path": "BraTS2021", "brats_layout": "nifti", "crop_size": 8, **TINY_SEGNET}


CASES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "mosi": _mosi,
    "mosei_unaligned": _mosei,
    "iemocap": _iemocap,
    "food101_builtin": _food_builtin,
    "food101_features": _food_features,
    "brats_h5": _brats_h5,
    "brats_nifti": _brats_nifti,
}


def write_case(name: str, root: Path) -> dict[str, Any]:
    """Write case `name` under `root`; the job config (without method) that trains on it."""
    return {**CASES[name](root), **TINY_TRAINER}
