"""Synthetic multimodal data with controllable imbalance (DESIGN §11).

Each class owns `clusters` prototype points per modality; a sample of class y picks one of them
at random and adds Gaussian noise: x_m = strength_m · prototype_m[y, k] + noise · N(0, I).
A strong modality is a shortcut the fused net can fit fast; a weak one has prototypes close
together relative to the noise, so its encoder must learn a non-linear (multi-cluster) boundary.
Trained jointly, the weak encoder stops getting useful gradient once the shortcut has fitted the
training set — the imbalance CGGM is meant to fix. Regression (`task=regression`) draws a scalar
target z and shows it to modality m as strength_m · z · u_m plus a fixed random non-linearity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
else:
    from .._lazy import torch

from .. import tasks
from ..settings import Setting, SettingError
from .base import Dataset, MultimodalData, Split

DEFAULT_STRENGTHS = "3.0,3.0"


def _parse_strengths(raw: str, modalities: int) -> list[float]:
    try:
        values = [float(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise SettingError(f"setting 'strengths': {raw!r} is not a comma-separated list of numbers") from None
    if len(values) == 1:
        values = values * modalities
    if len(values) != modalities:
        raise SettingError(
            f"setting 'strengths': {raw!r} has {len(values)} values; expected 1 or modalities={modalities}"
        )
    if any(v < 0 or v > 100 for v in values):
        raise SettingError(f"setting 'strengths': {raw!r}; each value must be in [0, 100]")
    return values


class Synthetic(Dataset):
    name = "synthetic"
    help = "Generated on the fly, seeded by data_seed; modality 0 is a strong shortcut, the rest weaker."
    settings = [
        Setting("modalities", "int", 2, "number of modalities (named m0, m1, …)", min=2, max=8),
        Setting(
            "strengths",
            "str",
            DEFAULT_STRENGTHS,
            "signal strength per modality, comma-separated (one value = same for all)",
            pattern_help="comma-separated numbers, one per modality",
        ),
        Setting("noise", "float", 1.0, "standard deviation of the Gaussian noise", min=0.0, max=100.0),
        Setting("classes", "int", 6, "number of classes (classification)", min=2, max=100),
        Setting(
            "clusters", "int", 4, "prototype clusters per class in the weaker modalities (m0 has one)", min=1, max=20
        ),
        Setting("dim", "int", 16, "feature dimension of every modality", min=1, max=4096),
        Setting("task", "str", "classification", "task type", choices=("classification", "regression")),
        Setting("train_size", "int", 2000, "training samples", min=16, max=1_000_000),
        Setting("val_size", "int", 600, "validation samples", min=16, max=1_000_000),
        Setting("test_size", "int", 1200, "test samples", min=16, max=1_000_000),
    ]

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        _parse_strengths(cfg["strengths"], cfg["modalities"])

    @classmethod
    def modality_names(cls, cfg: Mapping[str, Any]) -> list[str]:
        return [f"m{i}" for i in range(int(cfg["modalities"]))]

    @classmethod
    def task_name(cls, cfg: Mapping[str, Any]) -> str:
        return str(cfg["task"])

    @classmethod
    def estimate_bytes(cls, cfg: Mapping[str, Any]) -> int:
        """Peak of `load`: every modality's float64 matrix (8·N·D each), the float32 splits made from
        them (4·N·D each), and the float64 temporaries of one modality while it is drawn (the picked
        prototypes, the noise and their sum: three N×D; regression's tanh(clean @ mix) and its
        parts: four). Measured (tests/backend/test_job_limits.py): the live peak is 0.7-0.9 of this;
        malloc may hold some freed memory on top."""
        n = int(cfg["train_size"]) + int(cfg["val_size"]) + int(cfg["test_size"])
        d, m = int(cfg["dim"]), int(cfg["modalities"])
        temporaries = 3 if cfg["task"] == "classification" else 4
        return n * d * (m * (8 + 4) + temporaries * 8)

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        M: int = cfg["modalities"]
        strengths = _parse_strengths(cfg["strengths"], M)
        names = cls.modality_names(cfg)
        rng = np.random.default_rng(data_seed)
        sizes = (cfg["train_size"], cfg["val_size"], cfg["test_size"])
        n = sum(sizes)
        d: int = cfg["dim"]
        noise: float = cfg["noise"]
        xs: dict[str, np.ndarray] = {}
        task: tasks.Task
        if cfg["task"] == "classification":
            C: int = cfg["classes"]
            K: int = cfg["clusters"]
            y = rng.integers(0, C, size=n)
            for name, s in zip(names, strengths, strict=True):
                protos = rng.standard_normal((C, K, d))
                protos /= np.linalg.norm(protos, axis=2, keepdims=True)  # unit prototypes: strength sets the scale
                # The shortcut modality is linear (one prototype per class); the others need
                # a non-linear boundary (K prototypes per class).
                k = rng.integers(0, 1 if name == names[0] else K, size=n)
                xs[name] = s * protos[y, k] + noise * rng.standard_normal((n, d))
            task = tasks.classification(C)
            y_t = torch.from_numpy(y).long()
        else:
            z = rng.standard_normal(n)
            for name, s in zip(names, strengths, strict=True):
                u = rng.standard_normal(d) / np.sqrt(d)
                mix = rng.standard_normal((d, d)) / np.sqrt(d)
                clean = np.outer(z, u) * s
                xs[name] = np.tanh(clean @ mix) * 2 + clean + noise * rng.standard_normal((n, d))
            task = tasks.regression(1)
            y_t = torch.from_numpy(z).float().reshape(n, 1)
        cuts = np.cumsum(sizes)[:-1]
        splits = []
        for part in np.split(np.arange(n), cuts):
            splits.append(Split({m: torch.from_numpy(x[part]).float() for m, x in xs.items()}, y_t[part]))
        return MultimodalData(
            name=cls.name,
            modalities=names,
            task=task,
            train=splits[0],
            val=splits[1],
            test=splits[2],
            info={"strengths": strengths},
        )
