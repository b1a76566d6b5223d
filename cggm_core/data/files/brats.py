"""BraTS 2021 as 2-D axial slices, from the official h5 files or the raw NIfTI cases.

Layouts (see brats_cases.py for what each file holds):
- `h5`: `<folder>/{train,valid,test}/*.h5`.
- `nifti`: `<folder>/{train,valid,test}/<case>/` or, for the data set as BraTS ships it,
  `<folder>/<case>/` for every case; then the cases are split by `seed` into
  `valid_fraction` and `test_fraction` (the rest trains). Those fractions are ours: the paper's
  split is not in the official code.

Samples are `({"flair": (1, h, w), "t1ce": …, "t1": …, "t2": …}, label (h, w) int64)` with
(h, w) = `crop`, the centre crop of the official CenterCrop (default 160 × 160).

Training (`BratsTrainSlices`): as the official `BraTSData`, one sample per case per epoch (or
`slices_per_case`), an axial slice drawn uniformly among the case's slices that hold tumour (the
official rejection-samples `randint(0, 128)` until the slice has tumour: uniform over the tumour
slices among the first 128; we draw over the whole depth, since 128 is the depth of the official
preprocessed files and would drop slices of a raw 155-slice volume). The draw is seeded by
(seed, epoch, index): reproducible under DataLoader workers; call `set_epoch` each epoch.
`augment=True` adds the official training augmentation (rot90 by k ∈ {0, 1, 2}, a flip of one
axis, Gaussian noise with p = 0.1 and σ ~ U(0, 0.1)), drawn from the same seeded generator.
A case without any tumour slice is a DataFormatError (the official loops forever on it).

Evaluation (`BratsEvalSlices`), deterministic: `eval_slices="all"` (default) is every slice of
every case, case-major; `"tumour"` only the slices with tumour (reads each case's labels once,
up front); `"official"` the official quirk, one tumour slice per case (seeded, the same every
epoch: the official redraws it unseeded). `case_ids` and `slice_case` give each sample's case,
for per-volume Dice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from .brats_cases import (
    H5_LAYOUT,
    MODALITIES,
    NIFTI_LAYOUT,
    Box,
    Case,
    H5Case,
    NiftiCase,
    VolumeCache,
    centre_box,
)
from .common import SPLITS, DataFormatError, FileDataset, Sample, SampleSource, require_dir

NUM_CLASSES = 4  # background, necrotic core (1), oedema (2), enhancing tumour (4 → 3)
EvalSlices = Literal["all", "tumour", "official"]


def read_brats(
    folder: str | Path,
    *,
    layout: Literal["auto", "h5", "nifti"] = "auto",
    crop: tuple[int, int] = (160, 160),
    seed: int = 0,
    slices_per_case: int = 1,
    eval_slices: EvalSlices = "all",
    augment: bool = False,
    normalize: bool = True,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.2,
    cache_cases: int = 2,
) -> FileDataset:
    """Read a BraTS folder. `normalize` applies to NIfTI only.

    `cache_cases`: whole cases kept decoded per process (evaluation, and every NIfTI read); a
    240 × 240 × 155 case is ~150 MB in float32.
    """
    crop = (int(crop[0]), int(crop[1]))
    if min(crop) < 1:
        raise ValueError(f"crop must be positive, got {crop}")
    if augment and crop[0] != crop[1]:
        raise ValueError(f"augment rotates slices by 90°, which needs a square crop, got {crop}")
    if slices_per_case < 1:
        raise ValueError(f"slices_per_case must be ≥ 1, got {slices_per_case}")
    if eval_slices not in ("all", "tumour", "official"):
        raise ValueError(f"eval_slices must be 'all', 'tumour' or 'official', got {eval_slices!r}")
    folder = require_dir(Path(folder), f"{H5_LAYOUT}, or {NIFTI_LAYOUT}")
    if layout == "auto":
        layout = "h5" if (folder / "train").is_dir() and any((folder / "train").glob("*.h5")) else "nifti"
    cache = VolumeCache(cache_cases)
    if layout == "h5":
        cases = _h5_cases(folder, cache)
    elif layout == "nifti":
        cases = _nifti_cases(folder, cache, normalize, seed, valid_fraction, test_fraction)
    else:
        raise ValueError(f"layout must be 'auto', 'h5' or 'nifti', got {layout!r}")
    for split_cases in cases.values():
        for c in split_cases:
            c.check_crop(crop)

    train = BratsTrainSlices(cases["train"], crop, seed, slices_per_case, augment)
    valid = BratsEvalSlices("valid", cases["valid"], crop, eval_slices, seed)
    test = BratsEvalSlices("test", cases["test"], crop, eval_slices, seed)
    return FileDataset(
        name="brats",
        task="segmentation",
        modalities=MODALITIES,
        num_classes=NUM_CLASSES,
        feature_dims=dict.fromkeys(MODALITIES, 1),
        sample_shapes=dict.fromkeys(MODALITIES, (1, *crop)),
        train=train,
        valid=valid,
        test=test,
        info={
            "folder": str(folder),
            "layout": layout,
            "crop": crop,
            "eval_slices": eval_slices,
            "cases": {s: [c.case_id for c in cs] for s, cs in cases.items()},
        },
    )


def _h5_cases(folder: Path, cache: VolumeCache) -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for s in SPLITS:
        d = require_dir(folder / s, H5_LAYOUT)
        files = sorted(d.glob("*.h5"))  # the official lists the folder unsorted
        if not files:
            raise DataFormatError(d, f"holds no .h5 file; expected {H5_LAYOUT}")
        out[s] = [H5Case(p, cache) for p in files]
    return out


def _case_folders(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def _nifti_cases(
    folder: Path, cache: VolumeCache, normalize: bool, seed: int, valid_fraction: float, test_fraction: float
) -> dict[str, list[Case]]:
    split_dirs = [folder / s for s in SPLITS]
    if any(d.is_dir() for d in split_dirs):
        out: dict[str, list[Case]] = {}
        for s, d in zip(SPLITS, split_dirs, strict=True):
            require_dir(d, f"{NIFTI_LAYOUT}, in {{train,valid,test}}/ or all in one folder")
            found = _case_folders(d)
            if not found:
                raise DataFormatError(d, f"holds no case folder; expected {NIFTI_LAYOUT}")
            out[s] = [NiftiCase(p, cache, normalize) for p in found]
        return out
    found = _case_folders(folder)
    if not found:
        raise DataFormatError(folder, f"holds no case folder; expected {H5_LAYOUT}, or {NIFTI_LAYOUT}")
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(f"valid_fraction + test_fraction must be < 1, got {valid_fraction} + {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(found))
    # At least one case in each split whose fraction is not 0.
    n_valid = max(int(round(valid_fraction * len(found))), int(valid_fraction > 0))
    n_test = max(int(round(test_fraction * len(found))), int(test_fraction > 0))
    if len(found) - n_valid - n_test < 1:
        raise DataFormatError(folder, f"holds {len(found)} cases, too few to split into train, valid and test")
    parts = {
        "valid": order[:n_valid],
        "test": order[n_valid : n_valid + n_test],
        "train": order[n_valid + n_test :],
    }
    return {s: [NiftiCase(found[i], cache, normalize) for i in sorted(parts[s])] for s in SPLITS}


def tumour_slices(label: np.ndarray) -> np.ndarray:
    """Indices z of the axial slices label[:, :, z] that hold any tumour (label ≠ 0)."""
    return np.flatnonzero((label != 0).any(axis=(0, 1)))


def _sample(image: np.ndarray, label: np.ndarray) -> Sample:
    # image (4, h, w) → one (1, h, w) array per modality, as the official's unsqueeze(0)
    return {m: image[i : i + 1] for i, m in enumerate(MODALITIES)}, label


class _Slices(SampleSource):
    def __init__(self, split: str, cases: Sequence[Case], crop: tuple[int, int], seed: int) -> None:
        self.split = split
        self.modalities = MODALITIES
        self.cases = list(cases)
        self.case_ids = tuple(c.case_id for c in self.cases)
        self.crop = crop
        self.seed = seed
        self.boxes: list[Box] = [centre_box(c.shape[0], c.shape[1], crop) for c in self.cases]
        self._tumour: dict[int, np.ndarray] = {}  # case index → its tumour slices (this process)

    def tumour_of(self, case: int) -> np.ndarray:
        found = self._tumour.get(case)
        if found is None:
            found = self._tumour[case] = tumour_slices(self.cases[case].label_volume())
            if len(found) == 0:
                raise DataFormatError(
                    self.cases[case].label_file, "label has no tumour in any slice: no slice to sample"
                )
        return found

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_tumour"] = {}
        return state


class BratsTrainSlices(_Slices):
    """Training: sample i is a seeded random tumour slice of case i // slices_per_case."""

    def __init__(
        self, cases: Sequence[Case], crop: tuple[int, int], seed: int, slices_per_case: int, augment: bool
    ) -> None:
        super().__init__("train", cases, crop, seed)
        self.slices_per_case = slices_per_case
        self.augment = augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw other slices (and augmentations) next epoch; call before each epoch's loader."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.cases) * self.slices_per_case

    def case_of(self, i: int) -> int:
        return self._index(i) // self.slices_per_case

    def slice_for(self, i: int) -> tuple[int, int, np.random.Generator]:
        """(case index, slice z, the generator that goes on to draw the augmentation) of sample i."""
        i = self._index(i)
        case = i // self.slices_per_case
        rng = np.random.default_rng([self.seed, self.epoch, i])
        z = int(rng.choice(self.tumour_of(case)))
        return case, z, rng

    def __getitem__(self, i: int) -> Sample:
        case, z, rng = self.slice_for(i)
        image, label = self.cases[case].slice(z, self.boxes[case], whole_case=False)
        if self.augment:
            image, label = official_augment(image, label, rng)
        return _sample(image, label)


def official_augment(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The official training augmentation (RandomRotFlip, then GaussianNoise(p=0.1)) on (4, h, w) / (h, w)."""
    k = int(rng.integers(0, 3))  # rot90 by 0, 90 or 180 degrees (the official's randint(0, 3))
    image = np.rot90(image, k, axes=(1, 2))
    label = np.rot90(label, k)
    axis = int(rng.integers(1, 3))  # flip rows (1) or columns (2) of the (4, h, w) image
    image = np.flip(image, axis=axis)
    label = np.flip(label, axis=axis - 1)
    if rng.uniform() < 0.1:
        sigma = rng.uniform(0.0, 0.1)  # the official calls it a variance but passes it as the scale
        image = image + rng.normal(0.0, sigma, size=image.shape)
    return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(label)


class BratsEvalSlices(_Slices):
    """Evaluation: a fixed list of (case, slice), case-major; `slice_case[i]` is sample i's case."""

    def __init__(
        self, split: str, cases: Sequence[Case], crop: tuple[int, int], eval_slices: EvalSlices, seed: int
    ) -> None:
        super().__init__(split, cases, crop, seed)
        self.eval_slices = eval_slices
        per_case: list[np.ndarray]
        if eval_slices == "all":
            per_case = [np.arange(c.shape[2]) for c in self.cases]
        elif eval_slices == "tumour":
            per_case = [self.tumour_of(k) for k in range(len(self.cases))]
        else:  # "official": one seeded tumour slice per case, drawn when first read
            per_case = [np.asarray([-1]) for _ in self.cases]
        self.slice_case = np.concatenate([np.full(len(zs), k) for k, zs in enumerate(per_case)]).astype(np.int64)
        self.slice_z = np.concatenate(per_case).astype(np.int64)

    def __len__(self) -> int:
        return len(self.slice_case)

    def case_of(self, i: int) -> int:
        return int(self.slice_case[self._index(i)])

    def z_of(self, i: int) -> int:
        i = self._index(i)
        z = int(self.slice_z[i])
        if z < 0:
            case = int(self.slice_case[i])
            z = int(np.random.default_rng([self.seed, case]).choice(self.tumour_of(case)))
        return z

    def __getitem__(self, i: int) -> Sample:
        case, z = self.case_of(i), self.z_of(i)
        # Evaluation walks a case's slices in order: decode the case once, slice it in memory.
        return _sample(*self.cases[case].slice(z, self.boxes[case], whole_case=True))
