"""The paper's data sets through a real `cggm serve` and a real `cggm worker` whose CGGM_DATA_DIR
holds tiny fake files: the path rules refuse a job at POST (422); a file the backend cannot see
(it has no data root) fails the run on the worker with one line naming the file as its reason —
never a hang, never a half-trained run reported as finished; a good file trains to the end."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..fakedata import write_brats_h5, write_mosi
from ..fakedata.roots import TINY_SEGNET, TINY_TRAINER, TINY_TRANSFORMER
from .conftest import REPO, ServerProcess, wait_until


def queue(api: httpx.Client, config: dict[str, Any]) -> int:
    r = api.post("/api/runs", json={"config": {"method": "cggm", **TINY_TRAINER, **config}})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


@pytest.mark.slow
def test_data_root_jobs_end_finished_or_failed_with_the_file_named(
    make_server: Callable[..., ServerProcess], workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    root = tmp_path / "datasets"
    (root / "cmu").mkdir(parents=True)
    write_mosi(root / "cmu" / "mosi_data.pkl")
    write_mosi(root / "cut.pkl", fault="truncated")
    write_brats_h5(root / "brats", fault="bad_label")  # a validation case holds label 5: met after the epoch
    server = make_server()  # its environment has no CGGM_DATA_DIR: it never looks at the files
    with server.client() as api:
        r = api.post("/api/runs", json={"config": {"dataset": "mosi", "method": "cggm", "path": str(root / "cut.pkl")}})
        assert r.status_code == 422 and "setting 'path'" in r.text and "is absolute" in r.text, r.text
        r = api.post("/api/runs", json={"config": {"dataset": "iemocap", "method": "cggm", "path": "../iemocap"}})
        assert r.status_code == 422 and "may not climb above it" in r.text, r.text

        good = queue(api, {"dataset": "mosi", "path": "cmu/mosi_data.pkl", **TINY_TRANSFORMER})
        missing = queue(api, {"dataset": "mosi", "path": "cmu/mosi_nothere.pkl", **TINY_TRANSFORMER})
        cut = queue(api, {"dataset": "mosi", "path": "cut.pkl", **TINY_TRANSFORMER})
        mid_run = queue(api, {"dataset": "brats", "path": "brats", "crop_size": 8, **TINY_SEGNET})

        env = {k: v for k, v in os.environ.items() if not k.startswith("CGGM_")}
        env["CGGM_DATA_DIR"] = str(root)
        cmd = [sys.executable, "-m", "cggm_core", "worker", "--server", server.url, "--device", "cpu"]
        cmd += ["--no-progress", "--heartbeat-s", "0.5", "--poll-s", "0.2", "--spool-dir", str(tmp_path / "spool")]
        log = tmp_path / "worker.log"
        workers.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT))

        def ended(run_id: int) -> dict[str, Any] | None:
            run: dict[str, Any] = api.get(f"/api/runs/{run_id}").json()
            return run if run["status"] in ("finished", "failed", "stopped", "lost") else None

        runs = {
            i: wait_until(lambda i=i: ended(i), 240, f"run {i} to end ({log})", 0.3)
            for i in (good, missing, cut, mid_run)
        }

    assert runs[good]["status"] == "finished", runs[good]["error"]
    assert runs[good]["summary"]["epochs_done"] == 1
    resolved = root.resolve()
    expected = {
        missing: f"DataFormatError: {resolved / 'cmu/mosi_nothere.pkl'}: no such file; expected the MulT pickle",
        cut: f"DataFormatError: {resolved / 'cut.pkl'}: truncated or not a pickle file",
        mid_run: f"DataFormatError: {resolved / 'brats/valid/case_003.h5'}: label holds value(s) [5]",
    }
    for run_id, first_line in expected.items():
        run = runs[run_id]
        assert run["status"] == "failed", (run_id, run["status"], run["summary"])
        assert run["error"].splitlines()[0].startswith(first_line), run["error"][:500]
        # Only the delivery report of its points: no results of a half run.
        assert set(run["summary"]) <= {"delivery"}, run["summary"]
