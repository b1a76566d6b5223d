"""Dataset registry: name → Dataset class. Adding a dataset is one file plus one line here, or a
plugin (an entry point in the group `cggm_monitor.datasets`, loaded here: cggm_core/plugins.py)."""

from __future__ import annotations

from .. import plugins
from .base import Dataset, MultimodalData, Split
from .brats import Brats
from .food101 import Food101
from .iemocap import Iemocap
from .mfeat import MFeat
from .mosi import Mosei, Mosi
from .synthetic import Synthetic
from .synthetic_seg import SyntheticSeg
from .synthetic_seq import SyntheticSeq

DATASETS: dict[str, type[Dataset]] = {
    d.name: d for d in (Synthetic, MFeat, SyntheticSeq, SyntheticSeg, Mosi, Mosei, Iemocap, Food101, Brats)
}
plugins.load_into(DATASETS, "dataset", Dataset)  # after the built-ins: they win a clash

__all__ = ["DATASETS", "Dataset", "MultimodalData", "Split"]
