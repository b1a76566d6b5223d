"""The paper's data sets as catalog datasets (issue 11): read through the registry from tiny files
written in exactly their formats under a data root, trained for one epoch by `cggm train`, and every
bad layout of the issue named in one line (at POST for the path rules, else when the run loads).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cggm_core.config import resolve
from cggm_core.data import DATASETS
from cggm_core.data.base import LoaderSplit, MultimodalData, Split, kinds_of
from cggm_core.data.files import DataFormatError, DataPathError
from cggm_core.settings import SettingError

from .fakedata import write_brats_h5, write_brats_nifti, write_food101, write_iemocap, write_mosi
from .fakedata.roots import CASES, TINY_TRANSFORMER, write_case

CGGM = str(Path(sys.executable).with_name("cggm"))


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root, set as this process's CGGM_DATA_DIR."""
    r = tmp_path / "datasets"
    r.mkdir()
    monkeypatch.setenv("CGGM_DATA_DIR", str(r))
    return r


def load(config: dict[str, Any], data_seed: int = 0) -> MultimodalData:
    job = resolve({"method": "joint", **config})
    return DATASETS[job.dataset].load(job.data, data_seed)


def first_batch(split: Any, n: int = 64) -> Any:
    return next(iter(split.batches(n)))


# ---------------------------------------------------------------- every data set through the registry


@pytest.mark.parametrize("case", list(CASES))
def test_each_case_loads_what_its_config_declares(root: Path, case: str) -> None:
    config = write_case(case, root)
    job = resolve({"method": "joint", **config})
    ds = DATASETS[job.dataset]
    data = ds.load(job.data, 0)
    assert data.modalities == ds.modality_names(job.data)
    assert data.task.name == ds.task_name(job.data)
    declared = ds.input_kinds(job.data)
    for m in data.modalities:
        assert data.inputs[m].kind == (declared if isinstance(declared, str) else declared[m]), m
    assert kinds_of(declared, data.modalities) <= {"sequence", "image", "tokens"}
    assert job.model == ds.default_model
    for split in (data.train, data.val, data.test):
        batch = first_batch(split)
        assert len(batch) == min(64, len(split)) > 0
        for m in data.modalities:
            spec = data.inputs[m]
            x = batch.xs[m]
            if spec.kind == "sequence":
                assert x.ndim == 3 and x.shape[2] == spec.shape[1] and x.shape[1] <= spec.shape[0]
            elif spec.kind == "image":
                assert tuple(x.shape[1:]) == spec.shape
            else:
                assert x.dtype == torch.int64 and x.ndim == 2 and int(x.max()) < spec.features


def test_mosi_is_in_memory_with_the_files_values(root: Path) -> None:
    (root / "cmu").mkdir()
    written = write_mosi(root / "cmu" / "mosi_data.pkl")
    data = load({"dataset": "mosi", "path": "cmu/mosi_data.pkl"})
    assert isinstance(data.train, Split) and data.task.name == "regression"
    for split, name in ((data.train, "train"), (data.val, "valid"), (data.test, "test")):
        assert isinstance(split, Split)
        audio = written[name]["audio"].astype(np.float32)
        audio[audio == -np.inf] = 0.0  # as the official CMUData
        np.testing.assert_array_equal(split.xs["audio"].numpy(), audio)
        np.testing.assert_array_equal(split.xs["text"].numpy(), written[name]["text"].astype(np.float32))
        assert split.y.shape == (len(audio), 1)  # (N, 1) targets of a 1-output regression
        np.testing.assert_array_equal(split.y.numpy()[:, 0], written[name]["labels"].reshape(-1).astype(np.float32))
    assert data.inputs["text"].shape == (4, 5) and not data.inputs["audio"].variable_length


def test_iemocap_reads_the_fold_per_utterance_with_masks(root: Path) -> None:
    truth = write_iemocap(root / "iemo")
    data = load({"dataset": "iemocap", "path": "iemo", "fold": 2})
    assert isinstance(data.val, LoaderSplit) and data.task.num_outputs == 4
    batch = first_batch(data.val)  # in order: the val split's utterances as listed
    ids = truth.ids["valid"]
    lengths = [len(truth.features["vision"][u]) for u in ids]
    assert batch.masks["vision"].sum(dim=1).tolist() == lengths
    for i, u in enumerate(ids):
        np.testing.assert_array_equal(batch.xs["vision"][i, : lengths[i]].numpy(), truth.features["vision"][u])
        audio = (truth.features["audio"][u] - truth.mean[2]) / truth.std[2]  # fold 2's training statistics
        np.testing.assert_allclose(batch.xs["audio"][i, : len(audio)].numpy(), audio, rtol=1e-6)
    assert batch.y.tolist() == truth.labels["valid"].tolist()


def test_food101_carves_validation_from_train_and_the_quirk_validates_on_test(root: Path) -> None:
    truth = write_food101(root / "food", sizes={"train": 20, "test": 6})
    data = load({"dataset": "food101", "path": "food", "valid_fraction": 0.25, "vocab_min_freq": 1})
    assert (len(data.train), len(data.val), len(data.test)) == (15, 5, 6)
    assert data.task.num_outputs == 101  # the Food-101 class list, whatever the files use
    quirk = load({"dataset": "food101", "path": "food", "validate_on_test": True, "vocab_min_freq": 1})
    assert (len(quirk.train), len(quirk.val)) == (20, 6)
    val_ids = quirk.val.source.ids  # type: ignore[attr-defined]
    assert val_ids == [e["id"] for e in truth.entries["test"]]
    own = load({"dataset": "food101", "path": "food", "food_classes": "from_train", "vocab_min_freq": 1})
    assert own.task.num_outputs == 3


def test_food101_builtin_text_is_padded_token_ids(root: Path) -> None:
    truth = write_food101(root / "food")
    data = load({"dataset": "food101", "path": "food", "validate_on_test": True, "vocab_min_freq": 1, "max_tokens": 4})
    batch = first_batch(data.test)
    lengths = [min(len(e["text_tokens"]), 4) for e in truth.entries["test"]]
    assert batch.masks["text"].sum(dim=1).tolist() == lengths
    assert batch.xs["text"].dtype == torch.int64 and int(batch.xs["text"][~batch.masks["text"]].abs().sum()) == 0
    vocab = data.inputs["text"].vocab_size
    assert vocab == 2 + 10  # <pad>, <unk> and the fakes' ten words (all seen in train.json)
    assert batch.xs["image"].shape == (len(lengths), 3, 224, 224)


def test_brats_evaluates_every_slice_per_case_and_draws_training_slices_per_epoch(root: Path) -> None:
    truth = write_brats_h5(root / "brats")
    data = load({"dataset": "brats", "path": "brats", "crop_size": 8, "brats_augment": False})
    assert isinstance(data.val, LoaderSplit) and isinstance(data.train, LoaderSplit)
    depth = 6
    assert len(data.val) == len(truth.splits["valid"]) * depth and len(data.train) == len(truth.splits["train"])
    batch = first_batch(data.val)
    assert batch.groups is not None and batch.groups.tolist() == [k for k in range(2) for _ in range(depth)]
    assert tuple(batch.xs["flair"].shape[1:]) == (1, 8, 8) and batch.y.shape[1:] == (8, 8)
    source = data.train.source
    slices = {}
    for epoch in (1, 2, 3, 4):
        data.train.set_epoch(epoch)  # forwarded to the reader's per-epoch draw
        assert source.epoch == epoch  # type: ignore[attr-defined]
        slices[epoch] = [source.slice_for(i)[1] for i in range(len(source))]  # type: ignore[attr-defined]
        for k, z in enumerate(slices[epoch]):
            assert z in truth.tumour[truth.splits["train"][k]]  # always a tumour slice
    assert len({tuple(s) for s in slices.values()}) > 1  # other slices in other epochs


# ---------------------------------------------------------------- the data root, at POST


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"dataset": "mosi", "path": "/data/mosi.pkl"}, "setting 'path': dataset path '/data/mosi.pkl' is absolute"),
        (
            {"dataset": "iemocap", "path": "../iemocap"},
            "setting 'path': dataset path '../iemocap' leaves the data root",
        ),
        ({"dataset": "brats", "path": "a/../../b"}, "'..' may not climb above it"),
        ({"dataset": "mosei", "path": ""}, "setting 'path': dataset path '' is empty"),
        (
            {"dataset": "food101", "image_source": "hf", "image_encoder": "/models/vit"},
            "setting 'image_encoder': dataset path '/models/vit' is absolute",
        ),
        (
            {"dataset": "food101", "text_source": "features", "features": "../feats"},
            "setting 'features': dataset path '../feats' leaves the data root",
        ),
        ({"dataset": "food101", "image_source": "features"}, "setting 'features': a source is 'features'"),
        (
            {"dataset": "food101", "text_encoder": "bert"},
            "setting 'text_encoder' is given, but text_source is 'builtin'",
        ),
        ({"dataset": "food101", "text_source": "hf"}, "setting 'text_encoder': text_source is 'hf', so give"),
        ({"dataset": "brats", "valid_fraction": 0.5, "test_fraction": 0.5}, "they must leave cases to train on"),
        ({"dataset": "iemocap", "fold": 11}, "setting 'fold': 11 is out of bounds"),
    ],
)
def test_bad_settings_are_refused_by_resolve(config: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingError) as err:
        resolve({"method": "cggm", **config})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_symlink_out_of_the_root_is_refused_when_loading(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    write_mosi(outside / "mosi.pkl")
    (root / "link").symlink_to(outside)
    with pytest.raises(DataPathError, match="outside the data root"):
        load({"dataset": "mosi", "path": "link/mosi.pkl"})


# ---------------------------------------------------------------- bad files, named when the run loads


def _bad_mosi(root: Path, fault: str) -> dict[str, Any]:
    write_mosi(root / "mosi.pkl", fault=fault)
    return {"dataset": "mosi", "path": "mosi.pkl"}


BAD_FILES: dict[str, tuple[Any, str, str]] = {
    # case: (writer(root) -> config, the file named, what the message says)
    "wrong_path": (
        lambda r: {"dataset": "mosi", "path": "cmu/nothere.pkl"},
        "cmu/nothere.pkl",
        "no such file; expected the MulT pickle",
    ),
    "truncated_pickle": (lambda r: _bad_mosi(r, "truncated"), "mosi.pkl", "truncated or not a pickle file"),
    "mosi_label_outside": (lambda r: _bad_mosi(r, "bad_label"), "mosi.pkl", "train/labels[4] = 3.5 is outside [-3, 3]"),
    "mosi_modality_missing": (lambda r: _bad_mosi(r, "missing_modality"), "mosi.pkl", "split 'valid' has no 'vision'"),
    "truncated_hdf5": (
        lambda r: (write_iemocap(r / "iemo", fault="truncated"), {"dataset": "iemocap", "path": "iemo"})[1],
        "iemo/L/bert_large.h5",
        "truncated or not an HDF5 file",
    ),
    "iemocap_label_outside": (
        lambda r: (write_iemocap(r / "iemo", fault="bad_label"), {"dataset": "iemocap", "path": "iemo"})[1],
        "iemo/target/1/val_label.npy",
        "row 1 = [0.0, 1.0, 1.0, 0.0] is not one-hot",
    ),
    "iemocap_modality_missing": (
        lambda r: (write_iemocap(r / "iemo", fault="missing_modality"), {"dataset": "iemocap", "path": "iemo"})[1],
        "iemo/V/denseface.h5",
        "has no features for utterance",
    ),
    "food_label_outside": (
        lambda r: (write_food101(r / "food", fault="bad_label"), {"dataset": "food101", "path": "food"})[1],
        "food/test.json",
        "label 'not_a_dish' is not one of the 101 class names",
    ),
    "food_modality_missing": (
        lambda r: (
            write_food101(r / "food", features={"image": (2, 3), "text": (2, 3)}, fault="missing_modality"),
            {
                "dataset": "food101",
                "path": "food",
                "image_source": "features",
                "text_source": "features",
                "features": "food/features",
            },
        )[1],
        "food/features/test_text.npy",
        "missing, but train_text.npy exists",
    ),
    "food_pooled_features": (
        lambda r: (
            write_food101(r / "food", features={"image": (7,)}),
            {"dataset": "food101", "path": "food", "image_source": "features", "features": "food/features"},
        )[1],
        "food/features/train_image.npy",
        "rows are (7,), expected (T, D) sequences",
    ),
    "nifti_shape_vs_mask": (
        lambda r: (
            write_brats_nifti(r / "nii", fault="shape_mismatch"),
            {"dataset": "brats", "path": "nii", "crop_size": 8},
        )[1],
        "nii/BraTS2021_00004/BraTS2021_00004_t2.nii.gz",
        "has shape (12, 10, 5), which disagrees with its mask BraTS2021_00004_seg.nii.gz (12, 10, 6)",
    ),
    "brats_h5_missing_split": (
        lambda r: (write_brats_h5(r / "b", fault="missing_split"), {"dataset": "brats", "path": "b", "crop_size": 8})[
            1
        ],
        "b/test",
        "no such folder; expected the official BraTS h5 layout",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_named_in_one_line_when_loading(root: Path, case: str) -> None:
    writer, file, message = BAD_FILES[case]
    config = writer(root)
    with pytest.raises(DataFormatError) as err:
        load(config)
    text = str(err.value)
    assert "\n" not in text
    assert err.value.path == str(root.resolve() / file), text
    assert message in text, text


def test_a_bad_label_met_mid_run_by_a_dataloader_worker_keeps_its_one_line(root: Path) -> None:
    write_brats_h5(root / "b", fault="bad_label")  # a valid-split case holds the label 5: read at evaluation
    data = load({"dataset": "brats", "path": "b", "crop_size": 8})
    assert isinstance(data.val, LoaderSplit)
    data.val.num_workers = 1  # read in a worker process: torch re-raises from its traceback text
    with pytest.raises(DataFormatError) as err:
        first_batch(data.val)
    assert (
        str(err.value)
        == f"{root.resolve() / 'b/valid/case_003.h5'}: label holds value(s) [5]; BraTS labels are 0, 1, 2, 4 (3 read as 4)"
    )


def test_data_format_errors_pickle_and_rebuild_from_a_traceback() -> None:
    err = DataFormatError("/d/x.h5", "truncated: a: b")
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.problem, str(back)) == ("/d/x.h5", "truncated: a: b", "/d/x.h5: truncated: a: b")
    text = "Caught DataFormatError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
    text += '  File "x.py", line 1\ncggm_core.data.files.common.DataFormatError: /d/x.h5: truncated: a: b\n'
    assert str(DataFormatError(text)) == "/d/x.h5: truncated: a: b"


# ---------------------------------------------------------------- `cggm train`, one epoch each


def cggm_train(root: Path, out: Path, config: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    config_file = out.parent / f"{out.name}.json"
    config_file.write_text(json.dumps({"method": "cggm", **config}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGGM_")}
    env["CGGM_DATA_DIR"] = str(root)
    cmd = [CGGM, "train", "--config", str(config_file), "--out", str(out), "--no-progress", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=out.parent)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_one_epoch_of_cggm_train_on_each_data_set(root: Path, tmp_path: Path, case: str) -> None:
    config = write_case(case, root)
    r = cggm_train(root, tmp_path / "run", config)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_done"] == 1
    assert summary["dataset"] == config["dataset"] and summary["steps"] >= 1
    primary = summary["metric"]
    assert np.isfinite(summary["test"][f"test/{primary}"])
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    keys = {json.loads(line)["key"] for line in lines}
    per_modality = {f"{family}/{m}" for family in ("coef", "acc", "grad_norm", "cos") for m in summary["modalities"]}
    assert per_modality <= keys  # the live per-modality view has its series


@pytest.mark.slow
def test_cggm_train_names_a_bad_file_in_one_line_and_exits_1(root: Path, tmp_path: Path) -> None:
    write_mosi(root / "mosi.pkl", fault="truncated")
    r = cggm_train(root, tmp_path / "run", {"dataset": "mosi", "path": "mosi.pkl", **TINY_TRANSFORMER})
    assert r.returncode == 1
    assert r.stderr.startswith(f"cggm: error: {root.resolve() / 'mosi.pkl'}: truncated or not a pickle file")
    assert r.stderr.count("\n") == 1
    r = cggm_train(root, tmp_path / "run2", {"dataset": "mosi", "path": "/abs/mosi.pkl"})
    assert r.returncode == 2 and "setting 'path': dataset path '/abs/mosi.pkl' is absolute" in r.stderr


@pytest.mark.slow
def test_a_bad_case_found_at_validation_fails_the_run_not_finishes_it(root: Path, tmp_path: Path) -> None:
    write_brats_h5(root / "b", fault="bad_label")
    r = cggm_train(
        root, tmp_path / "run", {"dataset": "brats", "path": "b", "crop_size": 8, "epochs": 1, "probe_steps": 5}
    )
    assert r.returncode == 1 and "valid/case_003.h5: label holds value(s) [5]" in r.stderr
    assert not (tmp_path / "run" / "summary.json").exists()  # never a summary of a half run
