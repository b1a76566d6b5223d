"""A MulT pickle (CMU-MOSI / MOSEI layout): {split: {text, audio, vision, labels}}."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .common import check_fault, truncate

MOSI_FAULTS = (
    "truncated",
    "not_a_pickle",
    "bad_label",
    "missing_modality",
    "missing_split",
    "shape_mismatch",
    "count_mismatch",
    "nan",
)
SIZES = {"train": 6, "valid": 3, "test": 3}


def write_mosi(
    path: Path,
    *,
    seq_lens: dict[str, int] | None = None,
    dims: dict[str, int] | None = None,
    seed: int = 0,
    fault: str | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Write the pickle; returns the dict pickled (audio holds some -inf, as real MOSI does).

    `seq_lens` defaults to aligned lengths (4 for every modality); give different ones for an
    unaligned file. Labels include 0 and both ends of [-3, 3].
    """
    check_fault(fault, MOSI_FAULTS)
    seq_lens = seq_lens or {"text": 4, "audio": 4, "vision": 4}
    dims = dims or {"text": 5, "audio": 3, "vision": 4}
    rng = np.random.default_rng(seed)
    data: dict[str, dict[str, Any]] = {}
    for split, n in SIZES.items():
        d: dict[str, Any] = {m: rng.normal(size=(n, seq_lens[m], dims[m])) for m in ("text", "audio", "vision")}
        d["audio"][0, 0, :] = -np.inf  # a silent frame
        d["audio"][n - 1, 1, 0] = -np.inf
        labels = np.round(rng.uniform(-3, 3, size=(n, 1, 1)), 1)
        labels[0, 0, 0], labels[1, 0, 0], labels[2, 0, 0] = 0.0, -3.0, 3.0
        d["labels"] = labels
        data[split] = d
    if fault == "bad_label":
        data["train"]["labels"][4, 0, 0] = 3.5
    elif fault == "missing_modality":
        del data["valid"]["vision"]
    elif fault == "missing_split":
        del data["test"]
    elif fault == "shape_mismatch":
        data["test"]["audio"] = rng.normal(size=(SIZES["test"], seq_lens["audio"], dims["audio"] + 1))
    elif fault == "count_mismatch":
        data["train"]["labels"] = data["train"]["labels"][:-1]
    elif fault == "nan":
        data["valid"]["text"][1, 2, 3] = np.nan
    if fault == "not_a_pickle":
        path.write_text("text,audio,vision\n1,2,3\n")
        return data
    with path.open("wb") as f:
        pickle.dump(data, f, protocol=4)
    if fault == "truncated":
        truncate(path)
    return data
