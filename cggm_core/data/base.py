"""In-memory multimodal splits and the dataset interface."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch
else:
    from .._lazy import torch

from ..settings import Setting
from ..tasks import Task


@dataclass
class Split:
    xs: dict[str, torch.Tensor]  # modality → (N, D_m)
    y: torch.Tensor  # (N,) class ids, or (N, T) regression targets

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split({m: x.to(device) for m, x in self.xs.items()}, self.y.to(device))

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """Shuffled mini-batches when a generator is given, in order otherwise; last one may be short."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        order = order.to(self.y.device)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            yield {m: x[idx] for m, x in self.xs.items()}, self.y[idx]


@dataclass
class MultimodalData:
    name: str
    modalities: list[str]
    task: Task
    train: Split
    val: Split
    test: Split
    info: dict[str, Any]

    @property
    def in_dims(self) -> dict[str, int]:
        return {m: int(x.shape[1]) for m, x in self.train.xs.items()}


class Dataset:
    """A named data source. Subclasses declare `settings` and implement `load`."""

    name: ClassVar[str]
    help: ClassVar[str]
    settings: ClassVar[list[Setting]]

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
    def estimate_bytes(cls, cfg: Mapping[str, Any]) -> int | None:
        """Peak memory `load(cfg)` needs, in bytes, from the config alone; None when unknown.

        Lets a job whose data cannot fit be refused when it is queued, with the estimate.
        """
        return None


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
