"""What every file reader shares: its one error class, the per-split sample sources, the result.

A reader turns a user's files into a `FileDataset`: three splits (`train`, `valid`, `test`), each
a `SampleSource` (`len(source)`, `source[i] -> ({modality: array}, label)`), plus the metadata a
model needs (modality names, feature dims, sequence lengths, task kind, number of classes).
Small data is held as arrays (`ArraySplit`, whose `arrays()` feeds the in-memory path); large
data is read per sample from the files, so that no data set has to fit in memory.

Every problem with a file raises `DataFormatError`, whose message starts with the file and says
what is wrong with it. File-format libraries (h5py, nibabel, Pillow: the `data` extra) are imported
inside functions, never at module level: the backend imports cggm_core without them (and without
torch).
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np

SPLITS: tuple[str, str, str] = ("train", "valid", "test")

TaskKind = Literal["classification", "regression", "segmentation"]
# A sample's label: a class id, a regression target, or an (H, W) mask of class ids.
Label = int | float | np.ndarray
Sample = tuple[dict[str, np.ndarray], Label]


class DataFormatError(ValueError):
    """A data file is missing or malformed. `str(err)` is one line: "<file>: <what is wrong>".

    It survives the trip out of a DataLoader worker process as that one line: torch re-raises a
    worker's exception as `type(err)(<the formatted traceback>)`, and a single argument is read
    back from the traceback's last line (`...DataFormatError: <file>: <what is wrong>`). Without
    that, a bad file met in a worker process would end the run with "Caught DataFormatError in
    DataLoader worker process 0." as its reason, or (failing to rebuild us) as a RuntimeError.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str | None = None) -> None:
        if problem is None:
            path, problem = _from_message(str(path))
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.problem))


def _from_message(text: str) -> tuple[str, str]:
    """(file, problem) from "<file>: <problem>", or from a traceback whose last such line holds it."""
    marker = "DataFormatError: "
    lines = [ln for ln in text.splitlines() if marker in ln]
    one = lines[-1].split(marker, 1)[1] if lines else text.strip()
    path, sep, problem = one.partition(": ")
    return (path, problem) if sep else ("<unknown file>", one)


def optional_module(name: str) -> ModuleType:
    """Import a file-format library of the `data` extra, or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(
            f"reading this data set needs the Python package {name!r}: install the 'data' extra "
            f"(pip install 'cggm-monitor[data]')"
        ) from e


def require_file(path: Path, layout: str) -> Path:
    """`path` if it is a file; otherwise the one-line error that names the expected layout."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise DataFormatError(path, f"{what}; expected {layout}")
    return path


def require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "no such folder"
        raise DataFormatError(path, f"{what}; expected {layout}")
    return path


def load_npy(path: Path, layout: str, *, mmap: bool = False) -> np.ndarray:
    """np.load with the format's errors mapped to DataFormatError (object arrays are refused)."""
    require_file(path, layout)
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        # numpy raises ValueError for a bad header or pickled objects, OSError/EOFError when short.
        raise DataFormatError(path, f"truncated or not a .npy file ({type(e).__name__}: {e})") from e
    if not isinstance(arr, np.ndarray):
        raise DataFormatError(path, "holds an .npz archive, expected a single .npy array")
    return arr


def open_h5(path: Path, layout: str) -> Any:
    """Open an HDF5 file read-only; a short or foreign file is a DataFormatError naming it."""
    h5py = optional_module("h5py")
    require_file(path, layout)
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DataFormatError(path, f"truncated or not an HDF5 file ({e})") from e


class SampleSource(ABC):
    """One split, indexable: `source[i] -> ({modality: array}, label)`.

    Feature arrays are float32; raw text is the exception (an (n,) str array of tokens, or (n,)
    int64 token ids). The label is an int (classification), a float (regression) or an (h, w)
    int64 mask (segmentation).

    Safe to hand to DataLoader worker processes: sources that hold open files reopen them in
    each process (the handles are dropped when the source is pickled or forked).
    """

    split: str
    modalities: tuple[str, ...]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, i: int) -> Sample: ...

    @property
    def labels(self) -> np.ndarray | None:
        """All labels as an (N,) array when they are known without reading the samples."""
        return None

    def _index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for the {self.split} split of {n} samples")
        return i % n


class ArraySplit(SampleSource):
    """A split held as arrays: `xs[m]` is (N, T, D) or (N, D), `y` is (N,).

    `rows` selects rows of shared (possibly memory-mapped) arrays without copying them, so that
    a validation split carved from a memory-mapped training file stays on disk.
    """

    def __init__(self, split: str, xs: Mapping[str, np.ndarray], y: np.ndarray, rows: np.ndarray | None = None) -> None:
        self.split = split
        self.modalities = tuple(xs)
        self.xs = dict(xs)
        self.y = y
        self.rows = rows

    def __len__(self) -> int:
        return int(len(self.rows) if self.rows is not None else len(self.y))

    def __getitem__(self, i: int) -> Sample:
        i = self._index(i)
        r = int(self.rows[i]) if self.rows is not None else i
        return {m: np.asarray(x[r], dtype=np.float32) for m, x in self.xs.items()}, self.y[r].item()

    @property
    def labels(self) -> np.ndarray:
        return self.y[self.rows] if self.rows is not None else self.y

    def arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The whole split in memory: ({m: (N, ...) float32}, (N,) labels), for the in-memory path."""
        pick = (lambda a: a[self.rows]) if self.rows is not None else (lambda a: a)
        return {m: np.asarray(pick(x), dtype=np.float32) for m, x in self.xs.items()}, pick(self.y)


class H5Handles:
    """HDF5 files opened on first use in the current process, reopened after a fork or a pickle.

    h5py handles must not cross a fork (DataLoader workers): each process opens its own.
    """

    def __init__(self, paths: Mapping[str, Path], layout: str) -> None:
        self.paths = dict(paths)
        self.layout = layout
        self._files: dict[str, Any] = {}
        self._pid = os.getpid()

    def __getitem__(self, key: str) -> Any:
        if self._pid != os.getpid():
            self._files = {}  # inherited from the parent: never use them here
            self._pid = os.getpid()
        f = self._files.get(key)
        if f is None:
            f = self._files[key] = open_h5(self.paths[key], self.layout)
        return f

    def close(self) -> None:
        if self._pid == os.getpid():
            for f in self._files.values():
                f.close()
        self._files = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"paths": self.paths, "layout": self.layout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["paths"], state["layout"])  # type: ignore[misc]


@dataclass(frozen=True)
class FileDataset:
    """A data set read from the user's files.

    - `feature_dims[m]`: the last axis of a sequence/vector modality (D), the channels of an image.
    - `sample_shapes[m]`: one sample's array shape; `None` marks a length that varies per sample.
    - `seq_lens[m]`: for sequence modalities, the (longest) length T over all splits.
    - `num_classes`: classes (classification, segmentation incl. background); None for regression.
    - `info`: format-specific facts (the files read, `aligned`, `fold`, `class_names`, …).
    """

    name: str
    task: TaskKind
    modalities: tuple[str, ...]
    num_classes: int | None
    feature_dims: dict[str, int]
    sample_shapes: dict[str, tuple[int | None, ...]]
    train: SampleSource
    valid: SampleSource
    test: SampleSource
    seq_lens: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def splits(self) -> dict[str, SampleSource]:
        return {"train": self.train, "valid": self.valid, "test": self.test}


def seeded_holdout(labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..N-1 into (kept, held out), stratified by label, seeded.

    round(fraction · N) samples are held out (at least one when fraction > 0), shared among the
    classes in proportion to their sizes (largest remainders get the rounding), and every class
    keeps at least one sample. Both index arrays come back sorted.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    target = int(round(fraction * len(y)))
    if fraction > 0:
        target = max(target, 1)
    target = min(target, int((counts - 1).sum()))
    quota = fraction * counts
    n_out = np.minimum(np.floor(quota).astype(np.int64), counts - 1)
    # Hand out what rounding down left, largest remainder first (ties: the smaller class id).
    for c in np.argsort(-(quota - np.floor(quota)), kind="stable"):
        if n_out.sum() >= target:
            break
        if n_out[c] < counts[c] - 1:
            n_out[c] += 1
    rng = np.random.default_rng(seed)
    held = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, n_out, strict=True)]
    out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(y)), out)
    return kept, out
