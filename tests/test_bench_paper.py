"""bench/paper/run.py: refuses clearly without the files, formats the paper's table, and runs end to
end on a tiny MulT pickle (the `mosi` stand-in of tests/standins.py reads it with the real reader)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .fakedata.mosi import write_mosi
from .standins import register

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "paper" / "run.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_paper_run", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_script(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"CGGM_DATA_DIR": str(root), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize(
    ("args", "setup", "message"),
    [
        (["--dataset", "mosi", "--path", "mosi/mosi.pkl"], None, "no CMU-MOSI file at {root}/mosi/mosi.pkl"),
        (["--dataset", "mosi", "--path", "mosi"], "mosi", "no CMU-MOSI file at {root}/mosi"),  # a folder
        (["--dataset", "iemocap", "--path", "iemo"], None, "no IEMOCAP folder at {root}/iemo"),
        (
            ["--dataset", "iemocap", "--path", "iemo"],
            "iemo/A",
            "{root}/iemo has no A/comparE.h5, A/comparE_mean_std.h5",
        ),
        (["--dataset", "food101", "--path", "food"], "food/train.json", "{root}/food has no test.json"),
        (["--dataset", "brats", "--path", "brats"], None, "no BraTS 2021 folder at {root}/brats"),
        (["--dataset", "brats", "--path", "../brats"], None, "dataset path '../brats' leaves the data root"),
        (["--dataset", "mosei", "--path", "mosei.pkl"], None, "the paper reports no CMU-MOSEI result"),
        (["--dataset", "mfeat", "--path", "x"], None, "the paper's data sets are mosi, iemocap, food101, brats"),
    ],
)
def test_refuses_with_one_line_naming_what_it_looked_for(
    tmp_path: Path, args: list[str], setup: str | None, message: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    if setup is not None:
        target = root / setup
        if target.suffix:
            target.parent.mkdir(parents=True)
            target.write_text("[]")
        else:
            target.mkdir(parents=True)
    r = run_script(root, *args, "--out", str(tmp_path / "out"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench/paper: "), r.stderr
    assert message.format(root=root) in lines[0]
    if "file at" in message or "folder at" in message:
        assert "expected the " in lines[0]  # the layout it wants
    assert not (tmp_path / "out").exists()


def test_the_table_by_hand() -> None:
    bench = load_bench()
    mosi = bench.TARGETS["mosi"]

    def run(mae: float, best: float) -> dict[str, dict[str, float]]:
        return {"test": {"test/mae": mae}, "best": {"val/mae": best}}

    result = bench.summarize(
        mosi, {"joint": [run(0.80, 0.70), run(0.84, 0.72), run(0.82, 0.74)], "cggm": [run(0.75, 0.7), run(0.77, 0.7)]}
    )
    cggm = result["methods"]["cggm"]["mae"]
    assert cggm["test"] == [0.75, 0.77] and cggm["test_mean"] == pytest.approx(0.76)
    assert cggm["test_std"] == pytest.approx(0.0141421356)  # sample std: 0.01·√2
    assert bench.format_table(mosi, result).splitlines() == [
        "CMU-MOSI: final model on the test split, mean ± std over 2/3 seeds (lower is better); paper = CGGM in the paper",
        "",
        "| method | test MAE | best val MAE | paper MAE |",
        "|---|---|---|---|",
        "| joint | 0.820 ± 0.020 | 0.720 ± 0.020 | — |",
        "| cggm | 0.760 ± 0.014 | 0.700 ± 0.000 | 0.747 |",
    ]
    brats = bench.TARGETS["brats"]
    one = {
        "test": {"test/dice/wt": 0.7701, "test/dice/tc": 0.7, "test/dice/et": 0.6},
        "best": {"val/dice/wt": 0.8, "val/dice/tc": 0.75, "val/dice/et": 0.65},
    }
    table = bench.format_table(brats, bench.summarize(brats, {"cggm": [one]}))
    assert table.splitlines()[2] == (
        "| method | test Dice WT % | best val Dice WT % | paper Dice WT % | test Dice TC % | best val Dice TC % "
        "| paper Dice TC % | test Dice ET % | best val Dice ET % | paper Dice ET % |"
    )
    assert table.splitlines()[4] == "| cggm | 77.01 | 80.00 | 76.94 | 70.00 | 75.00 | 72.75 | 60.00 | 65.00 | 72.14 |"


@pytest.mark.slow
def test_runs_joint_and_cggm_over_seeds_on_tiny_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register(monkeypatch, "mosi")
    root = tmp_path / "root"
    root.mkdir()
    write_mosi(root / "tiny.pkl")
    monkeypatch.setenv("CGGM_DATA_DIR", str(root))
    bench = load_bench()
    out = tmp_path / "out"
    argv = ["--dataset", "mosi", "--path", "tiny.pkl", "--seeds", "0,1", "--epochs", "2", "--device", "cpu"]
    argv += ["--set", "batch_size=4", "--set", "probe_steps=5", "--out", str(out), "--no-progress"]
    assert bench.main(argv) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert lines[2] == "| method | test MAE | best val MAE | paper MAE |"
    assert lines[4].startswith("| joint | ") and lines[5].startswith("| cggm | ") and lines[5].endswith(" | 0.747 |")
    result = json.loads((out / "mosi" / "results.json").read_text())
    for method in ("joint", "cggm"):
        row = result["methods"][method]
        assert row["seeds"] == 2 and len(row["mae"]["test"]) == 2
        for seed in (0, 1):
            run_dir = out / "mosi" / f"{method}-seed{seed}"
            config = json.loads((run_dir / "config.json").read_text())
            assert (config["preset"], config["seed"], config["epochs"], config["scheduler"]) == (
                "mosi",
                seed,
                2,
                "plateau",
            )
            summary = json.loads((run_dir / "summary.json").read_text())
            assert summary["test"]["test/mae"] in row["mae"]["test"]
    assert (out / "mosi" / "results.md").read_text().strip() == printed.out.strip()
    # The seeds differ (the table's std is over real repeats), and a second call keeps the finished runs.
    assert result["methods"]["cggm"]["mae"]["test"][0] != result["methods"]["cggm"]["mae"]["test"][1]
    stamp = (out / "mosi" / "cggm-seed1" / "summary.json").stat().st_mtime_ns
    assert bench.main(argv) == 0
    assert capsys.readouterr().err.count("kept ") == 4
    assert (out / "mosi" / "cggm-seed1" / "summary.json").stat().st_mtime_ns == stamp
