"""IEMOCAP from the user's MMIN-style feature folder (4 emotion classes; text, audio, vision sequences).

`path` is the folder under the data root holding A/comparE.h5, A/comparE_mean_std.h5,
V/denseface.h5, L/bert_large.h5 and target/<fold>/{trn,val,tst}_{label,int2name}.npy (the
reader, cggm_core.data.files.iemocap, says what each holds). `fold` picks the cross-validation
fold (1–10; the official runs fold 1). Audio is z-normalised with the fold's training statistics.

Utterances differ in length, so samples are read per utterance from the HDF5 files by the
DataLoader (`LoaderSplit`) and padded per batch by `pad_collate`, which gives the masks the
transformer reads (the official pads audio to 350 frames and attends to the padding; we mask it).
Every id of every split is checked against the three feature files when the run starts, from the
HDF5 metadata, before any feature is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import tasks
from ..settings import Setting
from .base import InputKind, InputSpec, LoaderSplit, MultimodalData
from .files import read_iemocap
from .files.iemocap import MODALITIES, NUM_CLASSES
from .from_files import FileBacked, path_setting


class Iemocap(FileBacked):
    name = "iemocap"
    help = (
        "IEMOCAP from your MMIN feature folder under the data root ($CGGM_DATA_DIR): 4 emotions from "
        "text, audio and vision sequences of varying length"
    )
    default_model = "transformer"
    settings = [
        path_setting("iemocap", "the MMIN feature folder (A/, V/, L/, target/)"),
        Setting("fold", "int", 1, "cross-validation fold: target/<fold>/ and its audio statistics", min=1, max=10),
    ]

    @classmethod
    def modality_names(cls, cfg: Mapping[str, Any]) -> list[str]:
        return list(MODALITIES)

    @classmethod
    def task_name(cls, cfg: Mapping[str, Any]) -> str:
        return "classification"

    @classmethod
    def input_kinds(cls, cfg: Mapping[str, Any]) -> InputKind:
        return "sequence"

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        # data_seed is unused: the fold's target files fix the splits.
        ds = read_iemocap(cls.resolve_path(cfg), fold=int(cfg["fold"]))
        inputs = {
            m: InputSpec("sequence", (ds.seq_lens[m], ds.feature_dims[m]), variable_length=True) for m in MODALITIES
        }
        return MultimodalData(
            name=cls.name,
            modalities=list(MODALITIES),
            task=tasks.classification(NUM_CLASSES),
            train=LoaderSplit(ds.train),
            val=LoaderSplit(ds.valid),
            test=LoaderSplit(ds.test),
            info={**ds.info, "sizes": [len(ds.train), len(ds.valid), len(ds.test)]},
            inputs=inputs,
        )
