"""bench/gpu_check.py, the prepared device check, runs end to end on the CPU (`--cpu-smoke`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


@pytest.mark.slow
def test_cpu_smoke_runs_every_section(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu-smoke", "--json", str(out), "--work-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["errors"] == {} and doc["smoke"] is True
    for model in ("transformer", "segnet"):
        ratios = doc["ratios"][model]["ratio_to_joint"]
        assert ratios["joint"] == 1.0 and {"cggm[paper]", "ogm_ge", "mla", "bare (no aux heads)"} <= set(ratios)
        assert all(v > 0 for v in ratios.values())
        prec = doc["precision"][model]["ratios"]
        assert set(prec) == {f"{m} {p}/fp32" for m in ("joint", "cggm[paper]") for p in ("bf16", "fp16")}
    assert "CUDA only" in doc["memory"]["skipped"]
    ddp = doc["ddp"]  # runs with gloo when `cggm train --nproc-per-node` exists, else says why not
    assert "skipped" in ddp or (ddp["nproc=1"]["rc"] == 0 and ddp["nproc=2"]["rc"] == 0), ddp
    assert "| joint | " in r.stdout and "joint bf16/fp32:" in r.stdout
