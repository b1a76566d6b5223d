"""Synthetic sequence modalities with controllable imbalance: what happens vs when it happens.

M modalities m0 … m(M−1), each a sequence of its own length T_m and width D_m; with
`variable_length` every sample draws its own length L in [⌈min_length_ratio·T_m⌉, T_m] per modality
(batches are zero-padded and carry masks). Every real step is signal plus N(0, noise²·I) noise:

* m0, the shortcut, says *what*: the same vector at every step, strength_0 · p[y] (classification,
  one unit prototype per class) or strength_0 · z · u (regression, a unit direction u). Averaging
  over time removes the noise: a linear read-out of the mean solves the task, fast.
* m1 … m(M−1) say *when*: one event vector e_m (unit, strength_m) during a block of steps whose
  position encodes the label; every other step is noise. Positions count from the first step,
  within L = the shortest length any sample of that modality has (⌈min_length_ratio·T_m⌉), so
  every sample has the whole room. Classification: the block is time bin y of C equal bins
  (width ⌊L/C⌋, starting at y·⌊L/C⌋). Regression: a block of width max(1, ⌊L/4⌋)
  starting at round(σ(1.702·z)·(L − width)), σ(1.702·z) ≈ Φ(z): the later the block, the larger z
  (a block past the middle means z > 0). The block has the same width for every label, so the
  time-average of a sequence carries no label information: an encoder must learn to tell
  positions apart.

Trained jointly, the fused model fits the shortcut within a few epochs and the timing encoders
stop getting gradient; trained alone (`unimodal`), a timing encoder learns the positions. The test
(tests/test_synthetic_seq.py) measures that gap with the linear probe. The target is y (class ids)
or z ~ N(0, 1) (regression, shape (N, 1)); splits are the first train_size, the next val_size and
the last test_size samples. `dataloader` serves the same tensors through a torch DataLoader
(`LoaderSplit`, per-sample sequences of their real length, padded per batch by `pad_collate`),
the path file-backed data takes; it gives the same run as the in-memory one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
else:
    from .._lazy import torch

from .. import tasks
from ..settings import Setting, SettingError
from .base import Dataset, DataSplit, InputKind, InputSpec, LoaderSplit, MultimodalData, Split
from .synthetic import _parse_strengths

REGRESSION_BLOCK = 4  # regression: the event lasts a quarter of the sequence


def _parse_ints(name: str, raw: str, modalities: int, lo: int, hi: int) -> list[int]:
    """A comma-separated list of integers, one per modality (one value = the same for all)."""
    try:
        values = [int(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise SettingError(f"setting '{name}': {raw!r} is not a comma-separated list of integers") from None
    if len(values) == 1:
        values = values * modalities
    if len(values) != modalities:
        raise SettingError(f"setting '{name}': {raw!r} has {len(values)} values; expected 1 or modalities={modalities}")
    if any(v < lo or v > hi for v in values):
        raise SettingError(f"setting '{name}': {raw!r}; each value must be in [{lo}, {hi}]")
    return values


def _min_length(longest: int, ratio: float, variable: bool) -> int:
    return max(1, math.ceil(ratio * longest)) if variable else longest


class SequenceSamples:
    """A sample source over padded arrays: sample i is ({m: x_m[i, :L_m,i]}, label), sequences of
    their real length, as a file reader gives them (the DataLoader path pads them per batch)."""

    def __init__(self, xs: Mapping[str, np.ndarray], lengths: Mapping[str, np.ndarray], y: np.ndarray) -> None:
        self.xs = dict(xs)  # m → (N, T_m, D_m) float32
        self.lengths = dict(lengths)  # m → (N,) int64
        self.y = y  # (N,) int64 class ids or (N, 1) float32 targets

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[dict[str, np.ndarray], Any]:
        xs = {m: x[i, : int(self.lengths[m][i])] for m, x in self.xs.items()}  # (L_m,i, D_m)
        return xs, (int(self.y[i]) if self.y.ndim == 1 else self.y[i])


class SyntheticSeq(Dataset):
    name = "synthetic_seq"
    help = (
        "Generated sequences, seeded by data_seed: m0 says what the label is at every step (a shortcut), "
        "the others say it only by when an event happens."
    )
    default_model = "transformer"
    settings = [
        Setting("modalities", "int", 2, "number of modalities (named m0, m1, …)", min=2, max=8),
        Setting(
            "strengths",
            "str",
            "1.0,3.0",
            "signal strength per modality, comma-separated (one value = same for all)",
            pattern_help="comma-separated numbers, one per modality",
        ),
        Setting("noise", "float", 1.0, "standard deviation of the Gaussian noise", min=0.0, max=100.0),
        Setting("classes", "int", 4, "number of classes (classification; also the timing bins)", min=2, max=64),
        Setting("task", "str", "classification", "task type", choices=("classification", "regression")),
        Setting(
            "lengths",
            "str",
            "16,24",
            "longest sequence per modality (steps), comma-separated (one value = same for all)",
            pattern_help="comma-separated integers, one per modality",
        ),
        Setting(
            "widths",
            "str",
            "8,12",
            "features per step per modality, comma-separated (one value = same for all)",
            pattern_help="comma-separated integers, one per modality",
        ),
        Setting("variable_length", "bool", True, "each sample draws its own length per modality (padded, masked)"),
        Setting(
            "min_length_ratio",
            "float",
            0.5,
            "variable_length: shortest sequence as a fraction of the longest",
            min=0.01,
            max=1.0,
        ),
        Setting("dataloader", "bool", False, "serve batches through a torch DataLoader (the file-backed path)"),
        Setting("train_size", "int", 2000, "training samples", min=16, max=1_000_000),
        Setting("val_size", "int", 500, "validation samples", min=16, max=1_000_000),
        Setting("test_size", "int", 1000, "test samples", min=16, max=1_000_000),
    ]

    @classmethod
    def shapes(cls, cfg: Mapping[str, Any]) -> tuple[list[int], list[int]]:
        """(longest length, width) per modality, parsed and checked."""
        m = int(cfg["modalities"])
        return _parse_ints("lengths", cfg["lengths"], m, 1, 100_000), _parse_ints("widths", cfg["widths"], m, 1, 4096)

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        _parse_strengths(cfg["strengths"], cfg["modalities"])
        lengths, _ = cls.shapes(cfg)
        if cfg["task"] == "classification":
            for i, t in enumerate(lengths):
                shortest = _min_length(t, cfg["min_length_ratio"], cfg["variable_length"])
                if i > 0 and shortest < cfg["classes"]:
                    raise SettingError(
                        f"setting 'lengths': m{i} can be {shortest} steps long, fewer than classes={cfg['classes']} "
                        "timing bins; make it longer (or raise min_length_ratio)"
                    )

    @classmethod
    def modality_names(cls, cfg: Mapping[str, Any]) -> list[str]:
        return [f"m{i}" for i in range(int(cfg["modalities"]))]

    @classmethod
    def task_name(cls, cfg: Mapping[str, Any]) -> str:
        return str(cfg["task"])

    @classmethod
    def input_kinds(cls, cfg: Mapping[str, Any]) -> InputKind:
        return "sequence"

    @classmethod
    def estimate_bytes(cls, cfg: Mapping[str, Any]) -> int:
        """Peak of `load`: every modality's float32 tensor (4·N·T·D) and mask (N·T), plus one
        modality's float64 noise and its float32 copy while it is drawn (12·N·T·D of the largest).
        Measured with tracemalloc (tests/test_synthetic_seq.py): 0.8-0.95 of this."""
        n = int(cfg["train_size"]) + int(cfg["val_size"]) + int(cfg["test_size"])
        lengths, widths = cls.shapes(cfg)
        sizes = [t * d for t, d in zip(lengths, widths, strict=True)]
        return n * (4 * sum(sizes) + sum(lengths) + 12 * max(sizes))

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        names = cls.modality_names(cfg)
        strengths = _parse_strengths(cfg["strengths"], len(names))
        longest, widths = cls.shapes(cfg)
        classification = cfg["task"] == "classification"
        variable: bool = cfg["variable_length"]
        noise: float = cfg["noise"]
        C: int = cfg["classes"]
        rng = np.random.default_rng(data_seed)
        sizes = (cfg["train_size"], cfg["val_size"], cfg["test_size"])
        n = sum(sizes)
        y = rng.integers(0, C, size=n) if classification else rng.standard_normal(n)
        xs: dict[str, np.ndarray] = {}
        lengths: dict[str, np.ndarray] = {}
        reals: dict[str, np.ndarray] = {}
        for i, (m, s, t_max, d) in enumerate(zip(names, strengths, longest, widths, strict=True)):
            shortest = _min_length(t_max, cfg["min_length_ratio"], variable)
            length = rng.integers(shortest, t_max + 1, size=n)  # (N,)
            steps = np.arange(t_max)  # (T,)
            real = steps[None, :] < length[:, None]  # (N, T)
            direction = rng.standard_normal((C if classification and i == 0 else 1, d))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)  # unit: the strength sets the scale
            x = noise * rng.standard_normal((n, t_max, d))  # (N, T, D) float64
            if i == 0:  # the shortcut: the label's vector at every step
                amplitude = s * (direction[y] if classification else y[:, None] * direction[0])  # (N, D)
                x += amplitude[:, None, :]  # broadcast in place
            else:  # the timing modality: the event during a label-dependent block
                # Positions count from the start, within the shortest length every sample has.
                if classification:
                    width = shortest // C
                    start = y * width  # (N,)
                else:
                    width = max(1, shortest // REGRESSION_BLOCK)
                    tau = 1.0 / (1.0 + np.exp(-1.702 * y))  # ≈ Φ(z), in (0, 1)
                    start = np.rint(tau * (shortest - width)).astype(np.int64)  # (N,)
                block = (steps[None, :] >= start[:, None]) & (steps[None, :] < start[:, None] + width)  # (N, T)
                x[block] += s * direction[0]  # in place: no (N, T, D) temporary
            x *= real[:, :, None]  # padded steps are zeros
            xs[m] = x.astype(np.float32)
            lengths[m] = length
            reals[m] = real
        y_np = y.astype(np.int64) if classification else y.astype(np.float32).reshape(n, 1)
        task: tasks.Task = tasks.classification(C) if classification else tasks.regression(1)
        inputs = {m: InputSpec("sequence", (t, d), variable) for m, t, d in zip(names, longest, widths, strict=True)}
        bounds = np.cumsum((0, *sizes))
        splits: list[DataSplit] = []
        for lo, hi in itertools.pairwise(bounds):
            part = slice(int(lo), int(hi))
            if cfg["dataloader"]:
                source = SequenceSamples(
                    {m: x[part] for m, x in xs.items()}, {m: k[part] for m, k in lengths.items()}, y_np[part]
                )
                splits.append(LoaderSplit(source))
            else:
                masks = {m: torch.from_numpy(r[part]) for m, r in reals.items()} if variable else {}
                splits.append(
                    Split({m: torch.from_numpy(x[part]) for m, x in xs.items()}, torch.from_numpy(y_np[part]), masks)
                )
        return MultimodalData(
            name=cls.name,
            modalities=names,
            task=task,
            train=splits[0],
            val=splits[1],
            test=splits[2],
            info={"strengths": strengths, "lengths": longest, "widths": widths},
            inputs=inputs,
        )
