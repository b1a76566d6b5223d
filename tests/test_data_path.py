"""The two data paths: in-memory `Split` and file-backed `LoaderSplit` (DataLoader, padding collate)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from cggm_core import data as data_registry
from cggm_core.batch import pad_collate
from cggm_core.config import resolve
from cggm_core.data.base import LoaderSplit, MultimodalData, Split
from cggm_core.data.synthetic import Synthetic
from cggm_core.tracking import MemorySink
from cggm_core.trainer import train


def test_pad_collate_pads_to_the_longest_and_masks() -> None:
    samples = [
        ({"seq": np.ones((2, 3), np.float32), "vec": np.array([1.0, 2.0], np.float32)}, 1),
        ({"seq": np.full((4, 3), 2.0, np.float32), "vec": np.array([3.0, 4.0], np.float32)}, 0),
    ]
    b = pad_collate(samples)
    assert b.xs["seq"].shape == (2, 4, 3) and b.xs["vec"].shape == (2, 2)
    assert_close(b.xs["seq"][0, 2:], torch.zeros(2, 3))  # zero padding after the real steps
    assert b.masks["seq"].tolist() == [[True, True, False, False], [True, True, True, True]]
    assert "vec" not in b.masks  # equal shapes: stacked, no mask
    assert b.y.tolist() == [1, 0] and b.groups is None


def test_pad_collate_carries_groups_and_refuses_unpaddable_shapes() -> None:
    b = pad_collate([({"a": np.zeros(2, np.float32)}, 0.5, 7), ({"a": np.zeros(2, np.float32)}, -0.5, 9)])
    assert b.groups is not None and b.groups.tolist() == [7, 9] and b.y.dtype == torch.float32
    with pytest.raises(ValueError, match="modality 'img'"):
        pad_collate([({"img": np.zeros((1, 4, 4))}, 0), ({"img": np.zeros((1, 5, 5))}, 0)])


class TensorSource:
    """A sample source over in-memory tensors (what a file reader gives, without the files)."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[dict[str, np.ndarray], Any]:
        return {m: x[i].numpy() for m, x in self.split.xs.items()}, self.split.y[i].numpy()


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_split_yields_the_in_memory_batches(workers: int) -> None:
    split = Split({"a": torch.randn(50, 3), "b": torch.randn(50, 2)}, torch.randint(0, 4, (50,)))
    loader = LoaderSplit(TensorSource(split), num_workers=workers)
    for gen_seed in (None, 5):
        gens = [None, None] if gen_seed is None else [torch.Generator().manual_seed(gen_seed) for _ in range(2)]
        mem = list(split.batches(16, generator=gens[0]))
        got = list(loader.batches(16, generator=gens[1]))
        assert [len(b) for b in got] == [16, 16, 16, 2]
        for x, y in zip(mem, got, strict=True):
            assert_close(x.y, y.y)
            for m in ("a", "b"):
                assert_close(x.xs[m], y.xs[m])


class FileBackedSynthetic(Synthetic):
    """`synthetic`, served through the file-backed path (a DataLoader over a sample source)."""

    name: ClassVar[str] = "synthetic_files_test"

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        d = Synthetic.load(cfg, data_seed)
        inputs = d.inputs
        splits = [LoaderSplit(TensorSource(s)) for s in (d.train, d.val, d.test)]  # type: ignore[arg-type]
        return MultimodalData(d.name, d.modalities, d.task, *splits, d.info, inputs)


def test_the_file_backed_path_trains_exactly_like_the_in_memory_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(data_registry.DATASETS, FileBackedSynthetic.name, FileBackedSynthetic)
    common = {
        "method": "cggm",
        "epochs": 2,
        "train_size": 200,
        "val_size": 64,
        "test_size": 64,
        "batch_size": 32,
        "probe_steps": 20,
        "log_every": 1,
    }
    runs = {}
    for name in ("synthetic", FileBackedSynthetic.name):
        sink = MemorySink()
        result = train(resolve({"dataset": name, **common}), device="cpu", sink=sink)
        runs[name] = (sink, result.summary)
    (mem_sink, mem), (file_sink, files) = runs["synthetic"], runs[FileBackedSynthetic.name]
    assert len(mem_sink.points) == len(file_sink.points) > 0
    for key in ("train/loss", "coef/m0", "acc/m1", "val/acc", "val/contrib/m0"):
        a, b = mem_sink.series(key), file_sink.series(key)
        assert [s for s, _ in a] == [s for s, _ in b] and a
        assert_close(torch.tensor([v for _, v in a]), torch.tensor([v for _, v in b]))
    assert mem["test"] == files["test"] and mem["probe"] == files["probe"]
