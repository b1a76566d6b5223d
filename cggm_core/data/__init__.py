"""Dataset registry: name → Dataset class. Adding a dataset is one file plus one line here."""

from __future__ import annotations

from .base import Dataset, MultimodalData, Split
from .mfeat import MFeat
from .synthetic import Synthetic
from .synthetic_seg import SyntheticSeg
from .synthetic_seq import SyntheticSeq

DATASETS: dict[str, type[Dataset]] = {d.name: d for d in (Synthetic, MFeat, SyntheticSeq, SyntheticSeg)}

__all__ = ["DATASETS", "Dataset", "MultimodalData", "Split"]
