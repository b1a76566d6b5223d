"""One BraTS case on disk, in either layout, read a slice at a time (brats.py samples the slices).

- `H5Case`: the official h5 file, `image` (4, H, W, D) in the channel order flair, t1ce, t1, t2 and
  `label` (H, W, D). Intensities are used as stored, as the official reader does (its files are
  preprocessed).
- `NiftiCase`: a raw BraTS 2021 case folder, `<case>_{flair,t1ce,t1,t2,seg}.nii.gz`. gzip cannot
  seek, so a case is always decoded whole into the `VolumeCache` and sliced from memory. Each
  modality is z-scored over its non-zero (brain) voxels, background left at 0: our choice, since
  the official code reads only its preprocessed h5 files and does not say how they were made.

Volumes are not reoriented: axial slices are the last axis, as BraTS ships them.

Labels: BraTS's {0, 1, 2, 4}, with 4 (enhancing tumour) mapped to 3; 3 is accepted as already
mapped. Any other value, or a non-integer one, is a DataFormatError naming the file, raised when
that case is first read (the headers, shapes and layout are all checked up front).
"""

from __future__ import annotations

import os
import zlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .common import DataFormatError, open_h5, optional_module

MODALITIES: tuple[str, str, str, str] = ("flair", "t1ce", "t1", "t2")
ALLOWED_LABELS = (0, 1, 2, 3, 4)
H5_LAYOUT = "the official BraTS h5 layout: {train,valid,test}/*.h5, each with image (4, H, W, D) and label (H, W, D)"
NIFTI_LAYOUT = (
    "the BraTS 2021 layout: a folder per case holding <case>_flair, <case>_t1, <case>_t1ce, <case>_t2 "
    "and <case>_seg .nii.gz files"
)
# (row0, row1, col0, col1) of the centre crop inside an (H, W) slice.
Box = tuple[int, int, int, int]


def centre_box(h: int, w: int, crop: tuple[int, int]) -> Box:
    """The official CenterCrop's window: offsets round((H − h_c) / 2) with Python's rounding."""
    r0 = int(round((h - crop[0]) / 2.0))
    c0 = int(round((w - crop[1]) / 2.0))
    return r0, r0 + crop[0], c0, c0 + crop[1]


def map_labels(label: np.ndarray, path: Path) -> np.ndarray:
    """Validate BraTS labels and map 4 → 3; returns uint8 of the same shape.

    Kept in uint8: a whole label volume in int64 is 8× the memory and made the check ~100× slower
    (measured: 0.40 s vs 0.003 s on 240 × 240 × 155).
    """
    if label.dtype.kind == "f":
        if not np.isfinite(label).all() or (label != np.round(label)).any():
            raise DataFormatError(path, "label holds non-integer values; BraTS labels are 0, 1, 2, 4")
    elif label.dtype.kind not in "iub":
        raise DataFormatError(path, f"label has dtype {label.dtype}, expected integers 0, 1, 2, 4")
    bad = (label < min(ALLOWED_LABELS)) | (label > max(ALLOWED_LABELS))  # ALLOWED_LABELS is 0..4
    if bad.any():
        values = sorted(int(v) for v in np.unique(label[bad]))[:5]
        raise DataFormatError(path, f"label holds value(s) {values}; BraTS labels are 0, 1, 2, 4 (3 read as 4)")
    out = label.astype(np.uint8)  # a copy: the caller's array is never edited
    out[out == 4] = 3
    return out


class VolumeCache:
    """The last few whole cases decoded in this process (dropped when pickled or forked)."""

    def __init__(self, max_cases: int) -> None:
        self.max_cases = max(1, max_cases)
        self._items: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._pid = os.getpid()

    def get(self, case: Case) -> tuple[np.ndarray, np.ndarray]:
        if self._pid != os.getpid():
            self._items.clear()
            self._pid = os.getpid()
        key = str(case.label_file)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = case.decode()
        self._items[key] = value
        while len(self._items) > self.max_cases:
            self._items.popitem(last=False)
        return value

    def __getstate__(self) -> dict[str, Any]:
        return {"max_cases": self.max_cases}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_cases"])  # type: ignore[misc]


class Case(ABC):
    """A case's volumes. `slice(..., whole_case=True)` decodes the case once into `cache` and
    slices it from memory: the cheap way to walk every slice of a case (evaluation)."""

    case_id: str
    shape: tuple[int, int, int]  # (H, W, D) of every volume of the case
    cache: VolumeCache

    @property
    @abstractmethod
    def label_file(self) -> Path: ...

    @abstractmethod
    def decode(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole case: image (4, H, W, D) float32, label (H, W, D) uint8 (mapped, validated)."""

    @abstractmethod
    def label_volume(self) -> np.ndarray:
        """(H, W, D) uint8 labels, mapped (4 → 3) and validated."""

    def read_slice(self, z: int, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """One slice without decoding the whole case (where the format allows it)."""
        return self._from_cache(z, box)

    def slice(self, z: int, box: Box, *, whole_case: bool) -> tuple[np.ndarray, np.ndarray]:
        """Axial slice z cropped to `box`: image (4, h, w) float32, label (h, w) int64."""
        return self._from_cache(z, box) if whole_case else self.read_slice(z, box)

    def _from_cache(self, z: int, box: Box) -> tuple[np.ndarray, np.ndarray]:
        image, label = self.cache.get(self)
        r0, r1, c0, c1 = box
        return np.ascontiguousarray(image[:, r0:r1, c0:c1, z]), label[r0:r1, c0:c1, z].astype(np.int64)

    def check_crop(self, crop: tuple[int, int]) -> None:
        h, w, _ = self.shape
        if h < crop[0] or w < crop[1]:
            raise DataFormatError(self.label_file, f"slices are {h} × {w}, smaller than the crop {crop[0]} × {crop[1]}")


class H5Case(Case):
    """An official h5 file. Training reads one cropped slice (h5py reads just that hyperslab:
    ~7 ms on 240 × 240 × 155); evaluation decodes the case once (~13 ms) and slices it in memory."""

    def __init__(self, path: Path, cache: VolumeCache) -> None:
        self.path = path
        self.case_id = path.stem
        self.cache = cache
        with open_h5(path, H5_LAYOUT) as f:
            for key in ("image", "label"):
                if key not in f:
                    raise DataFormatError(path, f"has no {key!r} dataset (found: {', '.join(f.keys()) or 'none'})")
            image, label = f["image"].shape, f["label"].shape
        if len(image) != 4 or image[0] != len(MODALITIES):
            raise DataFormatError(
                path, f"image has shape {image}, expected (4, H, W, D): one channel each for {', '.join(MODALITIES)}"
            )
        if tuple(label) != tuple(image[1:]):
            raise DataFormatError(
                path, f"label has shape {label} but image is {image}: expected label (H, W, D) = {image[1:]}"
            )
        self.shape = (int(image[1]), int(image[2]), int(image[3]))

    @property
    def label_file(self) -> Path:
        return self.path

    def _read(self, what: str, index: Any) -> np.ndarray:
        with open_h5(self.path, H5_LAYOUT) as f:
            try:
                return np.asarray(f[what][index])
            except OSError as e:  # the header was fine but the data is cut short
                raise DataFormatError(self.path, f"truncated or corrupt HDF5 data in {what!r} ({e})") from e

    def decode(self) -> tuple[np.ndarray, np.ndarray]:
        return self._read("image", ()).astype(np.float32, copy=False), self.label_volume()

    def label_volume(self) -> np.ndarray:
        return map_labels(self._read("label", ()), self.path)

    def read_slice(self, z: int, box: Box) -> tuple[np.ndarray, np.ndarray]:
        r0, r1, c0, c1 = box
        image = self._read("image", (slice(None), slice(r0, r1), slice(c0, c1), z)).astype(np.float32)  # (4, h, w)
        # The whole slice's labels are validated (a bad value outside the crop is still a bad file).
        label = map_labels(self._read("label", (slice(None), slice(None), z)), self.path)  # (H, W)
        return image, label[r0:r1, c0:c1].astype(np.int64)


def find_nifti(folder: Path, suffix: str) -> Path:
    """The one `*_<suffix>.nii.gz` (or `.nii`) file of a case folder."""
    found = sorted(p for ext in (".nii.gz", ".nii") for p in folder.glob(f"*_{suffix}{ext}"))
    if not found:
        raise DataFormatError(folder / f"{folder.name}_{suffix}.nii.gz", f"no such file; expected {NIFTI_LAYOUT}")
    if len(found) > 1:
        raise DataFormatError(
            folder, f"holds {len(found)} '_{suffix}' NIfTI files ({', '.join(p.name for p in found)}); expected one"
        )
    return found[0]


def _nifti_error(path: Path, e: Exception) -> DataFormatError:
    return DataFormatError(path, f"truncated or not a NIfTI file ({type(e).__name__}: {e})")


# What nibabel and gzip raise on a short or foreign file.
_NIFTI_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error)


class NiftiCase(Case):
    def __init__(self, folder: Path, cache: VolumeCache, normalize: bool = True) -> None:
        nib = optional_module("nibabel")
        self.folder = folder
        self.case_id = folder.name
        self.cache = cache
        self.normalize = normalize
        self.files = {m: find_nifti(folder, m) for m in (*MODALITIES, "seg")}
        shapes: dict[str, tuple[int, ...]] = {}
        for m, path in self.files.items():
            try:
                shapes[m] = tuple(int(v) for v in nib.load(path).shape)  # the header only
            except (*_NIFTI_READ_ERRORS, nib.filebasedimages.ImageFileError) as e:
                raise _nifti_error(path, e) from e
        seg = shapes["seg"]
        if len(seg) != 3:
            raise DataFormatError(self.files["seg"], f"has shape {seg}, expected a 3-D volume (H, W, D)")
        for m in MODALITIES:
            if shapes[m] != seg:
                raise DataFormatError(
                    self.files[m],
                    f"has shape {shapes[m]}, which disagrees with its mask {self.files['seg'].name} {seg}",
                )
        self.shape = (seg[0], seg[1], seg[2])

    @property
    def label_file(self) -> Path:
        return self.files["seg"]

    def _load(self, path: Path, dtype: Any) -> np.ndarray:
        nib = optional_module("nibabel")
        try:
            return np.asarray(nib.load(path).dataobj, dtype=dtype)
        except (*_NIFTI_READ_ERRORS, nib.filebasedimages.ImageFileError) as e:
            raise _nifti_error(path, e) from e

    def decode(self) -> tuple[np.ndarray, np.ndarray]:
        vols = []
        for m in MODALITIES:
            v = self._load(self.files[m], np.float32)  # (H, W, D)
            if self.normalize:
                brain = v != 0
                if brain.any():
                    mean, std = v[brain].mean(), v[brain].std()
                    v = np.where(brain, (v - mean) / (std if std > 0 else 1.0), 0.0).astype(np.float32)
            vols.append(v)
        seg = self._load(self.files["seg"], None)
        return np.stack(vols), map_labels(seg, self.files["seg"])

    def label_volume(self) -> np.ndarray:
        return self.cache.get(self)[1]
