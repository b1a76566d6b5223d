"""`cggm train` end to end: output files and keys, resume, argument errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cggm_core.tracking import read_jsonl
from cggm_core.trainer import train

CGGM = str(Path(sys.executable).with_name("cggm"))
SMALL = ["--set", "train_size=256", "--set", "val_size=64", "--set", "test_size=64", "--set", "probe_steps=20"]
PER_STEP = ["acc/{m}", "grad_norm/{m}", "grad_norm_mod/{m}", "update_norm/{m}", "coef/{m}", "cos/{m}"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CGGM, *args], capture_output=True, text=True, timeout=300)


def check_outputs(out: Path, modalities: list[str], method: str, steps: int) -> None:
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == method and config["log_every"] == 1
    points = read_jsonl(out / "metrics.jsonl")
    keys = {p.key for p in points}
    expected = {"train/loss", "train/acc", "imbalance/acc_gap", "imbalance/grad_ratio", "val/acc", "val/loss"}
    for m in modalities:
        expected |= {k.format(m=m) for k in PER_STEP}
        expected |= {f"val/acc/{m}", f"val/contrib/{m}", f"probe/acc/{m}"}
    if method == "cggm":
        expected.add("loss/gm")
    assert expected <= keys, expected - keys
    # --log-every 1: every step is logged for every per-step key.
    for m in modalities:
        assert sorted(p.step for p in points if p.key == f"coef/{m}") == list(range(1, steps + 1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_done"] == 2 and summary["steps"] == steps
    assert set(summary["probe"]) == {f"probe/acc/{m}" for m in modalities}
    assert 0.0 <= summary["test"]["test/acc"] <= 1.0
    assert summary["best"]["val/acc"] >= summary["final"]["val/acc"]
    assert (out / "checkpoint.pt").exists()


@pytest.mark.slow
def test_train_synthetic_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    r = run(
        "train",
        "--dataset",
        "synthetic",
        "--method",
        "cggm",
        "--epochs",
        "2",
        "--seed",
        "1",
        "--log-every",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        *SMALL,
    )
    assert r.returncode == 0, r.stderr
    assert "finished: test acc" in r.stdout
    assert "it/s" in r.stderr  # the tqdm progress bar
    check_outputs(out, ["m0", "m1"], "cggm", steps=2 * 4)
    r = run("train", "--resume", str(out / "checkpoint.pt"), "--epochs", "3", "--no-progress")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_done"] == 3 and summary["steps"] == 12
    steps = sorted({p.step for p in read_jsonl(out / "metrics.jsonl") if p.key == "coef/m0"})
    assert steps == list(range(1, 13))  # appended, nothing repeated


@pytest.mark.slow
def test_train_mfeat(tmp_path: Path) -> None:
    out = tmp_path / "mf"
    r = run(
        "train",
        "--dataset",
        "mfeat",
        "--method",
        "cggm",
        "--set",
        "views=fou,mor",
        "--set",
        "rho=1.0",
        "--epochs",
        "2",
        "--log-every",
        "1",
        "--out",
        str(out),
        "--set",
        "probe_steps=20",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    check_outputs(out, ["fou", "mor"], "cggm", steps=2 * 19)  # 1,200 train samples / 64


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    cfg = {
        "dataset": "synthetic",
        "method": "cggm",
        "train_size": 256,
        "val_size": 64,
        "test_size": 64,
        "probe_steps": 20,
        "log_every": 1,
        "seed": 3,
    }
    straight = train({**cfg, "epochs": 2}, out_dir=tmp_path / "a", device="cpu")
    train({**cfg, "epochs": 1}, out_dir=tmp_path / "b", device="cpu")
    resumed = train({**cfg, "epochs": 2}, out_dir=tmp_path / "b", device="cpu", resume=tmp_path / "b" / "checkpoint.pt")
    assert resumed.summary["test"] == straight.summary["test"]
    a = [
        (p.key, p.step, p.value)
        for p in read_jsonl(tmp_path / "a" / "metrics.jsonl")
        if not p.key.startswith(("probe", "test", "system/"))
    ]
    b = [
        (p.key, p.step, p.value)
        for p in read_jsonl(tmp_path / "b" / "metrics.jsonl")
        if not p.key.startswith(("probe", "test", "system/"))
    ]
    assert a == b


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope", "--method", "cggm"], "unknown dataset 'nope'; allowed: synthetic, mfeat"),
        (["--dataset", "synthetic", "--method", "nope"], "unknown method 'nope'; allowed: joint"),
        (["--dataset", "synthetic", "--method", "cggm", "--set", "rhoo=1"], "unknown setting 'rhoo'"),
        (["--dataset", "synthetic", "--method", "cggm", "--set", "rho=-1"], "setting 'rho': '-1' is out of bounds"),
        (["--dataset", "synthetic", "--method", "cggm", "--set", "variant=x"], "one of paper, reference, stable"),
        (["--dataset", "synthetic", "--method", "cggm", "--epochs", "0"], "setting 'epochs': 0 is out of bounds"),
        (["--dataset", "mfeat", "--method", "joint", "--set", "views=kar,abc"], "unknown view 'abc'"),
        (["--dataset", "synthetic", "--method", "unimodal", "--set", "modality=zz"], "allowed: m0, m1"),
        (["--dataset", "synthetic", "--method", "cggm", "--set", "lam"], "expected KEY=VALUE"),
        (["--method", "cggm"], "--dataset is required"),
        (["--dataset", "synthetic", "--method", "cggm", "--device", "cuda:0"], "--device"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    import torch

    if "cuda:0" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so cuda:0 is valid")
    r = run("train", *args, "--out", str(tmp_path / "x"), "--no-progress")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert message in lines[0]
    assert not (tmp_path / "x" / "metrics.jsonl").exists()


def test_list_prints_every_dataset_method_and_setting() -> None:
    r = run("train", "--list")
    assert r.returncode == 0
    for word in (
        "synthetic",
        "mfeat",
        "joint",
        "unimodal",
        "cggm",
        "rho",
        "lam",
        "variant",
        "views",
        "epochs",
        "an integer in [1, 100000]",
        "one of paper, reference, stable",
    ):
        assert word in r.stdout
