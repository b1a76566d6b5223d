"""Stand-ins for the paper's data sets, registered under their names for a test (`register`).

The real loaders (`mosi`, `iemocap`, `food101`, `brats` in cggm_core/data) are written on another
branch; the presets and bench/paper are keyed by those names. These stand-ins declare what
`config.resolve` reads (task, input kinds, default model, modality names, a `path`), and `mosi`
also loads: it reads a real MulT pickle with the real reader (`cggm_core.data.files.read_mosi`)
under the data root, so `cggm train --preset mosi` and bench/paper run end to end on tiny files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from cggm_core.data import DATASETS
from cggm_core.data.base import Dataset, InputKind, MultimodalData, Split
from cggm_core.data.files import read_mosi, resolve_under_root
from cggm_core.settings import Setting
from cggm_core.tasks import regression

PATH = Setting("path", "str", "", "the data set's file or folder, relative to the data root ($CGGM_DATA_DIR)")


class _StandIn(Dataset):
    help = "a test stand-in for a paper data set"
    settings: ClassVar[list[Setting]] = [PATH]
    task: ClassVar[str]
    kind: ClassVar[InputKind]
    modalities: ClassVar[tuple[str, ...]]

    @classmethod
    def task_name(cls, cfg: Mapping[str, Any]) -> str:
        return cls.task

    @classmethod
    def input_kinds(cls, cfg: Mapping[str, Any]) -> InputKind:
        return cls.kind

    @classmethod
    def modality_names(cls, cfg: Mapping[str, Any]) -> list[str]:
        return list(cls.modalities)


class Mosi(_StandIn):
    name = "mosi"
    task = "regression"
    kind = "sequence"
    modalities = ("text", "audio", "vision")
    default_model = "transformer"

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        files = read_mosi(resolve_under_root(cfg["path"]))

        def split(source: Any) -> Split:
            xs, y = source.arrays()
            return Split(
                {m: torch.from_numpy(x) for m, x in xs.items()}, torch.from_numpy(y.astype(np.float32))[:, None]
            )

        return MultimodalData(
            "mosi", list(cls.modalities), regression(), split(files.train), split(files.valid), split(files.test), {}
        )


class Iemocap(_StandIn):
    name = "iemocap"
    task = "classification"
    kind = "sequence"
    modalities = ("text", "audio", "vision")
    default_model = "transformer"


class Food101(_StandIn):
    name = "food101"
    task = "classification"
    kind = "sequence"  # precomputed ViT / BERT token features, as the official model reads
    modalities = ("image", "text")
    default_model = "transformer"


class Brats(_StandIn):
    name = "brats"
    task = "segmentation"
    kind = "image"
    modalities = ("flair", "t1ce", "t1", "t2")
    default_model = "segnet"


STANDINS: dict[str, type[Dataset]] = {d.name: d for d in (Mosi, Iemocap, Food101, Brats)}


def register(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Put the stand-ins (all, or those named) into the dataset registry for this test."""
    for name in names or tuple(STANDINS):
        monkeypatch.setitem(DATASETS, name, STANDINS[name])
