"""Synthetic BraTS-like scans with controllable imbalance (segmentation, four image modalities).

Each volume is `seg_depth` axial slices of `seg_size`² pixels holding one tumour: an ellipsoid
with a lobulated boundary (the whole tumour, WT), a smaller ellipsoid inside it (the tumour core,
TC) and a concentric one inside the core (necrosis). Labels as BraTS: 0 background, 1 necrotic
core, 2 oedema (WT ∖ TC), 3 enhancing tumour (TC ∖ necrosis); slices past the tumour's ends are
empty. Every modality is one channel, x_m = tissue + contrast_m[label] + seg_noise · N(0, 1), with
tissue = 1 inside an elliptic brain mask and 0 outside, and the contrasts (S = seg_shortcut,
s = seg_strength, h = seg_hint):

    class:       1 necrotic   2 oedema   3 enhancing
    flair           S            S           S          the whole tumour, plainly: a shortcut for WT
    t1ce            h            h          h + s       enhancing tumour (ET)
    t1           −(h + s)       −h          −h          necrotic core (dark)
    t2              h          h + s         h          oedema

So flair alone gives WT; ET, TC and the oedema/core boundary need the others, which show the
whole tumour only faintly (the hint h). Trained together, the network reads WT from flair and the
other encoders need not learn it; trained alone, each must find WT from its faint hint. That is
the imbalance. It is starkest for t1: its one distinct signal, the dark necrosis, is implied by
t1ce's enhancing ring and t2's core, so jointly its encoder is barely trained (probe Dice 0.31-0.38
vs 0.49-0.57 alone; tests/test_synthetic_seg.py). Generated
from `data_seed`; splits are whole volumes and every slice carries its volume id (`groups`), so
evaluation reports per-volume Dice, the BraTS protocol.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
else:
    from .._lazy import torch

from .. import tasks
from ..settings import Setting
from .base import Dataset, InputKind, InputSpec, MultimodalData, Split

MODALITIES = ("flair", "t1ce", "t1", "t2")
CHUNK_ELEMENTS = 2**18  # voxels generated at once: bounds the float64 temporaries to a few MB


def contrast_table(shortcut: float, strength: float, hint: float) -> np.ndarray:
    """(modality, class) intensity offsets over the tissue level, classes 0..3 (module docstring)."""
    s, h = strength, hint
    return np.array(
        [
            [0.0, shortcut, shortcut, shortcut],  # flair
            [0.0, h, h, h + s],  # t1ce
            [0.0, -(h + s), -h, -h],  # t1
            [0.0, h, h + s, h],  # t2
        ]
    )


def tumour_labels(rng: np.random.Generator, volumes: int, depth: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Label maps (volumes, depth, size, size) int64 and the brain mask (size, size) bool."""
    yy = ((np.arange(size) + 0.5) / size - 0.5).reshape(1, 1, size, 1)  # in-plane coordinates in [−½, ½]
    xx = yy.reshape(1, 1, 1, size)
    zz = (np.arange(depth) + 0.5).reshape(1, depth, 1, 1)  # slice centres
    brain = ((xx / 0.44) ** 2 + (yy / 0.40) ** 2 <= 1.0)[0, 0]  # (size, size)

    def per_volume(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, volumes).reshape(volumes, 1, 1, 1)

    cz, rz = per_volume(0.3, 0.7) * depth, per_volume(0.3, 0.55) * depth
    cy, cx = per_volume(-0.12, 0.12), per_volume(-0.12, 0.12)
    ry, rx = per_volume(0.2, 0.32), per_volume(0.2, 0.32)
    theta, phase = per_volume(0.0, np.pi), per_volume(0.0, 2 * np.pi)
    lobes = rng.integers(2, 5, volumes).reshape(volumes, 1, 1, 1)
    core, necrosis = per_volume(0.5, 0.7), per_volume(0.4, 0.65)  # radii relative to WT, to the core
    shift_u, shift_w = per_volume(-0.2, 0.2), per_volume(-0.2, 0.2)  # core centre offset, fraction of WT radii

    labels = np.zeros((volumes, depth, size, size), dtype=np.int64)
    step = max(1, CHUNK_ELEMENTS // (depth * size * size))
    for a in range(0, volumes, step):
        v = slice(a, a + step)
        dz = (zz - cz[v]) / rz[v]  # (v, D, 1, 1)
        dy, dx = yy - cy[v], xx - cx[v]  # (v, 1, S, 1), (v, 1, 1, S)
        u = np.cos(theta[v]) * dx + np.sin(theta[v]) * dy  # (v, 1, S, S), the tumour's own axes
        w = -np.sin(theta[v]) * dx + np.cos(theta[v]) * dy
        lobed = 1.0 + 0.15 * np.sin(lobes[v] * np.arctan2(w, u) + phase[v])
        r_wt = np.sqrt(dz**2 + (u / rx[v]) ** 2 + (w / ry[v]) ** 2) / lobed  # (v, D, S, S)
        uc, wc = u - shift_u[v] * rx[v], w - shift_w[v] * ry[v]
        r_core = np.sqrt(dz**2 + (uc / rx[v]) ** 2 + (wc / ry[v]) ** 2) / core[v]
        wt = (r_wt <= 1.0) & brain
        tc = (r_core <= 1.0) & wt
        nec = (r_core <= necrosis[v]) & tc
        labels[v] = np.where(nec, 1, np.where(tc, 3, np.where(wt, 2, 0)))
    return labels, brain


class SyntheticSeg(Dataset):
    name = "synthetic_seg"
    help = (
        "Generated BraTS-like slices (flair, t1ce, t1, t2), seeded by data_seed; flair shows the whole "
        "tumour plainly, the others its sub-regions"
    )
    default_model = "segnet"
    settings = [
        Setting("seg_size", "int", 32, "slice side in pixels (slices are square)", min=8, max=512),
        Setting("seg_depth", "int", 8, "slices per volume", min=1, max=256),
        Setting("seg_train_volumes", "int", 64, "training volumes", min=1, max=100_000),
        Setting("seg_val_volumes", "int", 16, "validation volumes", min=1, max=100_000),
        Setting("seg_test_volumes", "int", 32, "test volumes", min=1, max=100_000),
        Setting("seg_shortcut", "float", 3.0, "flair's whole-tumour contrast (the shortcut)", min=0.0, max=100.0),
        Setting("seg_strength", "float", 1.5, "sub-region contrast in t1ce, t1 and t2", min=0.0, max=100.0),
        Setting("seg_hint", "float", 0.5, "faint whole-tumour contrast in t1ce, t1 and t2", min=0.0, max=100.0),
        Setting("seg_noise", "float", 1.0, "standard deviation of the Gaussian pixel noise", min=0.0, max=100.0),
    ]

    @classmethod
    def modality_names(cls, cfg: Mapping[str, Any]) -> list[str]:
        return list(MODALITIES)

    @classmethod
    def task_name(cls, cfg: Mapping[str, Any]) -> str:
        return "segmentation"

    @classmethod
    def input_kinds(cls, cfg: Mapping[str, Any]) -> InputKind:
        return "image"

    @classmethod
    def _slices(cls, cfg: Mapping[str, Any]) -> int:
        volumes = int(cfg["seg_train_volumes"]) + int(cfg["seg_val_volumes"]) + int(cfg["seg_test_volumes"])
        return volumes * int(cfg["seg_depth"])

    @classmethod
    def estimate_bytes(cls, cfg: Mapping[str, Any]) -> int:
        """Peak of `load`, the larger of its two phases. Drawing the labels: the int64 label maps
        (8 B a pixel) and the float64 temporaries of one chunk of volumes (about 48 B a voxel of the
        chunk, plus 40 B a pixel of its in-plane arrays, which are `seg_depth` times smaller).
        Drawing the images: the labels, the float32 images (4 B a pixel and modality; the splits are
        views of them) and one float32 temporary (a modality's contrast lookup). Plus 2 % and 64 KiB
        for the small objects around them. Measured (tests/test_synthetic_seg.py): 0.88-0.98 of this."""
        depth, size = int(cfg["seg_depth"]), int(cfg["seg_size"])
        slices = cls._slices(cfg)
        pixels = slices * size * size
        chunk = min(max(1, CHUNK_ELEMENTS // (depth * size * size)) * depth * size * size, pixels)
        labels_phase = 8 * pixels + chunk * (48 + 40 // depth)
        images_phase = (8 + 4 * len(MODALITIES) + 4) * pixels + 8 * slices
        return int(max(labels_phase, images_phase) * 1.02) + 2**16

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        rng = np.random.default_rng(data_seed)
        size, depth = int(cfg["seg_size"]), int(cfg["seg_depth"])
        counts = (int(cfg["seg_train_volumes"]), int(cfg["seg_val_volumes"]), int(cfg["seg_test_volumes"]))
        volumes = sum(counts)
        labels, brain = tumour_labels(rng, volumes, depth, size)
        labels = labels.reshape(volumes * depth, size, size)  # (N, S, S): volume-major slices
        table = contrast_table(float(cfg["seg_shortcut"]), float(cfg["seg_strength"]), float(cfg["seg_hint"]))
        noise = float(cfg["seg_noise"])
        tissue = brain.astype(np.float32)  # (S, S)
        xs: dict[str, np.ndarray] = {}
        for i, m in enumerate(MODALITIES):
            image = rng.standard_normal(labels.shape, dtype=np.float32)  # (N, S, S)
            image *= noise
            image += tissue
            image += table[i].astype(np.float32)[labels]
            xs[m] = image.reshape(len(labels), 1, size, size)  # (N, 1, S, S): one channel per modality
        groups = np.repeat(np.arange(volumes, dtype=np.int64), depth)  # (N,) the volume of each slice
        bounds = np.cumsum((0, *counts)) * depth
        splits = []
        for a, b in itertools.pairwise(bounds):
            # Contiguous views: the splits share the arrays instead of copying them.
            splits.append(
                Split(
                    {m: torch.from_numpy(x[a:b]) for m, x in xs.items()},
                    torch.from_numpy(labels[a:b]),
                    groups=torch.from_numpy(groups[a:b]),
                )
            )
        inputs = {m: InputSpec("image", (1, size, size)) for m in MODALITIES}
        return MultimodalData(
            name=cls.name,
            modalities=list(MODALITIES),
            task=tasks.segmentation(4),
            train=splits[0],
            val=splits[1],
            test=splits[2],
            info={"contrasts": {m: table[i].tolist() for i, m in enumerate(MODALITIES)}, "depth": depth},
            inputs=inputs,
        )
