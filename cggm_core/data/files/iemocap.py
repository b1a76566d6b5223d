"""IEMOCAP from the MMIN-style feature folder (the layout the official CGGM code reads).

    <folder>/A/comparE.h5            utterance id → (T_a, 130) ComParE frames
    <folder>/A/comparE_mean_std.h5   "<fold>"/mean, "<fold>"/std: (130,) training statistics
    <folder>/V/denseface.h5          utterance id → (T_v, 342) face features
    <folder>/L/bert_large.h5         utterance id → (T_l, 1024) BERT-large token features
    <folder>/target/<fold>/{trn,val,tst}_label.npy     (N, 4) one-hot emotions
    <folder>/target/<fold>/{trn,val,tst}_int2name.npy  (N, 1) byte-string utterance ids

`fold` is the cross-validation fold (1–10, one session-speaker held out per fold). Sequences
vary in length per utterance; samples come back unpadded, (T_m, D_m) float32, and a collate
pads them (the official pads audio to 350 frames and the others to the batch's longest).

Audio is z-normalised with the fold's training statistics, as the official `norm_method='trn'`.
Departures: a zero in `std` divides by 1 instead (the official yields inf/NaN there, as its own
per-utterance normaliser already guards); labels may also be given as (N,) class ids.
Every id must be present in all three feature files, with one width per modality; that is
checked up front from the HDF5 metadata (no feature is read until a sample is asked for).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    DataFormatError,
    FileDataset,
    H5Handles,
    Sample,
    SampleSource,
    load_npy,
    open_h5,
    require_dir,
)

MODALITIES: tuple[str, str, str] = ("text", "audio", "vision")
NUM_CLASSES = 4
FOLDS = range(1, 11)
# modality → (folder, file stem) of its features, as named in the MMIN layout.
FEATURE_FILES: dict[str, tuple[str, str]] = {
    "text": ("L", "bert_large"),
    "audio": ("A", "comparE"),
    "vision": ("V", "denseface"),
}
STATS_FILE = ("A", "comparE_mean_std")
SET_NAMES: dict[str, str] = {"train": "trn", "valid": "val", "test": "tst"}
LAYOUT = (
    "the MMIN feature folder: A/comparE.h5, A/comparE_mean_std.h5, V/denseface.h5, L/bert_large.h5, "
    "target/<fold>/{trn,val,tst}_label.npy and target/<fold>/{trn,val,tst}_int2name.npy"
)


def read_iemocap(folder: str | Path, *, fold: int = 1) -> FileDataset:
    """Read the MMIN feature folder for one cross-validation fold."""
    if fold not in FOLDS:
        raise ValueError(f"fold must be 1..10, got {fold!r}")
    folder = require_dir(Path(folder), LAYOUT)
    paths = {m: folder / sub / f"{stem}.h5" for m, (sub, stem) in FEATURE_FILES.items()}
    mean, std = _read_stats(folder / STATS_FILE[0] / f"{STATS_FILE[1]}.h5", fold)

    splits: dict[str, tuple[list[str], np.ndarray]] = {}
    for split, set_name in SET_NAMES.items():
        splits[split] = _read_targets(folder / "target" / str(fold), set_name)

    dims: dict[str, int] = {}
    max_len: dict[str, int] = {}
    for m, path in paths.items():
        with open_h5(path, LAYOUT) as f:
            for split, (ids, _) in splits.items():
                d, t = _check_entries(f, path, ids, split, SET_NAMES[split], dims.get(m))
                dims[m] = d
                max_len[m] = max(max_len.get(m, 0), t)
    if mean.shape != (dims["audio"],):
        raise DataFormatError(
            folder / "A/comparE_mean_std.h5",
            f"fold {fold}'s mean/std have shape {mean.shape}, but the audio features are {dims['audio']} wide",
        )
    std = np.where(std == 0.0, 1.0, std).astype(np.float32)
    handles = H5Handles({m: p for m, p in paths.items()}, LAYOUT)
    sources = {s: IemocapSplit(s, ids, y, handles, mean, std) for s, (ids, y) in splits.items()}
    return FileDataset(
        name="iemocap",
        task="classification",
        modalities=MODALITIES,
        num_classes=NUM_CLASSES,
        feature_dims=dims,
        sample_shapes={m: (None, dims[m]) for m in MODALITIES},
        seq_lens=max_len,
        train=sources["train"],
        valid=sources["valid"],
        test=sources["test"],
        info={"folder": str(folder), "fold": fold, "files": {m: str(p) for m, p in paths.items()}},
    )


class IemocapSplit(SampleSource):
    """One split: sample i is the utterance `ids[i]`, read from the three HDF5 files on demand."""

    def __init__(
        self, split: str, ids: list[str], y: np.ndarray, handles: H5Handles, mean: np.ndarray, std: np.ndarray
    ) -> None:
        self.split = split
        self.modalities = MODALITIES
        self.ids = ids
        self.y = y
        self.handles = handles
        self.mean = mean  # (130,) training statistics of this fold
        self.std = std

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labels(self) -> np.ndarray:
        return self.y

    def __getitem__(self, i: int) -> Sample:
        i = self._index(i)
        utt = self.ids[i]
        xs = {m: np.asarray(self.handles[m][utt][()], dtype=np.float32) for m in MODALITIES}  # (T_m, D_m)
        xs["audio"] = (xs["audio"] - self.mean) / self.std
        return xs, int(self.y[i])


def _read_stats(path: Path, fold: int) -> tuple[np.ndarray, np.ndarray]:
    with open_h5(path, LAYOUT) as f:
        group = f.get(str(fold))
        if group is None or not hasattr(group, "keys"):
            raise DataFormatError(
                path, f"has no group for fold {fold!r} (groups found: {', '.join(f.keys()) or 'none'})"
            )
        got: list[np.ndarray] = []
        for key in ("mean", "std"):
            if key not in group:
                raise DataFormatError(path, f"group {fold!r} has no {key!r}; each fold holds 'mean' and 'std'")
            got.append(np.asarray(group[key][()], dtype=np.float32).reshape(-1))
    mean, std = got
    if mean.shape != std.shape:
        raise DataFormatError(path, f"fold {fold}: mean is {mean.shape} but std is {std.shape}")
    if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std < 0).any():
        raise DataFormatError(path, f"fold {fold}: mean/std hold non-finite or negative std values")
    return mean, std


def _read_targets(target_dir: Path, set_name: str) -> tuple[list[str], np.ndarray]:
    label_path = target_dir / f"{set_name}_label.npy"
    names_path = target_dir / f"{set_name}_int2name.npy"
    onehot = load_npy(label_path, LAYOUT)
    names = load_npy(names_path, LAYOUT)
    y = _class_ids(label_path, onehot)
    ids = _utterance_ids(names_path, names)
    if len(ids) != len(y):
        raise DataFormatError(names_path, f"has {len(ids)} ids but {label_path.name} has {len(y)} labels")
    if not ids:
        raise DataFormatError(names_path, "lists no utterances")
    if len(set(ids)) != len(ids):
        raise DataFormatError(names_path, "lists an utterance id twice")
    return ids, y


def _class_ids(path: Path, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "fiub":
        raise DataFormatError(path, f"has dtype {arr.dtype}, expected one-hot numbers")
    if arr.ndim == 1 and arr.dtype.kind in "iu":
        bad = (arr < 0) | (arr >= NUM_CLASSES)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(path, f"label {int(arr[i])} at row {i} is outside the {NUM_CLASSES} classes 0..3")
        return arr.astype(np.int64)
    if arr.ndim != 2 or arr.shape[1] != NUM_CLASSES:
        raise DataFormatError(path, f"has shape {arr.shape}, expected (N, {NUM_CLASSES}) one-hot labels")
    onehot_rows = ((arr == 0) | (arr == 1)).all(axis=1) & (arr.sum(axis=1) == 1)
    if not onehot_rows.all():
        i = int(np.flatnonzero(~onehot_rows)[0])
        raise DataFormatError(path, f"row {i} = {arr[i].tolist()} is not one-hot over the {NUM_CLASSES} classes")
    return arr.argmax(axis=1).astype(np.int64)


def _utterance_ids(path: Path, arr: np.ndarray) -> list[str]:
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]  # MMIN stores (N, 1)
    if arr.ndim != 1 or arr.dtype.kind not in "SU":
        raise DataFormatError(path, f"has shape {arr.shape} and dtype {arr.dtype}, expected (N, 1) byte-string ids")
    try:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in arr.tolist()]
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"holds an id that is not UTF-8 ({e})") from e


def _check_entries(f: Any, path: Path, ids: list[str], split: str, set_name: str, width: int | None) -> tuple[int, int]:
    """Every id of a split is a 2-D dataset of one width: returns (width, longest length)."""
    longest = 0
    for utt in ids:
        ds = f.get(utt)
        if ds is None:
            raise DataFormatError(
                path,
                f"has no features for utterance {utt!r} of the {split} split ({set_name}_int2name.npy): "
                f"every modality must cover every split",
            )
        shape = getattr(ds, "shape", None)
        if shape is None or len(shape) != 2:
            raise DataFormatError(path, f"utterance {utt!r} has shape {shape}, expected (T, D)")
        if width is None:
            width = int(shape[1])
        elif shape[1] != width:
            raise DataFormatError(path, f"utterance {utt!r} is {shape[1]} wide, the others {width}")
        longest = max(longest, int(shape[0]))
    assert width is not None  # ids is never empty (_read_targets)
    return width, longest
