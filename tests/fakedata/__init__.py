"""Tiny files in exactly the formats of the paper's data sets, for the reader tests.

Each `write_*` writes one data set into a folder (or file) and returns what it wrote, so that a
test can check every value read back. `fault=` writes one bad-layout case instead (the names are
listed in each module's `FAULTS`), for the tests of the readers' errors.
"""

from __future__ import annotations

from .brats import BRATS_H5_FAULTS, BRATS_NIFTI_FAULTS, BratsTruth, write_brats_h5, write_brats_nifti
from .common import truncate
from .food101 import FOOD_FAULTS, FoodTruth, write_food101
from .iemocap import IEMOCAP_FAULTS, IemocapTruth, write_iemocap
from .mosi import MOSI_FAULTS, write_mosi

__all__ = [
    "BRATS_H5_FAULTS",
    "BRATS_NIFTI_FAULTS",
    "FOOD_FAULTS",
    "IEMOCAP_FAULTS",
    "MOSI_FAULTS",
    "BratsTruth",
    "FoodTruth",
    "IemocapTruth",
    "truncate",
    "write_brats_h5",
    "write_brats_nifti",
    "write_food101",
    "write_iemocap",
    "write_mosi",
]
