"""A worker that owns GPUs runs several jobs at once, each on its own GPUs (issue 13 item 3).

This machine has no GPU, so the ranks here are a stand-in: a small script in place of `cggm train`
(the worker's `train_argv` is replaced for this test) that records what it was given, the
CUDA_VISIBLE_DEVICES its slot set, when it ran, and finishes its run on the real backend. The
worker, its slots and claim loops, the process groups and the backend are the real ones. What
the stand-in cannot show (NCCL, CUDA memory) is left to bench/gpu_check.py on a GPU machine.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from cggm_core import group as group_module
from cggm_core.worker import Worker, WorkerOptions

from .conftest import TINY_JOB

RANK = """
import json, os, sys, time, httpx
out, server = sys.argv[1], sys.argv[2]
run_id = os.environ["CGGM_GROUP_RUN_ID"]
t0 = time.time()
time.sleep(2.0)  # long enough that the other slot's job runs meanwhile
record = {"run": int(run_id), "rank": os.environ.get("RANK"), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
          "t0": t0, "t1": time.time(), "device": sys.argv[sys.argv.index("--device") + 1]}
with open(os.path.join(out, f"run-{run_id}-rank-{record['rank']}.json"), "w") as f:
    json.dump(record, f)
if record["rank"] == "0":
    httpx.post(f"{server}/api/runs/{run_id}/finish", json={"status": "finished"}).raise_for_status()
"""


def test_two_slots_run_two_jobs_at_once_on_disjoint_gpus(
    make_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    server = make_server()
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    records = tmp_path / "records"
    records.mkdir()
    monkeypatch.setattr(
        group_module, "train_argv", lambda args: [sys.executable, str(script), str(records), server.url, *args]
    )
    with server.client() as api:
        runs = [api.post("/api/runs", json={"config": TINY_JOB}).json()["id"] for _ in range(2)]
        options = WorkerOptions(server=server.url, gpus=[0, 1, 2, 3], procs_per_job=2, poll_s=0.2, heartbeat_s=0.5)
        worker = Worker(options)
        thread = threading.Thread(target=worker.serve, daemon=True)
        thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(
            api.get(f"/api/runs/{r}").json()["status"] != "finished" for r in runs
        ):
            time.sleep(0.2)
        worker.terminating.set()
        thread.join(timeout=30)
        statuses = [api.get(f"/api/runs/{r}").json() for r in runs]
    assert [s["status"] for s in statuses] == ["finished", "finished"]
    got = [json.loads(p.read_text()) for p in sorted(records.glob("*.json"))]
    assert len(got) == 4  # 2 jobs x 2 ranks
    by_run = {r: [g for g in got if g["run"] == r] for r in runs}
    cuda = {r: {g["cuda"] for g in ranks} for r, ranks in by_run.items()}
    # Each job's ranks share their slot's two GPUs; the two jobs' GPUs do not overlap.
    assert sorted(next(iter(c)) for c in cuda.values()) == ["0,1", "2,3"]
    assert all(len(c) == 1 for c in cuda.values())
    assert {g["rank"] for g in got} == {"0", "1"} and {g["device"] for g in got} == {"cuda"}
    # At the same time: each job started before the other ended.
    (a, b) = (by_run[r] for r in runs)
    assert min(g["t0"] for g in a) < max(g["t1"] for g in b) and min(g["t0"] for g in b) < max(g["t1"] for g in a)
    # Each slot claimed under its own name, so the backend shows which GPUs trained which run.
    assert sorted(s["worker"].rsplit("/", 1)[1] for s in statuses) == ["gpu0,1", "gpu2,3"]
    assert httpx.get(f"{server.url}/api/health").status_code == 200
