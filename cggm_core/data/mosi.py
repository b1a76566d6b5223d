"""CMU-MOSI and CMU-MOSEI from the user's MulT pickle (regression; text, audio, vision sequences).

`path` is the .pkl file under the data root: MulT's `mosi_data.pkl` / `mosei_senti_data.pkl`
(aligned, one T for all) or `*_noalign.pkl` (a T per modality); both work. The reader
(cggm_core.data.files.mosi) checks the layout, sets audio's −inf to 0 as the official `CMUData`,
and refuses labels outside [−3, 3] and other non-finite values, naming the file.

The arrays are held in memory (a few GB at most, as the official holds them): in-memory `Split`s,
moved to the device once. The sequences are MulT's fixed-length, zero-padded ones and carry no
masks (the files hold no lengths). Targets are (N, 1) sentiment scores; the task is regression
(L1 loss, sign accuracy as ε, MAE among the evaluation metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import tasks
from .base import InputKind, InputSpec, MultimodalData
from .files import read_mosi
from .files.mosi import MODALITIES
from .from_files import FileBacked, memory_split, path_setting


class Mosi(FileBacked):
    name = "mosi"
    help = (
        "CMU-MOSI from your MulT pickle under the data root ($CGGM_DATA_DIR): sentiment regression "
        "on text, audio and vision sequences"
    )
    default_model = "transformer"
    default_path = "mosi/mosi_data.pkl"

    settings = [path_setting(default_path, "the MulT pickle (.pkl)")]

    @classmethod
    def modality_names(cls, cfg: Mapping[str, Any]) -> list[str]:
        return list(MODALITIES)

    @classmethod
    def task_name(cls, cfg: Mapping[str, Any]) -> str:
        return "regression"

    @classmethod
    def input_kinds(cls, cfg: Mapping[str, Any]) -> InputKind:
        return "sequence"

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        # data_seed is unused: the pickle fixes the splits.
        ds = read_mosi(cls.resolve_path(cfg), name=cls.name)
        splits = [memory_split(s, regression=True) for s in (ds.train, ds.valid, ds.test)]
        inputs = {m: InputSpec("sequence", (ds.seq_lens[m], ds.feature_dims[m])) for m in MODALITIES}
        return MultimodalData(
            name=cls.name,
            modalities=list(MODALITIES),
            task=tasks.regression(1),
            train=splits[0],
            val=splits[1],
            test=splits[2],
            info={**ds.info, "sizes": [len(s) for s in splits]},
            inputs=inputs,
        )


class Mosei(Mosi):
    name = "mosei"
    help = (
        "CMU-MOSEI from your MulT pickle under the data root ($CGGM_DATA_DIR): sentiment regression "
        "on text, audio and vision sequences"
    )
    default_path = "mosei/mosei_senti_data.pkl"
    settings = [path_setting(default_path, "the MulT pickle (.pkl)")]
