"""The file readers (cggm_core.data.files): every format read back exactly, every bad layout named.

The files are written by tests/fakedata in exactly the formats of the paper's data sets (pickle,
HDF5, .npy, JSON with PNG/JPEG images, NIfTI); the expected values come from what was written.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from cggm_core.data.files import (
    FOOD101_CLASSES,
    DataFormatError,
    DataPathError,
    ImagePipeline,
    Vocabulary,
    check_relative_path,
    data_root,
    read_brats,
    read_food101,
    read_iemocap,
    read_mosi,
    resolve_under_root,
)
from cggm_core.data.files.brats import official_augment
from cggm_core.data.files.brats_cases import NiftiCase, centre_box
from cggm_core.data.files.common import H5Handles, seeded_holdout

from .fakedata import write_brats_h5, write_brats_nifti, write_food101, write_iemocap, write_mosi

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the data root


def test_data_root_is_the_env_var_or_data_datasets(tmp_path: Path) -> None:
    assert data_root({"CGGM_DATA_DIR": str(tmp_path)}) == tmp_path
    assert data_root({}) == Path.cwd() / "data" / "datasets"
    assert data_root({"CGGM_DATA_DIR": ""}) == Path.cwd() / "data" / "datasets"


def test_relative_paths_under_the_root_resolve(tmp_path: Path) -> None:
    (tmp_path / "mosi").mkdir()
    (tmp_path / "mosi" / "mosi.pkl").write_bytes(b"")
    assert resolve_under_root("mosi/mosi.pkl", tmp_path) == tmp_path.resolve() / "mosi" / "mosi.pkl"
    assert resolve_under_root("./mosi/../mosi/./mosi.pkl", tmp_path) == tmp_path.resolve() / "mosi" / "mosi.pkl"
    assert resolve_under_root("not/there/yet", tmp_path) == tmp_path.resolve() / "not" / "there" / "yet"
    assert check_relative_path("a/./b/../c") == Path("a/c")
    # A symlink that stays inside the root is fine.
    (tmp_path / "alias").symlink_to(tmp_path / "mosi")
    assert resolve_under_root("alias/mosi.pkl", tmp_path) == tmp_path.resolve() / "mosi" / "mosi.pkl"


@pytest.mark.parametrize("path", ["/etc/passwd", "/", "C:\\data\\mosi.pkl", "C:/data", "\\\\server\\share\\x"])
def test_absolute_paths_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(DataPathError) as err:
        resolve_under_root(path, tmp_path)
    msg = str(err.value)
    assert repr(path) in msg and str(tmp_path) in msg and "absolute" in msg and "relative to the data root" in msg


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "a/b/../../../x", "./../x"])
def test_dotdot_that_leaves_the_root_is_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(DataPathError) as err:
        resolve_under_root(path, tmp_path)
    msg = str(err.value)
    assert repr(path) in msg and str(tmp_path) in msg and "'..' may not climb above it" in msg


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        (".", "names the data root .* itself"),
        ("a/..", "names the data root .* itself"),
        ("x\x00y", "contains a NUL character"),
    ],
)
def test_empty_root_itself_and_nul_are_refused(tmp_path: Path, path: str, message: str) -> None:
    with pytest.raises(DataPathError, match=message):
        resolve_under_root(path, tmp_path)


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (root / "a").mkdir(parents=True)
    (root / "escape").symlink_to(outside)
    (root / "a" / "link").symlink_to(outside / "deep")
    with pytest.raises(DataPathError) as err:
        resolve_under_root("escape/data.pkl", root)
    msg = str(err.value)
    assert "'escape/data.pkl'" in msg and str(root) in msg and "symlink" in msg and str(outside) in msg
    # Lexically `a/link/../x` is `a/x`, but on disk `link/..` is the parent of the link's target.
    assert check_relative_path("a/link/../x") == Path("a/x")
    with pytest.raises(DataPathError, match="outside the data root"):
        resolve_under_root("a/link/../x", root)


# ---------------------------------------------------------------- CMU-MOSI / MOSEI


def _expected_mosi(data: dict[str, dict[str, np.ndarray]], split: str, m: str) -> np.ndarray:
    x = data[split][m].astype(np.float32)
    if m == "audio":
        x[x == -np.inf] = 0.0
    return x


def test_mosi_aligned_reads_back_exactly(tmp_path: Path) -> None:
    data = write_mosi(tmp_path / "mosi.pkl")
    ds = read_mosi(tmp_path / "mosi.pkl")
    assert (ds.name, ds.task, ds.num_classes, ds.modalities) == (
        "mosi",
        "regression",
        None,
        ("text", "audio", "vision"),
    )
    assert ds.feature_dims == {"text": 5, "audio": 3, "vision": 4}
    assert ds.seq_lens == {"text": 4, "audio": 4, "vision": 4} and ds.info["aligned"] is True
    assert ds.sample_shapes == {"text": (4, 5), "audio": (4, 3), "vision": (4, 4)}
    for split, source in ds.splits.items():
        xs, y = source.arrays()
        for m in ds.modalities:
            np.testing.assert_array_equal(xs[m], _expected_mosi(data, split, m))
            assert xs[m].dtype == np.float32
        np.testing.assert_array_equal(y, data[split]["labels"].reshape(-1).astype(np.float32))
    assert ds.train.arrays()[0]["audio"][0, 0].tolist() == [0.0, 0.0, 0.0]  # was -inf
    sample, label = ds.valid[2]
    np.testing.assert_array_equal(sample["vision"], data["valid"]["vision"][2].astype(np.float32))
    assert label == 3.0 and isinstance(label, float)
    assert len(ds.train) == 6 and len(ds.test) == 3
    with pytest.raises(IndexError, match="valid split of 3"):
        ds.valid[3]


def test_mosei_unaligned_keeps_a_length_per_modality(tmp_path: Path) -> None:
    data = write_mosi(
        tmp_path / "mosei.pkl", seq_lens={"text": 3, "audio": 7, "vision": 5}, dims={"text": 4, "audio": 6, "vision": 2}
    )
    ds = read_mosi(tmp_path / "mosei.pkl", name="mosei")
    assert ds.name == "mosei" and ds.info["aligned"] is False
    assert ds.seq_lens == {"text": 3, "audio": 7, "vision": 5}
    assert ds.feature_dims == {"text": 4, "audio": 6, "vision": 2}
    sample, _ = ds.test[1]
    np.testing.assert_array_equal(sample["audio"], _expected_mosi(data, "test", "audio")[1])


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("truncated", "truncated or not a pickle file"),
        ("not_a_pickle", "truncated or not a pickle file"),
        ("bad_label", r"train/labels\[4\] = 3.5 is outside \[-3, 3\]"),
        ("missing_modality", "split 'valid' has no 'vision'"),
        ("missing_split", "has no split 'test'"),
        ("shape_mismatch", r"audio is \(T, D\) = \(4, 3\) in train but \(4, 4\) in test"),
        ("count_mismatch", "train/text has 6 samples but train/labels has 5"),
        ("nan", r"valid/text has 1 non-finite values \(first at index \(1, 2, 3\)\)"),
    ],
)
def test_mosi_bad_files_name_the_file_and_the_problem(tmp_path: Path, fault: str, message: str) -> None:
    path = tmp_path / "mosi.pkl"
    write_mosi(path, fault=fault)
    with pytest.raises(DataFormatError, match=message) as err:
        read_mosi(path)
    assert str(err.value).startswith(f"{path}: ")


def test_mosi_missing_file_names_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as err:
        read_mosi(tmp_path / "nope.pkl")
    assert str(err.value) == (
        f"{tmp_path / 'nope.pkl'}: no such file; expected the MulT pickle: a dict with 'train', 'valid', 'test', "
        "each a dict of 'text', 'audio', 'vision' arrays (N, T, D) and 'labels' (N, 1, 1) in [-3, 3]"
    )
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- IEMOCAP


def test_iemocap_reads_the_fold_with_its_training_statistics(tmp_path: Path) -> None:
    truth = write_iemocap(tmp_path)
    ds = read_iemocap(tmp_path, fold=2)
    assert (ds.task, ds.num_classes, ds.modalities) == ("classification", 4, ("text", "audio", "vision"))
    assert ds.feature_dims == {"text": 6, "audio": 5, "vision": 4}
    assert ds.sample_shapes == {"text": (None, 6), "audio": (None, 5), "vision": (None, 4)}
    longest = {m: max(len(x) for x in truth.features[m].values()) for m in ds.modalities}
    assert ds.seq_lens == longest
    for split, source in ds.splits.items():
        assert source.ids == truth.ids[split]
        np.testing.assert_array_equal(source.labels, truth.labels[split])
        for i, utt in enumerate(truth.ids[split]):
            xs, y = source[i]
            assert y == truth.labels[split][i]
            np.testing.assert_array_equal(xs["text"], truth.features["text"][utt])
            np.testing.assert_array_equal(xs["vision"], truth.features["vision"][utt])
            expected_audio = (truth.features["audio"][utt] - truth.mean[2]) / truth.std[2]
            np.testing.assert_array_equal(xs["audio"], expected_audio)
    # Fold 1's statistics differ: the fold setting really picks them.
    other = read_iemocap(tmp_path, fold=1).train[0][0]["audio"]
    assert not np.allclose(other, ds.train[0][0]["audio"])


def test_iemocap_zero_std_divides_by_one_and_int_labels_work(tmp_path: Path) -> None:
    truth = write_iemocap(tmp_path)
    with h5py.File(tmp_path / "A" / "comparE_mean_std.h5", "a") as f:
        std = f["1/std"][()]
        std[0] = 0.0
        f["1/std"][...] = std
    np.save(tmp_path / "target" / "1" / "trn_label.npy", truth.labels["train"].astype(np.int64))
    ds = read_iemocap(tmp_path, fold=1)
    utt = truth.ids["train"][3]
    audio = ds.train[3][0]["audio"]
    np.testing.assert_array_equal(audio[:, 0], truth.features["audio"][utt][:, 0] - truth.mean[1][0])
    assert np.isfinite(audio).all() and ds.train[3][1] == truth.labels["train"][3]


def test_iemocap_splits_survive_pickling_and_worker_processes(tmp_path: Path) -> None:
    import torch.utils.data

    truth = write_iemocap(tmp_path)
    ds = read_iemocap(tmp_path, fold=1)
    ds.test[0]  # opens the HDF5 files in this process first, as a trainer would
    clone = pickle.loads(pickle.dumps(ds.test))
    np.testing.assert_array_equal(clone[2][0]["text"], truth.features["text"][truth.ids["test"][2]])
    loader = torch.utils.data.DataLoader(ds.valid, batch_size=1, num_workers=2, collate_fn=lambda b: b[0])
    got = [(xs["vision"], y) for xs, y in loader]
    assert [y for _, y in got] == truth.labels["valid"].tolist()
    for (vision, _), utt in zip(got, truth.ids["valid"], strict=True):
        np.testing.assert_array_equal(vision, truth.features["vision"][utt])


def test_h5_handles_reopen_in_a_forked_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # h5py handles must not cross a fork; a process other than the opener opens its own.
    write_iemocap(tmp_path)
    handles = H5Handles({"text": tmp_path / "L" / "bert_large.h5"}, "layout")
    first = handles["text"]
    assert handles["text"] is first
    monkeypatch.setattr(os, "getpid", lambda: -1)  # what a DataLoader worker after fork sees
    second = handles["text"]
    assert second is not first and second.id.valid
    assert pickle.loads(pickle.dumps(handles))._files == {}


@pytest.mark.parametrize(
    ("fault", "file", "message"),
    [
        ("missing_file", "V/denseface.h5", "no such file; expected the MMIN feature folder: A/comparE.h5"),
        ("truncated", "L/bert_large.h5", "truncated or not an HDF5 file"),
        ("bad_label", "target/1/val_label.npy", r"row 1 = \[0.0, 1.0, 1.0, 0.0\] is not one-hot"),
        ("label_width", "target/1/trn_label.npy", r"has shape \(8, 5\), expected \(N, 4\) one-hot labels"),
        ("missing_modality", "V/denseface.h5", "no features for utterance 'Ses03F_impro01_F001' of the test split"),
        ("shape_mismatch", "A/comparE.h5", "utterance 'Ses02F_impro02_F002' is 6 wide, the others 5"),
        ("missing_fold", "A/comparE_mean_std.h5", r"has no group for fold 1 \(groups found: 2\)"),
        (
            "stats_shape",
            "A/comparE_mean_std.h5",
            r"fold 1's mean/std have shape \(6,\), but the audio features are 5 wide",
        ),
        ("count_mismatch", "target/1/tst_int2name.npy", "has 3 ids but tst_label.npy has 4 labels"),
    ],
)
def test_iemocap_bad_layouts_name_the_file(tmp_path: Path, fault: str, file: str, message: str) -> None:
    write_iemocap(tmp_path, fault=fault)
    with pytest.raises(DataFormatError, match=message) as err:
        read_iemocap(tmp_path, fold=1)
    assert str(err.value).startswith(f"{tmp_path / file}: ")


def test_iemocap_fold_is_bounded(tmp_path: Path) -> None:
    write_iemocap(tmp_path)
    with pytest.raises(ValueError, match=r"fold must be 1\.\.10, got 11"):
        read_iemocap(tmp_path, fold=11)


# ---------------------------------------------------------------- UPMC-Food-101


def test_food101_reads_entries_images_and_tokens(tmp_path: Path) -> None:
    truth = write_food101(tmp_path, sizes={"train": 30, "test": 6})
    pipe = ImagePipeline(size=5)
    ds = read_food101(tmp_path, image=pipe, seed=3)
    assert (ds.task, ds.num_classes, ds.modalities) == ("classification", 101, ("image", "text"))
    assert ds.sample_shapes == {"image": (3, 5, 5), "text": (None,)} and ds.feature_dims == {"image": 3}
    # 10% of 30 held out, one per class; train and valid partition train.json.
    train_ids, valid_ids = ds.train.ids, ds.valid.ids
    assert len(valid_ids) == 3 and len(train_ids) == 27
    assert sorted(train_ids + valid_ids) == sorted(e["id"] for e in truth.entries["train"])
    assert sorted(ds.valid.labels.tolist()) == sorted(
        FOOD101_CLASSES.index(c) for c in ("apple_pie", "baklava", "sushi")
    )
    assert ds.test.ids == [e["id"] for e in truth.entries["test"]]
    by_id = {e["id"]: e for e in truth.entries["train"]}
    for i in (0, 1, 2):
        xs, y = ds.train[i]
        e = by_id[train_ids[i]]
        assert y == FOOD101_CLASSES.index(e["label"])
        assert xs["text"].tolist() == e["text_tokens"]
        squashed = np.asarray(Image.fromarray(truth.pixels[e["id"]]).resize((5, 5), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(xs["image"], squashed.transpose(2, 0, 1).astype(np.float32) / np.float32(255))
    # The seed picks the validation split; the same seed the same one.
    assert read_food101(tmp_path, image=pipe, seed=3).valid.ids == valid_ids
    assert read_food101(tmp_path, image=pipe, seed=4).valid.ids != valid_ids


def test_food101_centre_crop_and_normalisation_are_exact(tmp_path: Path) -> None:
    truth = write_food101(tmp_path)  # 8 × 12 images, PNG and JPEG alternating
    pipe = ImagePipeline(size=8, resize_shorter=8, mean=(0.5, 0.25, 0.0), std=(0.5, 0.5, 2.0))
    ds = read_food101(tmp_path, image=pipe, validate_on_test=True)
    for i in (0, 1):  # a PNG and a JPEG
        xs, _ = ds.test[i]
        px = truth.pixels[f"test_{i}"]  # (8, 12, 3): no resize needed, the crop takes columns 2..9
        crop = px[:, 2:10].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        mean = np.array([0.5, 0.25, 0.0], dtype=np.float32)[:, None, None]
        std = np.array([0.5, 0.5, 2.0], dtype=np.float32)[:, None, None]
        np.testing.assert_array_equal(xs["image"], (crop - mean) / std)
    # Lossless PNG: what was generated is what is read.
    png = np.asarray(Image.open(tmp_path / truth.entries["test"][0]["img_path"]).convert("RGB"))
    np.testing.assert_array_equal(png, truth.pixels["test_0"])


def test_food101_validate_on_test_is_the_official_quirk(tmp_path: Path) -> None:
    truth = write_food101(tmp_path)
    ds = read_food101(tmp_path, validate_on_test=True, classes=None)
    assert ds.valid.ids == ds.test.ids == [e["id"] for e in truth.entries["test"]]
    assert ds.train.ids == [e["id"] for e in truth.entries["train"]]
    assert ds.num_classes == 3 and ds.info["class_names"] == ("apple_pie", "baklava", "sushi")
    assert ds.train.labels.tolist() == [i % 3 for i in range(12)]


def test_vocabulary_counts_tokens_and_encodes() -> None:
    vocab = Vocabulary.build([["b", "a", "b"], ["c", "a", "b", "d"], ["a"]], min_freq=2)
    assert vocab.tokens == ("<pad>", "<unk>", "a", "b")  # a and b 3 times, ties alphabetical; c, d once
    assert vocab.encode(["b", "c", "a", "a"], max_tokens=3).tolist() == [3, 1, 2]


def test_food101_token_ids_come_from_the_training_split_only(tmp_path: Path) -> None:
    truth = write_food101(tmp_path, sizes={"train": 30, "test": 6})
    ds = read_food101(tmp_path, text="ids", min_freq=1, max_tokens=4, image=ImagePipeline(size=2))
    vocab = ds.info["vocabulary"]
    kept = set(ds.train.ids)
    expected = Vocabulary.build((e["text_tokens"] for e in truth.entries["train"] if e["id"] in kept), 1)
    assert vocab == expected and ds.feature_dims["text"] == len(vocab) and ds.seq_lens["text"] == 4
    # A word that only a held-out (validation) entry uses stays out of the vocabulary.
    held_out = ds.valid.ids[0]
    for e in truth.entries["train"]:
        if e["id"] == held_out:
            e["text_tokens"] = ["only_in_valid", *e["text_tokens"]]
    (tmp_path / "train.json").write_text(json.dumps(truth.entries["train"]))
    ds2 = read_food101(tmp_path, text="ids", min_freq=1, max_tokens=4, image=ImagePipeline(size=2))
    assert ds2.valid.ids[0] == held_out and "only_in_valid" not in ds2.info["vocabulary"].tokens
    assert ds2.valid[0][0]["text"][0] == Vocabulary.UNK
    e = next(e for e in truth.entries["test"] if len(e["text_tokens"]) > 4)
    xs, _ = ds.test[[x["id"] for x in truth.entries["test"]].index(e["id"])]
    assert xs["text"].tolist() == [vocab.tokens.index(t) if t in vocab.tokens else 1 for t in e["text_tokens"][:4]]


def test_food101_precomputed_features_are_matched_by_id(tmp_path: Path) -> None:
    truth = write_food101(tmp_path, features={"image": (7,), "text": (3, 5)})
    ds = read_food101(tmp_path, features="features", validate_on_test=True)
    assert ds.sample_shapes == {"image": (7,), "text": (3, 5)} and ds.feature_dims == {"image": 7, "text": 5}
    assert ds.seq_lens == {"text": 3} and ds.info["precomputed"] == ["image", "text"]
    for split, json_split in (("train", "train"), ("test", "test")):
        rows = truth.feature_ids[json_split]
        for i, e in enumerate(truth.entries[json_split]):
            xs, _ = ds.splits[split][i]
            r = rows.index(e["id"])  # the feature files hold the rows in reverse order
            np.testing.assert_array_equal(xs["image"], truth.features[json_split]["image"][r])
            np.testing.assert_array_equal(xs["text"], truth.features[json_split]["text"][r])


def test_food101_image_features_with_raw_text(tmp_path: Path) -> None:
    truth = write_food101(tmp_path, features={"image": (4,)})
    ds = read_food101(tmp_path, features=tmp_path / "features")
    xs, _ = ds.test[0]
    assert xs["image"].shape == (4,) and xs["text"].tolist() == truth.entries["test"][0]["text_tokens"]


@pytest.mark.parametrize(
    ("fault", "file", "message"),
    [
        ("missing_file", "test.json", "no such file; expected the UPMC-Food-101 folder"),
        ("truncated", "train.json", "truncated or not a JSON file"),
        ("bad_label", "test.json", "entry 2 \\(id 'test_2'\\): label 'not_a_dish' is not one of the 101 class names"),
        ("missing_image", "images/train/sushi/train_5.jpg", r"no such image file \(entry 5 of train.json\)"),
        ("duplicate_id", "train.json", "entry 3: id 'train_1' appears twice"),
        ("path_escape", "train.json", "entry 0 \\(id 'train_0'\\): dataset path '../outside.png' leaves the data root"),
    ],
)
def test_food101_bad_layouts_name_the_file(tmp_path: Path, fault: str, file: str, message: str) -> None:
    write_food101(tmp_path, fault=fault)
    with pytest.raises(DataFormatError, match=message) as err:
        read_food101(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / file}: ")


@pytest.mark.parametrize(
    ("fault", "file", "message"),
    [
        ("missing_modality", "features/test_text.npy", "missing, but train_text.npy exists"),
        ("shape_mismatch", "features/test_image.npy", r"rows are \(8,\) but train_image.npy's are \(7,\)"),
        ("missing_feature_row", "features/test_ids.npy", "has no row for id 'test_0' of test.json"),
    ],
)
def test_food101_bad_feature_files_name_the_file(tmp_path: Path, fault: str, file: str, message: str) -> None:
    write_food101(tmp_path, features={"image": (7,), "text": (2,)}, fault=fault)
    with pytest.raises(DataFormatError, match=message) as err:
        read_food101(tmp_path, features="features")
    assert str(err.value).startswith(f"{tmp_path / file}: ")


def test_food101_corrupt_image_is_named_when_read(tmp_path: Path) -> None:
    truth = write_food101(tmp_path, fault="corrupt_image")
    ds = read_food101(tmp_path)
    with pytest.raises(DataFormatError, match="truncated or not an image file") as err:
        ds.test[0]
    assert err.value.path == str(tmp_path / truth.entries["test"][0]["img_path"])


def test_seeded_holdout_is_stratified_and_keeps_every_class() -> None:
    y = np.array([0] * 10 + [1] * 5 + [2] * 1)
    kept, held = seeded_holdout(y, 0.25, seed=0)
    assert len(held) == 4 and sorted(np.concatenate([kept, held]).tolist()) == list(range(16))
    # quotas 2.5, 1.25, 0.25 → floors 2, 1, 0; the one left goes to the largest remainder (class 0),
    # and class 2's only sample stays in training.
    assert np.bincount(y[held], minlength=3).tolist() == [3, 1, 0]
    assert seeded_holdout(y, 0.25, seed=0)[1].tolist() == held.tolist()


# ---------------------------------------------------------------- BraTS


def test_centre_box_rounds_like_the_official_crop() -> None:
    assert centre_box(240, 240, (160, 160)) == (40, 200, 40, 200)
    assert centre_box(11, 10, (8, 6)) == (2, 10, 2, 8)  # round(1.5) = 2
    assert centre_box(13, 10, (8, 6)) == (2, 10, 2, 8)  # round(2.5) = 2: Python rounds half to even


def _expected_slice(truth_image: np.ndarray, truth_label: np.ndarray, z: int) -> tuple[np.ndarray, np.ndarray]:
    # (12, 10) slices cropped to (8, 6): rows 2..9, columns 2..7
    label = truth_label[2:10, 2:8, z].astype(np.int64)
    label[label == 4] = 3
    return truth_image[:, 2:10, 2:8, z], label


def test_brats_h5_evaluation_covers_every_slice_exactly(tmp_path: Path) -> None:
    truth = write_brats_h5(tmp_path)
    ds = read_brats(tmp_path, crop=(8, 6))
    assert (ds.task, ds.num_classes, ds.modalities) == ("segmentation", 4, ("flair", "t1ce", "t1", "t2"))
    assert ds.sample_shapes == dict.fromkeys(ds.modalities, (1, 8, 6)) and ds.info["layout"] == "h5"
    valid = ds.valid
    assert valid.case_ids == tuple(truth.splits["valid"])
    assert len(valid) == 2 * 6 and valid.slice_case.tolist() == [0] * 6 + [1] * 6
    for i in range(len(valid)):
        case = truth.splits["valid"][i // 6]
        xs, label = valid[i]
        image, expected = _expected_slice(truth.images[case], truth.labels[case], i % 6)
        for c, m in enumerate(ds.modalities):
            np.testing.assert_array_equal(xs[m], image[c : c + 1])
        np.testing.assert_array_equal(label, expected)
        assert label.dtype == np.int64 and 4 not in label
    assert set(np.unique(valid[truth.tumour[truth.splits["valid"][0]][0]][1])) == {0, 1, 2, 3}


def test_brats_training_draws_seeded_tumour_slices(tmp_path: Path) -> None:
    truth = write_brats_h5(tmp_path)
    ds = read_brats(tmp_path, crop=(8, 6), seed=5)
    train = ds.train
    assert len(train) == 3
    drawn: dict[int, set[int]] = {0: set(), 1: set(), 2: set()}
    for epoch in range(30):
        train.set_epoch(epoch)
        for i in range(3):
            case, z, _ = train.slice_for(i)
            drawn[case].add(z)
            assert z in truth.tumour[truth.splits["train"][case]]
    # Each case's two tumour slices are both drawn over the epochs, and nothing else is.
    assert {c: sorted(zs) for c, zs in drawn.items()} == {c: truth.tumour[truth.splits["train"][c]] for c in range(3)}
    train.set_epoch(7)
    xs, label = train[1]
    _, z, _ = train.slice_for(1)
    case = truth.splits["train"][1]
    image, expected = _expected_slice(truth.images[case], truth.labels[case], z)
    np.testing.assert_array_equal(xs["t1"], image[2:3])
    np.testing.assert_array_equal(label, expected)
    again = read_brats(tmp_path, crop=(8, 6), seed=5).train
    again.set_epoch(7)
    assert again.slice_for(1)[1] == z


def test_brats_more_slices_per_case(tmp_path: Path) -> None:
    write_brats_h5(tmp_path)
    train = read_brats(tmp_path, crop=(8, 6), slices_per_case=4).train
    assert len(train) == 12 and [train.case_of(i) for i in range(12)] == [0] * 4 + [1] * 4 + [2] * 4


def test_official_augment_rotates_and_flips_image_and_label_together() -> None:
    label = np.arange(16, dtype=np.int64).reshape(4, 4)
    image = np.stack([label.astype(np.float32) * (c + 1) for c in range(4)])
    views = {np.rot90(label, k).tobytes() for k in range(3)} | {
        np.flip(np.rot90(label, k), ax).tobytes() for k in range(3) for ax in (0, 1)
    }
    for seed in range(40):
        rng = np.random.default_rng(seed)
        aug_image, aug_label = official_augment(image, label, rng)
        assert aug_label.tobytes() in views
        assert aug_image.shape == (4, 4, 4) and aug_image.dtype == np.float32
        # Channels move with the label; noise (p = 0.1, σ ≤ 0.1) moves them by less than 0.5.
        for c in range(4):
            assert np.abs(aug_image[c] - aug_label * (c + 1)).max() < 0.5


def test_brats_evaluation_modes(tmp_path: Path) -> None:
    truth = write_brats_h5(tmp_path)
    tumour = read_brats(tmp_path, crop=(8, 6), eval_slices="tumour").test
    cases = truth.splits["test"]
    assert tumour.slice_z.tolist() == truth.tumour[cases[0]] + truth.tumour[cases[1]]
    official = read_brats(tmp_path, crop=(8, 6), eval_slices="official", seed=1).test
    assert len(official) == 2
    zs = [official.z_of(i) for i in range(2)]
    assert all(z in truth.tumour[c] for z, c in zip(zs, cases, strict=True))
    assert [official.z_of(i) for i in range(2)] == zs


def test_brats_sources_pickle(tmp_path: Path) -> None:
    write_brats_h5(tmp_path)
    ds = read_brats(tmp_path, crop=(8, 6))
    ds.train[0]
    clone = pickle.loads(pickle.dumps(ds.train))
    np.testing.assert_array_equal(clone[0][1], ds.train[0][1])


@pytest.mark.parametrize(
    ("fault", "file", "message"),
    [
        ("missing_split", "test", "no such folder; expected the official BraTS h5 layout"),
        ("truncated", "valid/case_003.h5", "truncated or not an HDF5 file"),
        ("missing_modality", "valid/case_003.h5", r"image has shape \(3, 12, 10, 6\), expected \(4, H, W, D\)"),
        ("shape_mismatch", "test/case_005.h5", r"label has shape \(12, 9, 6\) but image is \(4, 12, 10, 6\)"),
    ],
)
def test_brats_h5_bad_layouts_name_the_file(tmp_path: Path, fault: str, file: str, message: str) -> None:
    write_brats_h5(tmp_path, fault=fault)
    with pytest.raises(DataFormatError, match=message) as err:
        read_brats(tmp_path, crop=(8, 6), layout="h5")
    assert str(err.value).startswith(f"{tmp_path / file}: ")


def test_brats_bad_labels_and_tumourless_cases_are_named_when_read(tmp_path: Path) -> None:
    write_brats_h5(tmp_path / "a", fault="bad_label")
    valid = read_brats(tmp_path / "a", crop=(8, 6)).valid
    with pytest.raises(DataFormatError, match=r"label holds value\(s\) \[5\]") as err:
        for i in range(len(valid)):
            valid[i]
    assert err.value.path == str(tmp_path / "a" / "valid" / "case_003.h5")
    write_brats_h5(tmp_path / "b", fault="no_tumour")
    train = read_brats(tmp_path / "b", crop=(8, 6)).train
    with pytest.raises(DataFormatError, match="no tumour in any slice") as err:
        train[1]
    assert err.value.path == str(tmp_path / "b" / "train" / "case_001.h5")


def test_brats_crop_larger_than_the_slices_is_named(tmp_path: Path) -> None:
    write_brats_h5(tmp_path)
    with pytest.raises(DataFormatError, match="slices are 12 × 10, smaller than the crop 160 × 160") as err:
        read_brats(tmp_path)
    assert err.value.path == str(tmp_path / "train" / "case_000.h5")


def test_brats_nifti_cases_are_split_by_seed_and_read_exactly(tmp_path: Path) -> None:
    truth = write_brats_nifti(tmp_path)
    ds = read_brats(tmp_path, crop=(8, 6), normalize=False, seed=2)
    assert ds.info["layout"] == "nifti"
    split = ds.info["cases"]
    assert (len(split["train"]), len(split["valid"]), len(split["test"])) == (3, 1, 1)
    assert sorted(split["train"] + split["valid"] + split["test"]) == truth.splits["all"]
    assert read_brats(tmp_path, crop=(8, 6), seed=2).info["cases"] == split
    assert any(read_brats(tmp_path, crop=(8, 6), seed=s).info["cases"] != split for s in range(3, 8))
    case = split["valid"][0]
    for z in range(6):
        xs, label = ds.valid[z]
        image, expected = _expected_slice(truth.images[case], truth.labels[case], z)
        np.testing.assert_array_equal(np.concatenate([xs[m] for m in ds.modalities]), image)
        np.testing.assert_array_equal(label, expected)


def test_brats_nifti_z_scores_the_brain_and_caches_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = write_brats_nifti(tmp_path, split_dirs=True)
    decoded: list[str] = []
    real_decode = NiftiCase.decode

    def counting(self: NiftiCase) -> tuple[np.ndarray, np.ndarray]:
        decoded.append(self.case_id)
        return real_decode(self)

    monkeypatch.setattr(NiftiCase, "decode", counting)
    ds = read_brats(tmp_path, crop=(8, 6))
    assert ds.info["cases"] == {
        "train": truth.splits["train"],
        "valid": truth.splits["valid"],
        "test": truth.splits["test"],
    }
    case = truth.splits["test"][0]
    vol = truth.images[case][1]  # t1ce, (12, 10, 6)
    brain = vol != 0
    z_scored = np.where(brain, (vol - vol[brain].mean()) / vol[brain].std(), 0.0)
    for z in range(6):
        xs, _ = ds.test[z]
        np.testing.assert_allclose(xs["t1ce"][0], z_scored[2:10, 2:8, z], rtol=1e-5, atol=1e-6)
    assert decoded == [case]  # six slices, one decode


@pytest.mark.parametrize(
    ("fault", "file", "message"),
    [
        ("missing_file", "BraTS2021_00004/BraTS2021_00004_t1ce.nii.gz", "no such file; expected the BraTS 2021 layout"),
        (
            "shape_mismatch",
            "BraTS2021_00004/BraTS2021_00004_t2.nii.gz",
            r"has shape \(12, 10, 5\), which disagrees with its mask BraTS2021_00004_seg.nii.gz \(12, 10, 6\)",
        ),
    ],
)
def test_brats_nifti_bad_layouts_name_the_file(tmp_path: Path, fault: str, file: str, message: str) -> None:
    write_brats_nifti(tmp_path, fault=fault)
    with pytest.raises(DataFormatError, match=message) as err:
        read_brats(tmp_path, crop=(8, 6))
    assert str(err.value).startswith(f"{tmp_path / file}: ")


@pytest.mark.parametrize(
    ("fault", "file", "message"),
    [
        ("truncated", "BraTS2021_00004_flair.nii.gz", "truncated or not a NIfTI file"),
        ("bad_label", "BraTS2021_00004_seg.nii.gz", r"label holds value\(s\) \[7\]"),
    ],
)
def test_brats_nifti_bad_contents_are_named_when_read(tmp_path: Path, fault: str, file: str, message: str) -> None:
    write_brats_nifti(tmp_path, fault=fault, split_dirs=True)  # the faulty last case is the test case
    ds = read_brats(tmp_path, crop=(8, 6))
    with pytest.raises(DataFormatError, match=message) as err:
        ds.test[0]
    assert err.value.path == str(tmp_path / "test" / "BraTS2021_00004" / file)


# ---------------------------------------------------------------- no torch, no format library at import


def test_the_readers_import_without_torch_or_format_libraries() -> None:
    code = (
        "import sys\n"
        "from cggm_core.data.files import check_relative_path, read_mosi, read_brats\n"
        "check_relative_path('mosi/mosi.pkl')\n"
        "print(sorted(m for m in ('torch', 'h5py', 'nibabel', 'PIL') if m in sys.modules))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ}
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
