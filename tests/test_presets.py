"""Presets: the official recipes fill the job (DESIGN §4.1), explicit settings win, wrong pairings
are refused, and the resolved config needs no preset table to be reproduced.

The paper's loaders live on another branch: the data sets here are the stand-ins of
tests/standins.py, registered under the real names (`mosi` reads a real MulT pickle).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from cggm_core import cli, presets
from cggm_core.config import catalog, format_catalog, resolve
from cggm_core.settings import SettingError
from cggm_core.tracking import read_jsonl

from .fakedata.mosi import write_mosi
from .standins import register

# Transcribed from DESIGN §4.1 and the official run scripts, independently of cggm_core/presets.py.
OFFICIAL_TRAINER: dict[str, dict[str, Any]] = {
    "mosi": {
        "optimizer": "adam",
        "lr": 1e-3,
        "aux_lr_ratio": 0.5,
        "weight_decay": 0.0,
        "aux_optimizer": "same",
        "aux_weight_decay": 0.0,
        "batch_size": 64,
        "epochs": 30,
        "clip": 0.8,
        "scheduler": "plateau",
        "plateau_patience": 10,
        "plateau_factor": 0.1,
    },
    "iemocap": {
        "optimizer": "adam",
        "lr": 1e-3,
        "aux_lr_ratio": 0.5,
        "weight_decay": 0.0,
        "aux_weight_decay": 0.0,
        "batch_size": 64,
        "epochs": 30,
        "clip": 0.8,
        "scheduler": "plateau",
        "plateau_patience": 10,
        "plateau_factor": 0.1,
    },
    "food101": {
        "optimizer": "adamw",
        "lr": 1e-3,
        "aux_lr_ratio": 0.5,
        "weight_decay": 6e-3,
        "aux_weight_decay": 3e-3,
        "batch_size": 128,
        "epochs": 60,
        "clip": 0.8,
        "scheduler": "plateau",
        "plateau_patience": 10,
        "plateau_factor": 0.1,
    },
    "brats": {
        "optimizer": "sgd",
        "momentum": 0.9,
        "lr": 1e-2,
        "aux_lr_ratio": 0.6,  # aux SGD at 6e-3
        "weight_decay": 3e-4,
        "aux_weight_decay": 3e-4,
        "batch_size": 64,
        "epochs": 75,
        "clip": 0.0,
        "scheduler": "warmup_cosine",
        "warmup_epochs": 10,
        "warmup_start_lr": 4e-4,
        "final_lr": 1e-3,
    },
}
OFFICIAL_CGGM = {"mosi": (1.3, 0.2), "iemocap": (1.3, 0.2), "food101": (1.3, 0.05), "brats": (1.0, 0.1)}
OFFICIAL_TRANSFORMER = {
    # enc/fusion/aux layers, dropouts attn/relu/embed/res/out
    "mosi": ((5, 3, 2), (0.15, 0.15, 0.2, 0.1, 0.1)),
    "iemocap": ((4, 2, 2), (0.15, 0.15, 0.2, 0.15, 0.2)),
    "food101": ((4, 2, 2), (0.2, 0.15, 0.2, 0.15, 0.1)),
}


@pytest.fixture(autouse=True)
def _standins(monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch)


@pytest.mark.parametrize("dataset", ["mosi", "iemocap", "food101", "brats"])
def test_preset_fills_the_official_values(dataset: str) -> None:
    job = resolve({"dataset": dataset, "method": "cggm", "preset": dataset, "path": "x"})
    trainer = asdict(job.trainer)
    assert {k: trainer[k] for k in OFFICIAL_TRAINER[dataset]} == OFFICIAL_TRAINER[dataset]
    assert (job.method_settings["rho"], job.method_settings["lam"]) == OFFICIAL_CGGM[dataset]
    assert job.preset == dataset
    if dataset in OFFICIAL_TRANSFORMER:
        layers, dropouts = OFFICIAL_TRANSFORMER[dataset]
        m = job.model_settings
        assert job.model == "transformer" and (m["d_model"], m["heads"]) == (40, 5)
        assert (m["enc_layers"], m["fusion_layers"], m["aux_layers"]) == layers
        names = ("attn_dropout", "relu_dropout", "embed_dropout", "res_dropout", "out_dropout")
        assert tuple(m[n] for n in names) == dropouts
    else:  # BraTS: the official DeepLabv3+/ResNet-101 is not our segnet; its sizes stay the defaults
        assert job.model == "segnet"
        assert job.model_settings == resolve({"dataset": dataset, "method": "cggm", "path": "x"}).model_settings


def test_without_a_preset_the_defaults_stay() -> None:
    job = resolve({"dataset": "mosi", "method": "cggm", "path": "x"})
    assert job.preset is None and "preset" not in job.flat()
    assert (job.trainer.scheduler, job.trainer.epochs, job.trainer.batch_size) == ("none", 10, 64)


def test_explicit_settings_win_over_the_preset() -> None:
    job = resolve(
        {
            "dataset": "food101",
            "method": "cggm",
            "preset": "food101",
            "path": "x",
            "lr": 0.01,
            "epochs": "3",  # as `--set epochs=3` gives it
            "scheduler": "none",
            "lam": 0.3,
            "enc_layers": 2,
        }
    )
    t = job.trainer
    assert (t.lr, t.epochs, t.scheduler) == (0.01, 3, "none")
    assert job.method_settings["lam"] == 0.3 and job.method_settings["rho"] == 1.3  # ρ still the preset's
    assert job.model_settings["enc_layers"] == 2 and job.model_settings["fusion_layers"] == 2
    assert (t.optimizer, t.weight_decay, t.batch_size) == ("adamw", 6e-3, 128)  # untouched preset values


def test_a_method_without_official_values_takes_the_trainer_recipe() -> None:
    job = resolve({"dataset": "mosi", "method": "joint", "preset": "mosi", "path": "x"})
    assert "rho" not in job.method_settings
    assert (job.trainer.scheduler, job.trainer.epochs, job.model_settings["enc_layers"]) == ("plateau", 30, 5)


def test_a_model_the_preset_has_no_values_for_keeps_its_own() -> None:
    """A user's own model on a preset's data set: the trainer recipe applies, the model's sizes stay."""
    job = resolve({"dataset": "brats", "method": "cggm", "preset": "brats", "path": "x", "segnet_width": 8})
    assert job.model_settings["segnet_width"] == 8 and job.trainer.optimizer == "sgd"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"dataset": "synthetic", "preset": "mosi"},
            "preset 'mosi' is the official recipe for dataset mosi, not 'synthetic'",
        ),
        ({"dataset": "iemocap", "preset": "mosi"}, "not 'iemocap'; the preset for 'iemocap' is 'iemocap'"),
        ({"dataset": "mosi", "preset": "mosei"}, "unknown preset 'mosei'; allowed: mosi, iemocap, food101, brats"),
        ({"dataset": "mosi", "preset": 3}, "'preset' must be a name (a string), got int"),
        ({"dataset": "synthetic", "preset": "official"}, "dataset 'synthetic' has no data-set preset"),
    ],
)
def test_refused_combinations_name_what_is_allowed(config: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingError) as e:
        resolve({"method": "cggm", "path": "x", **config})
    assert message in str(e.value)


def test_the_resolved_config_is_reproducible_without_the_preset_table(monkeypatch: pytest.MonkeyPatch) -> None:
    job = resolve({"dataset": "mosi", "method": "cggm", "preset": "mosi", "path": "x", "seed": 4})
    flat = job.flat()
    assert flat["preset"] == "mosi" and flat["scheduler"] == "plateau" and flat["enc_layers"] == 5
    assert resolve(flat) == job
    # The table changes later (or differs on another worker): the stored config still gives the same job.
    changed = replace(presets.PRESETS["mosi"], trainer={**presets.PRESETS["mosi"].trainer, "epochs": 2, "lr": 0.5})
    monkeypatch.setitem(presets.PRESETS, "mosi", changed)
    assert resolve(flat) == job
    assert resolve({"dataset": "mosi", "method": "cggm", "preset": "mosi", "path": "x"}).trainer.epochs == 2


def test_catalog_serves_the_presets() -> None:
    entries = {p["name"]: p for p in catalog()["presets"]}
    assert list(entries)[:4] == ["mosi", "iemocap", "food101", "brats"]  # then the methods' (test_method_presets)
    mosi = entries["mosi"]
    assert mosi["datasets"] == ["mosi"]
    assert mosi["trainer"]["scheduler"] == "plateau" and mosi["methods"] == {"cggm": {"rho": 1.3, "lam": 0.2}}
    assert mosi["models"]["transformer"]["enc_layers"] == 5
    assert entries["brats"]["models"] == {} and entries["brats"]["trainer"]["clip"] == 0.0
    json.dumps(catalog(), allow_nan=False)  # JSON-ready
    assert "presets (--preset NAME" in format_catalog() and "  brats: for brats:" in format_catalog()


def test_every_preset_value_is_checked_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    from cggm_core import config

    config._check_presets()  # the shipped table passes
    mosi = presets.PRESETS["mosi"]
    for broken, message in (
        (replace(mosi, models={"transformer": {"d_modle": 40}}), "model transformer has no setting 'd_modle'"),
        (replace(mosi, trainer={"scheduler": "cosine"}), "setting 'scheduler': 'cosine' is not allowed"),
        (replace(mosi, trainer={"epochs": 2.5}), "setting 'epochs': 2.5 is not an integer"),
        (replace(mosi, methods={"cggn": {"rho": 1.0}}), "sets values for unknown method 'cggn'"),
    ):
        monkeypatch.setitem(presets.PRESETS, "mosi", broken)
        with pytest.raises(RuntimeError, match="preset 'mosi'") as e:
            config._check_presets()
        assert message in str(e.value)


@pytest.mark.slow
def test_cggm_train_with_a_preset_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cggm train --preset mosi` on a tiny MulT pickle: the official recipe, shortened by flags."""
    root = tmp_path / "root"
    (root / "mosi").mkdir(parents=True)
    write_mosi(root / "mosi" / "tiny.pkl")
    monkeypatch.setenv("CGGM_DATA_DIR", str(root))
    out = tmp_path / "run"
    argv = ["train", "--dataset", "mosi", "--method", "cggm", "--preset", "mosi", "--set", "path=mosi/tiny.pkl"]
    argv += ["--epochs", "3", "--set", "batch_size=4", "--set", "plateau_patience=0", "--set", "probe_steps=5"]
    argv += ["--device", "cpu", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "finished: test mae" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "mosi" and config["epochs"] == 3 and config["batch_size"] == 4
    assert (config["scheduler"], config["lam"], config["enc_layers"], config["optimizer"]) == (
        "plateau",
        0.2,
        5,
        "adam",
    )
    points = read_jsonl(out / "metrics.jsonl")
    lrs = [p.value for p in points if p.key == "lr"]
    assert len(lrs) == 3 * 2 and lrs[0] == pytest.approx(1e-3)  # 6 train samples / 4: two steps an epoch


def test_cggm_train_refuses_a_preset_for_another_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["train", "--dataset", "synthetic", "--method", "cggm", "--preset", "brats", "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "preset 'brats' is the official recipe for dataset brats, not 'synthetic'" in err[0]
    assert not any(tmp_path.iterdir())
