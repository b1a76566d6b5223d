"""BraTS cases: the official h5 layout ({train,valid,test}/*.h5) and the raw NIfTI layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from .common import check_fault, truncate

BRATS_H5_FAULTS = ("missing_split", "truncated", "bad_label", "missing_modality", "shape_mismatch", "no_tumour")
BRATS_NIFTI_FAULTS = ("missing_file", "truncated", "bad_label", "shape_mismatch")
MODALITIES = ("flair", "t1ce", "t1", "t2")


@dataclass
class BratsTruth:
    # case id → image (4, H, W, D) float32 in the order flair, t1ce, t1, t2, and raw labels (H, W, D)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    tumour: dict[str, list[int]] = field(default_factory=dict)  # case id → slices that hold tumour
    splits: dict[str, list[str]] = field(default_factory=dict)  # split → case ids (h5 layout)


def _case(rng: np.random.Generator, shape: tuple[int, int, int], tumour: list[int]) -> tuple[np.ndarray, np.ndarray]:
    h, w, d = shape
    # Integer-valued intensities with a zero background border, as skull-stripped scans have.
    image = np.zeros((4, h, w, d), dtype=np.float32)
    image[:, 1:-1, 1:-1, :] = rng.integers(1, 200, size=(4, h - 2, w - 2, d))
    label = np.zeros(shape, dtype=np.uint8)
    for z in tumour:
        label[h // 2 - 2 : h // 2 + 2, w // 2 - 2 : w // 2 + 2, z] = 2  # oedema around
        label[h // 2 - 1 : h // 2 + 1, w // 2 - 1 : w // 2 + 1, z] = 4  # enhancing tumour
        label[h // 2 - 1, w // 2 - 1, z] = 1  # necrotic core
    return image, label


def write_brats_h5(
    folder: Path,
    *,
    cases: dict[str, int] | None = None,
    shape: tuple[int, int, int] = (12, 10, 6),
    seed: int = 0,
    fault: str | None = None,
) -> BratsTruth:
    """Write `cases[split]` h5 files per split; case k has tumour in slices {k % D, (k + 2) % D}."""
    check_fault(fault, BRATS_H5_FAULTS)
    cases = cases or {"train": 3, "valid": 2, "test": 2}
    rng = np.random.default_rng(seed)
    truth = BratsTruth()
    k = 0
    for split, n in cases.items():
        if fault == "missing_split" and split == "test":
            continue
        (folder / split).mkdir(parents=True)
        truth.splits[split] = []
        for _ in range(n):
            case_id = f"case_{k:03d}"
            tumour = sorted({k % shape[2], (k + 2) % shape[2]})
            if fault == "no_tumour" and split == "train" and k == 1:
                tumour = []
            image, label = _case(rng, shape, tumour)
            if fault == "bad_label" and split == "valid":
                label[0, 0, tumour[0]] = 5
            truth.images[case_id], truth.labels[case_id], truth.tumour[case_id] = image, label, tumour
            truth.splits[split].append(case_id)
            path = folder / split / f"{case_id}.h5"
            with h5py.File(path, "w") as f:
                f["image"] = image[:3] if fault == "missing_modality" and split == "valid" else image
                f["label"] = label[:, :-1] if fault == "shape_mismatch" and split == "test" else label
            if fault == "truncated" and split == "valid":
                truncate(path)
            k += 1
    return truth


def write_brats_nifti(
    folder: Path,
    *,
    n_cases: int = 5,
    shape: tuple[int, int, int] = (12, 10, 6),
    split_dirs: bool = False,
    seed: int = 0,
    fault: str | None = None,
) -> BratsTruth:
    """Write BraTS 2021 case folders (`BraTS2021_0000k/BraTS2021_0000k_<modality>.nii.gz`).

    With `split_dirs`, cases go under train/ valid/ test/ (the first n-2 train, then one each).
    Faults hit the last case (`truncated`, `missing_file`, `shape_mismatch`) or its mask (`bad_label`).
    """
    check_fault(fault, BRATS_NIFTI_FAULTS)
    rng = np.random.default_rng(seed)
    truth = BratsTruth()
    for k in range(n_cases):
        case_id = f"BraTS2021_{k:05d}"
        split = ("train" if k < n_cases - 2 else "valid" if k == n_cases - 2 else "test") if split_dirs else ""
        case_dir = folder / split / case_id
        case_dir.mkdir(parents=True)
        tumour = sorted({k % shape[2], (k + 3) % shape[2]})
        image, label = _case(rng, shape, tumour)
        last = k == n_cases - 1
        if fault == "bad_label" and last:
            label[0, 0, tumour[0]] = 7
        truth.images[case_id], truth.labels[case_id], truth.tumour[case_id] = image, label, tumour
        truth.splits.setdefault(split or "all", []).append(case_id)
        affine = np.eye(4)
        for m, vol in zip(MODALITIES, image, strict=True):
            if fault == "missing_file" and last and m == "t1ce":
                continue
            if fault == "shape_mismatch" and last and m == "t2":
                vol = vol[:, :, :-1]
            nib.save(nib.Nifti1Image(vol, affine), case_dir / f"{case_id}_{m}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), case_dir / f"{case_id}_seg.nii.gz")
        if fault == "truncated" and last:
            truncate(case_dir / f"{case_id}_flair.nii.gz", keep=0.6)
    return truth
