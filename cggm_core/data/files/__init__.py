"""Readers for the paper's data sets from the user's own files (issue 11), one module per format.

Each `read_*` takes the resolved path of the data set (see `resolve_under_root`) and returns a
`FileDataset`; every problem with a file is a `DataFormatError` naming it. The readers need the
`data` extra (h5py, nibabel, Pillow), imported only when a reader runs; nothing here imports torch.

| reader | format | task | modalities |
|---|---|---|---|
| `read_mosi(path, name=)` | MulT pickle (MOSI, MOSEI) | regression | text, audio, vision |
| `read_iemocap(folder, fold=)` | MMIN h5 features + target/<fold>/*.npy | 4 classes | text, audio, vision |
| `read_food101(folder, ...)` | UPMC json + images, or feature .npy | 101 classes | image, text |
| `read_brats(folder, ...)` | official h5 or BraTS 2021 NIfTI | segmentation | flair, t1ce, t1, t2 |
"""

from __future__ import annotations

from .brats import BratsEvalSlices, BratsTrainSlices, read_brats
from .common import SPLITS, ArraySplit, DataFormatError, FileDataset, Sample, SampleSource
from .food101 import FOOD101_CLASSES, FoodSplit, Vocabulary, read_food101
from .iemocap import IemocapSplit, read_iemocap
from .images import ImagePipeline
from .mosi import read_mosi
from .root import DATA_DIR_ENV, DataPathError, check_relative_path, data_root, resolve_under_root

__all__ = [
    "DATA_DIR_ENV",
    "FOOD101_CLASSES",
    "SPLITS",
    "ArraySplit",
    "BratsEvalSlices",
    "BratsTrainSlices",
    "DataFormatError",
    "DataPathError",
    "FileDataset",
    "FoodSplit",
    "IemocapSplit",
    "ImagePipeline",
    "Sample",
    "SampleSource",
    "Vocabulary",
    "check_relative_path",
    "data_root",
    "read_brats",
    "read_food101",
    "read_iemocap",
    "read_mosi",
    "resolve_under_root",
]
