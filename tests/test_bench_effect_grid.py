"""bench/effect_grid.py: the paired 95 % t interval, the pairing of each official run with `joint`
under the same recipe, and a resumable run end to end on a tiny synthetic task (real training)."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_grid() -> ModuleType:
    sys.path.insert(0, str(BENCH))  # effect_grid imports bench/effect.py by name
    spec = importlib.util.spec_from_file_location("bench_effect_grid", BENCH / "effect_grid.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_mean_ci_is_the_student_t_half_width() -> None:
    g = load_grid()
    values = [0.01, -0.02, 0.03, 0.00, 0.02]
    mean, half = g.mean_ci(values)
    # t(0.975, 4 df) = 2.776; stdev by hand: deviations from 0.008 → sum of squares 0.00148
    assert math.isclose(mean, 0.008)
    assert math.isclose(half, 2.776 * math.sqrt(0.00148 / 4) / math.sqrt(5), rel_tol=1e-9)
    assert math.isclose(half, 2.776 * statistics.stdev(values) / math.sqrt(5))
    m, h, n = g.paired({0: {"x": 1.0}, 1: {"x": 2.0}, 2: {"x": 4.0}}, {0: {"x": 0.5}, 1: {"x": 2.0}}, lambda r: r["x"])
    assert (m, n) == (0.25, 2)  # only the seeds both sides have
    assert math.isclose(h, 12.706 * statistics.stdev([0.5, 0.0]) / math.sqrt(2))


def test_official_runs_are_paired_with_joint_under_their_own_recipe() -> None:
    from cggm_core.presets import PRESETS, official_preset

    g = load_grid()
    runs = g.plan(list(g.METHODS), "official")
    labels = [label for label, _, _ in runs]
    assert "mslr" not in labels  # no official recipe
    assert len(labels) == len(set(labels))
    for label, method, preset in runs:
        if method == "joint":
            continue
        assert preset == official_preset(g.METHODS[method]["method"])
        joint = "joint@" + g.recipe_group(preset)
        assert joint in labels and labels.index(joint) < labels.index(label)
        assert dict(PRESETS[preset].trainer) == dict(PRESETS[g.recipe_group(preset)].trainer)
    assert "joint@agm-official" in labels and "joint@mmpareto-official" in labels  # different lrs
    # the whole recipe, epochs included; the task's data settings stay
    from cggm_core.config import resolve

    job = resolve(g.job_of("synthetic M=2 mild", "ogm_ge", "ogm_ge-official", 0))
    assert job.trainer.epochs == PRESETS["ogm_ge-official"].trainer["epochs"] == 100
    assert job.trainer.optimizer == "sgd" and job.trainer.clip == 0.0
    assert job.data["train_size"] == g.TASKS["synthetic M=2 mild"]["train_size"]


def test_grid_runs_resumes_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = load_grid()
    tiny = {**g.TASKS["synthetic M=2 mild"], "epochs": 1, "train_size": 64, "val_size": 16, "test_size": 32}
    monkeypatch.setitem(g.TASKS, "tiny", tiny)
    args = type(
        "A",
        (),
        {"out": str(tmp_path), "seeds": "0,1", "tasks": "tiny", "methods": "joint,cggm stable", "optimizers": "adam"},
    )
    g.run_grid(args)
    data = json.loads((tmp_path / "tiny.json").read_text())
    assert sorted(data) == sorted(f"tiny | adam | {m} | {s}" for m in ("joint", "cggm stable") for s in (0, 1))
    data["tiny | adam | joint | 0"]["test"] = -1.0  # a marker: a rerun must skip, not recompute
    (tmp_path / "tiny.json").write_text(json.dumps(data))
    g.run_grid(args)
    assert json.loads((tmp_path / "tiny.json").read_text())["tiny | adam | joint | 0"]["test"] == -1.0
    text = g.report(g.load_all(tmp_path), tmp_path / "figs")
    assert "| cggm stable | adam | 2 |" in text
    assert (tmp_path / "figs" / "effect_tiny.svg").read_text().startswith("<svg")
