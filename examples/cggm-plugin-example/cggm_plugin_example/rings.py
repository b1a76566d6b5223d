"""`toy_rings`: points on concentric rings, seen by two modalities; the class is the ring.

    radius   (3,)  the point's distance from the centre, noisy, plus two pure-noise features:
                   a shortcut, since the class is a threshold on one number
    xy       (2,)  the point's coordinates: the same information, but the classes are rings in
                   the plane, so the encoder must learn a non-linear boundary

It is small and fast on purpose: it shows the plugin interface, not a result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cggm_core.data.base import Dataset, MultimodalData, Split
from cggm_core.settings import Setting

SPLIT = (0.6, 0.2, 0.2)  # train, val, test


class ToyRings(Dataset):
    name = "toy_rings"
    help = "Points on concentric rings (example plugin): a noisy radius (a shortcut) and the xy coordinates."
    # Names are unique across every dataset, method, model and the trainer: prefix your own.
    settings = [
        Setting("rings", "int", 3, "number of rings (classes)", min=2, max=20),
        Setting("ring_samples", "int", 600, "samples in all (60/20/20 train/val/test)", min=30, max=1_000_000),
        Setting(
            "ring_noise", "float", 0.1, "noise of the xy coordinates (the radius gets twice as much)", min=0.0, max=5.0
        ),
    ]
    default_model = "gated_mlp"

    @classmethod
    def modality_names(cls, cfg: Mapping[str, Any]) -> list[str]:
        return ["radius", "xy"]

    @classmethod
    def estimate_bytes(cls, cfg: Mapping[str, Any]) -> int:
        return int(cfg["ring_samples"]) * (3 + 2) * (8 + 4) * 2  # float64 draws, float32 splits, temporaries

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        import torch  # here, not at the top: the backend imports this module and must not load torch

        from cggm_core import tasks

        rng = np.random.default_rng(data_seed)
        n, k, noise = int(cfg["ring_samples"]), int(cfg["rings"]), float(cfg["ring_noise"])
        y = rng.integers(0, k, size=n)
        radius = 1.0 + y + rng.uniform(-0.3, 0.3, size=n)  # ring c spans [c + 0.7, c + 1.3]
        angle = rng.uniform(0.0, 2 * np.pi, size=n)
        xy = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1) + noise * rng.standard_normal((n, 2))
        rad = np.concatenate(
            [radius[:, None] + 2 * noise * rng.standard_normal((n, 1)), rng.standard_normal((n, 2))], 1
        )
        xs = {"radius": rad / k, "xy": xy / k}  # about unit scale whatever the number of rings
        cuts = (np.cumsum(SPLIT)[:-1] * n).astype(int)
        splits = [
            Split({m: torch.from_numpy(x[part]).float() for m, x in xs.items()}, torch.from_numpy(y[part]).long())
            for part in np.split(np.arange(n), cuts)
        ]
        return MultimodalData(
            name=cls.name,
            modalities=["radius", "xy"],
            task=tasks.classification(k),
            train=splits[0],
            val=splits[1],
            test=splits[2],
            info={"rings": k},
        )
