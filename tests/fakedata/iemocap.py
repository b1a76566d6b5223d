"""An MMIN-style IEMOCAP feature folder: A/, V/, L/ HDF5 features and target/<fold>/ .npy files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .common import check_fault, truncate

IEMOCAP_FAULTS = (
    "missing_file",
    "truncated",
    "bad_label",
    "label_width",
    "missing_modality",
    "shape_mismatch",
    "missing_fold",
    "stats_shape",
    "count_mismatch",
)
SET_NAMES = {"train": "trn", "valid": "val", "test": "tst"}
FILES = {"text": ("L", "bert_large"), "audio": ("A", "comparE"), "vision": ("V", "denseface")}


@dataclass
class IemocapTruth:
    ids: dict[str, list[str]]  # split → utterance ids, in file order
    labels: dict[str, np.ndarray]  # split → (N,) class ids
    features: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # modality → id → (T, D)
    mean: dict[int, np.ndarray] = field(default_factory=dict)  # fold → (D_audio,)
    std: dict[int, np.ndarray] = field(default_factory=dict)


def write_iemocap(
    folder: Path,
    *,
    sizes: dict[str, int] | None = None,
    dims: dict[str, int] | None = None,
    folds: tuple[int, ...] = (1, 2),
    seed: int = 0,
    fault: str | None = None,
) -> IemocapTruth:
    """Write the folder for `folds` (same utterances per fold, different audio statistics).

    Sequence lengths vary per utterance (1..6 frames). Every class occurs in train.
    """
    check_fault(fault, IEMOCAP_FAULTS)
    sizes = sizes or {"train": 8, "valid": 4, "test": 4}
    dims = dims or {"text": 6, "audio": 5, "vision": 4}
    rng = np.random.default_rng(seed)
    ids = {s: [f"Ses0{k}F_impro0{i}_F00{i}" for i in range(n)] for k, (s, n) in enumerate(sizes.items(), 1)}
    labels = {s: np.arange(n) % 4 for s, n in sizes.items()}
    truth = IemocapTruth(ids=ids, labels=labels)
    for m in FILES:
        truth.features[m] = {
            u: rng.normal(size=(int(rng.integers(1, 7)), dims[m])).astype(np.float32) for s in ids for u in ids[s]
        }
    for m, (sub, stem) in FILES.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        if fault == "missing_file" and m == "vision":
            continue
        with h5py.File(folder / sub / f"{stem}.h5", "w") as f:
            for u, x in truth.features[m].items():
                if fault == "missing_modality" and m == "vision" and u == ids["test"][1]:
                    continue
                if fault == "shape_mismatch" and m == "audio" and u == ids["valid"][2]:
                    x = np.zeros((x.shape[0], dims[m] + 1), dtype=np.float32)
                f[u] = x
    with h5py.File(folder / "A" / "comparE_mean_std.h5", "w") as f:
        for fold in folds:
            if fault == "missing_fold" and fold == folds[0]:
                continue
            truth.mean[fold] = rng.normal(size=dims["audio"]).astype(np.float32)
            truth.std[fold] = rng.uniform(0.5, 2.0, size=dims["audio"]).astype(np.float32)
            width = dims["audio"] + (1 if fault == "stats_shape" else 0)
            f[f"{fold}/mean"] = np.resize(truth.mean[fold], width)
            f[f"{fold}/std"] = np.resize(truth.std[fold], width)
    for fold in folds:
        target = folder / "target" / str(fold)
        target.mkdir(parents=True, exist_ok=True)
        for s, set_name in SET_NAMES.items():
            onehot = np.eye(4, dtype=np.float32)[labels[s]]
            if fault == "bad_label" and s == "valid":
                onehot[1] = [0, 1, 1, 0]
            if fault == "label_width" and s == "train":
                onehot = np.eye(5, dtype=np.float32)[labels[s]]
            names = np.asarray([[u.encode()] for u in ids[s]])  # (N, 1) byte strings, as MMIN's
            if fault == "count_mismatch" and s == "test":
                names = names[:-1]
            np.save(target / f"{set_name}_label.npy", onehot)
            np.save(target / f"{set_name}_int2name.npy", names)
    if fault == "truncated":
        truncate(folder / "L" / "bert_large.h5")
    return truth
