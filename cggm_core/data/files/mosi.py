"""CMU-MOSI and CMU-MOSEI from the MulT pickle (the file the official CGGM code reads).

Layout: one pickle holding `{split: {modality: array}}` with splits `train`, `valid`, `test` and
keys `text`, `audio`, `vision`, `labels`. Features are (N, T, D): MOSI text 300, audio 5,
vision 20; MOSEI text 300, audio 74, vision 35. Aligned files have one T for all modalities
(50); unaligned ones a T per modality (e.g. 50 / 375 / 500). Labels are (N, 1, 1) sentiment
scores in [−3, 3] (regression).

As the official `CMUData`, audio's `-inf` (log of silent frames) become 0. We depart from it in
refusing any other non-finite value (NaN, +inf, -inf outside audio): the official passes them on
and the run trains to NaN. Labels of shape (N,) or (N, 1) are accepted too (one value per sample).

The pickle is read whole, as the official does: these files are at most a few GB. A pickle can
run code when loaded; it is read only from under the data root (the user's own files).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .common import SPLITS, ArraySplit, DataFormatError, FileDataset, require_file

MODALITIES: tuple[str, str, str] = ("text", "audio", "vision")
LABEL_RANGE = (-3.0, 3.0)
LAYOUT = (
    "the MulT pickle: a dict with 'train', 'valid', 'test', each a dict of 'text', 'audio', "
    "'vision' arrays (N, T, D) and 'labels' (N, 1, 1) in [-3, 3]"
)


def read_mosi(path: str | Path, *, name: str = "mosi") -> FileDataset:
    """Read a MulT pickle (MOSI or MOSEI; `name` is carried into the result)."""
    path = require_file(Path(path), LAYOUT)
    raw = _unpickle(path)
    if not isinstance(raw, dict):
        raise DataFormatError(path, f"holds a {type(raw).__name__}, expected {LAYOUT}")
    missing = [s for s in SPLITS if s not in raw]
    if missing:
        raise DataFormatError(path, f"has no split {missing[0]!r} (splits found: {_keys(raw)}); expected {LAYOUT}")

    splits = {s: _read_split(path, s, raw[s]) for s in SPLITS}
    ref_split = splits["train"][0]
    for s in SPLITS[1:]:
        for m in MODALITIES:
            if splits[s][0][m].shape[1:] != ref_split[m].shape[1:]:
                raise DataFormatError(
                    path,
                    f"{m} is (T, D) = {ref_split[m].shape[1:]} in train but {splits[s][0][m].shape[1:]} in {s}: "
                    f"every split must share each modality's sequence length and width",
                )
    seq_lens = {m: int(ref_split[m].shape[1]) for m in MODALITIES}
    dims = {m: int(ref_split[m].shape[2]) for m in MODALITIES}
    sources = {s: ArraySplit(s, xs, y) for s, (xs, y) in splits.items()}
    return FileDataset(
        name=name,
        task="regression",
        modalities=MODALITIES,
        num_classes=None,
        feature_dims=dims,
        sample_shapes={m: (seq_lens[m], dims[m]) for m in MODALITIES},
        seq_lens=seq_lens,
        train=sources["train"],
        valid=sources["valid"],
        test=sources["test"],
        info={"file": str(path), "aligned": len(set(seq_lens.values())) == 1},
    )


def _unpickle(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            try:
                return pickle.load(f)
            except UnicodeDecodeError:
                # Pickles written by Python 2 (numpy arrays with byte-string internals).
                f.seek(0)
                return pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as e:
        raise DataFormatError(path, f"truncated or not a pickle file ({type(e).__name__}: {e})") from e


def _keys(d: dict[Any, Any]) -> str:
    return ", ".join(repr(k) for k in d) or "none"


def _read_split(path: Path, split: str, raw: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    if not isinstance(raw, dict):
        raise DataFormatError(path, f"split {split!r} is a {type(raw).__name__}, expected a dict of arrays")
    for key in (*MODALITIES, "labels"):
        if key not in raw:
            raise DataFormatError(
                path,
                f"split {split!r} has no {key!r} (keys found: {_keys(raw)}); every split needs text, audio, vision, labels",
            )
    xs: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        x = _numeric(path, f"{split}/{m}", raw[m])
        if x.ndim != 3:
            raise DataFormatError(path, f"{split}/{m} has shape {x.shape}, expected (N, T, D)")
        if m == "audio":
            x[x == -np.inf] = 0.0  # as the official CMUData: silent frames' log energy
        bad = ~np.isfinite(x)
        if bad.any():
            n_bad = int(bad.sum())
            first = tuple(int(v) for v in np.argwhere(bad)[0])
            raise DataFormatError(path, f"{split}/{m} has {n_bad} non-finite values (first at index {first})")
        xs[m] = x
    y = _numeric(path, f"{split}/labels", raw["labels"])
    n = len(y)
    if y.size != n or y.ndim > 3:
        raise DataFormatError(path, f"{split}/labels has shape {y.shape}, expected (N, 1, 1): one score per sample")
    y = y.reshape(n)
    for m, x in xs.items():
        if len(x) != n:
            raise DataFormatError(path, f"{split}/{m} has {len(x)} samples but {split}/labels has {n}")
    lo, hi = LABEL_RANGE
    bad_label = ~((y >= lo) & (y <= hi))  # also catches NaN
    if bad_label.any():
        i = int(np.flatnonzero(bad_label)[0])
        raise DataFormatError(
            path,
            f"{split}/labels[{i}] = {float(y[i]):g} is outside [{lo:g}, {hi:g}] ({int(bad_label.sum())} such labels)",
        )
    return xs, y


def _numeric(path: Path, where: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise DataFormatError(path, f"{where} is not an array ({e})") from e
    if arr.dtype.kind not in "fiub":
        raise DataFormatError(path, f"{where} has dtype {arr.dtype}, expected numbers")
    return arr.astype(np.float32)  # a copy: the -inf fix never edits the caller's arrays
