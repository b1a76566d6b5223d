"""The dataset interface and the two data paths: in memory (`Split`) and file-backed (`LoaderSplit`).

A dataset is one file: a `Dataset` subclass declares its settings, and from its config alone its
modality names, its task, the kind of input each modality is (vector, sequence, image), its
default model and how much memory loading it takes — so the backend checks a job at POST without
loading anything — and `load` returns a `MultimodalData` whose splits are either

* `Split`: tensors held in memory (small data; moved to the device once), or
* `LoaderSplit`: any indexable sample source (files read per sample) behind a torch DataLoader
  (worker processes, pinned memory, a collate that pads variable-length sequences).

Both yield `Batch` objects from `batches(batch_size, generator)`, in the same order for the same
generator (one `torch.randperm` draws the order in both), so the two paths give the same run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch
else:
    from .._lazy import torch

from ..batch import Batch
from ..settings import Setting
from ..tasks import Task

InputKind = Literal["vector", "sequence", "image", "tokens"]
INPUT_KINDS: tuple[str, ...] = ("vector", "sequence", "image", "tokens")


@dataclass(frozen=True)
class InputSpec:
    """One modality's input: its kind and per-sample shape ((D,), (T, D) with T the longest,
    (C, H, W), or (T,) int64 token ids from a vocabulary of `vocab_size` ids, 0 the padding)."""

    kind: InputKind
    shape: tuple[int, ...]
    variable_length: bool = False  # sequences of unequal T (batches carry masks)
    vocab_size: int | None = None  # tokens only

    @property
    def features(self) -> int:
        """Width of one position: D of a vector or sequence, C (channels) of an image, the
        vocabulary size of token ids."""
        if self.kind == "tokens":
            assert self.vocab_size is not None, "a tokens input needs its vocab_size"
            return self.vocab_size
        return self.shape[-1] if self.kind != "image" else self.shape[0]


class DataSplit(Protocol):
    """What the trainer, the probe and evaluation need of a split."""

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]: ...

    def to(self, device: torch.device | str) -> DataSplit: ...


@dataclass
class Split:
    """A split held in memory: xs[m] (N, ...), y (N, ...), optional masks[m] (N, T) and groups (N,)."""

    xs: dict[str, torch.Tensor]
    y: torch.Tensor
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    groups: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(
            {m: x.to(device) for m, x in self.xs.items()},
            self.y.to(device),
            {m: k.to(device) for m, k in self.masks.items()},
            None if self.groups is None else self.groups.to(device),
        )

    def take(self, idx: torch.Tensor) -> Split:
        """The samples at `idx` (int64 (n,), on the host), in that order."""
        dev = self.y.device
        i = idx.to(dev)
        return Split(
            {m: x[i] for m, x in self.xs.items()},
            self.y[i],
            {m: k[i] for m, k in self.masks.items()},
            None if self.groups is None else self.groups[i],
        )

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Shuffled mini-batches when a generator is given, in order otherwise; last one may be short.

        Padded sequences are cut to the longest real length in the batch, as the DataLoader path's
        collate pads them, so both paths give a batch the same shape (and dropout the same draws).
        The lengths are read on the host: no device sync per batch.
        """
        n = len(self)
        order_cpu = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        order = order_cpu.to(self.y.device)
        lengths = {m: k.sum(dim=1).cpu() for m, k in self.masks.items()}  # (N,) real steps per sample
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            cut = {m: int(lengths[m][order_cpu[i : i + batch_size]].max()) for m in self.masks}
            yield Batch(
                {m: (x[idx, : cut[m]] if m in cut else x[idx]) for m, x in self.xs.items()},
                self.y[idx],
                {m: k[idx, : cut[m]] for m, k in self.masks.items()},
                None if self.groups is None else self.groups[idx],
            )


class SampleSource(Protocol):
    """Anything indexable that gives (xs, label) per sample (cggm_core.data.files sources do)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[Mapping[str, Any], Any]: ...


@dataclass
class LoaderSplit:
    """A file-backed split: samples read on demand by DataLoader workers, batches padded and masked.

    `set_epoch(e)` is forwarded to the source when it has one (e.g. BraTS's per-epoch slice draw).
    """

    source: SampleSource
    num_workers: int = 0
    pin_memory: bool = False
    groups: np.ndarray | None = None
    device: torch.device | str | None = None
    seed: int = 0

    def __len__(self) -> int:
        return len(self.source)

    def to(self, device: torch.device | str) -> LoaderSplit:
        return LoaderSplit(self.source, self.num_workers, self.pin_memory, self.groups, device, self.seed)

    def set_epoch(self, epoch: int) -> None:
        set_epoch = getattr(self.source, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def take(self, idx: torch.Tensor) -> LoaderSplit:
        """The samples at `idx` (int64 (n,), on the host), in that order, read from the same source."""
        rows = [int(i) for i in idx.tolist()]
        groups = None if self.groups is None else self.groups[rows]
        return LoaderSplit(
            SourceSubset(self.source, rows), self.num_workers, self.pin_memory, groups, self.device, self.seed
        )

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, shard: tuple[int, int] | None = None
    ) -> Iterator[Batch]:
        """`shard` = (rank, world): that rank's slice of each global batch only, read and padded on
        its own (several processes: each rank reads just its samples)."""
        from .loader import make_loader  # torch.utils.data: imported when a run reads files, not with the registry

        device = torch.device(self.device) if self.device is not None else torch.device("cpu")
        pin = self.pin_memory and device.type == "cuda"
        loader = make_loader(self.source, self.groups, batch_size, generator, self.num_workers, pin, self.seed, shard)
        for batch in loader:
            yield batch.to(device, non_blocking=pin)


@dataclass
class SourceSubset:
    """Some samples of a source, re-indexed from 0; `set_epoch` is passed on to the source."""

    source: SampleSource
    rows: list[int]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[Mapping[str, Any], Any]:
        return self.source[self.rows[i]]

    def set_epoch(self, epoch: int) -> None:
        set_epoch = getattr(self.source, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


def holdout_split(
    split: Split | LoaderSplit, fraction: float, seed: int
) -> tuple[Split | LoaderSplit, Split | LoaderSplit]:
    """(the rest, a held-out part): ⌈fraction·n⌉ samples drawn by a seeded permutation (at least one
    sample stays on each side). Both keep the original order of their samples."""
    n = len(split)
    if n < 2:
        raise ValueError(f"a held-out part needs a training split of at least 2 samples, this one has {n}")
    k = min(max(1, math.ceil(fraction * n)), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = order[:k].sort().values
    rest = order[k:].sort().values
    return split.take(rest), split.take(held)


@dataclass
class MultimodalData:
    name: str
    modalities: list[str]
    task: Task
    train: DataSplit
    val: DataSplit
    test: DataSplit
    info: dict[str, Any]
    inputs: dict[str, InputSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inputs and isinstance(self.train, Split):
            self.inputs = infer_inputs(self.train)

    @property
    def in_dims(self) -> dict[str, int]:
        """Features per modality: D of vectors and sequences, channels of images."""
        return {m: spec.features for m, spec in self.inputs.items()}


def infer_inputs(split: Split) -> dict[str, InputSpec]:
    """Input specs of an in-memory split from its tensors' shapes: (N, D) vector, (N, T, D) sequence,
    (N, C, H, W) image."""
    kinds: dict[int, InputKind] = {2: "vector", 3: "sequence", 4: "image"}
    out: dict[str, InputSpec] = {}
    for m, x in split.xs.items():
        if x.ndim not in kinds:
            raise ValueError(f"modality {m!r}: tensors of shape {tuple(x.shape)} are not vectors, sequences or images")
        out[m] = InputSpec(kinds[x.ndim], tuple(int(d) for d in x.shape[1:]), m in split.masks)
    return out


class Dataset:
    """A named data source. Subclasses declare `settings` and implement `load` (and what the config tells)."""

    name: ClassVar[str]
    help: ClassVar[str]
    settings: ClassVar[list[Setting]]
    default_model: ClassVar[str] = "mlp"

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        """Cross-setting validation beyond per-setting bounds (raise SettingError)."""

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        raise NotImplementedError

    @classmethod
    def modality_names(cls, cfg: Mapping[str, Any]) -> list[str] | None:
        """The modalities `load(cfg)` will give, known from the config alone; None when only loading tells.

        Lets `config.resolve` check dataset-dependent method settings (unimodal's `modality`)
        when a job is queued, not after a worker has claimed it.
        """
        return None

    @classmethod
    def task_name(cls, cfg: Mapping[str, Any]) -> str:
        """The task `load(cfg)` gives (a key of cggm_core.tasks.TASKS), from the config alone."""
        return "classification"

    @classmethod
    def input_kinds(cls, cfg: Mapping[str, Any]) -> dict[str, InputKind] | InputKind:
        """The kind of each modality's input, from the config alone (one kind for every modality, or
        per modality); the catalog and POST use it to refuse a model that cannot read the data."""
        return "vector"

    @classmethod
    def estimate_bytes(cls, cfg: Mapping[str, Any]) -> int | None:
        """Peak memory `load(cfg)` needs, in bytes, from the config alone; None when unknown.

        Lets a job whose data cannot fit be refused when it is queued, with the estimate.
        """
        return None

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The catalog entry (JSON-ready): settings, defaults, the default model, its kind of inputs."""
        defaults = {s.name: s.default for s in cls.settings}
        kinds = cls.input_kinds(defaults)
        return {
            "name": cls.name,
            "help": cls.help,
            "settings": [s.to_json() for s in cls.settings],
            "default_model": cls.default_model,
            "input_kinds": sorted(set(kinds.values())) if isinstance(kinds, dict) else [kinds],
            "task": cls.task_name(defaults),
        }


def stratified_split(
    y: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class shuffled split into train/val/test index arrays, seeded."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train : n_train + n_val])
        parts[2].append(idx[n_train + n_val :])
    return tuple(rng.permutation(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """z-score with the train split's statistics only (no leakage from val/test)."""
    mean = train.mean(axis=0, keepdims=True)
    std = train.std(axis=0, keepdims=True)
    std[std < 1e-8] = 1.0  # constant columns stay constant instead of dividing by zero
    return [(a - mean) / std for a in (train, *others)]


def kinds_of(kinds: Mapping[str, InputKind] | InputKind, modalities: Sequence[str] | None) -> set[str]:
    """The set of input kinds, from a per-modality map or a single kind."""
    if isinstance(kinds, str):
        return {kinds}
    return set(kinds.values()) if modalities is None else {kinds[m] for m in modalities if m in kinds}
