"""Long backend outages at the end of a run, and what processes leave behind: `cggm train --server`
and a user's loop against a real `cggm serve` that is killed and restarted on the same port and
database. Points are counted exactly: logged (metrics.jsonl, or the loop's own count) vs stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cggm_core.spool import server_slug

from .conftest import (
    REPO,
    TINY_JOB,
    ServerProcess,
    free_port,
    new_running_run,
    start_worker,
    stored_count,
    wait_until,
)

# Long enough to be caught mid-run, short enough to end a few seconds into the outage.
JOB = {**TINY_JOB, "epochs": 40, "train_size": 512}
OLD_LIMIT_S = 30.0  # what the sink's close and the finish used to retry for


def train_cmd(server: ServerProcess, out: Path, *extra: str) -> list[str]:
    sets = [f"--set={k}={v}" for k, v in JOB.items() if k not in ("dataset", "method")]
    cmd = [sys.executable, "-m", "cggm_core", "train", "--dataset", "synthetic", "--method", "cggm", *sets]
    return [*cmd, "--out", str(out), "--no-progress", "--server", server.url, *extra]


def spool_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "CGGM_SPOOL_DIR": str(tmp_path / "spool")}


def run_of(api: httpx.Client, run_id: int) -> dict[str, Any]:
    out: dict[str, Any] = api.get(f"/api/runs/{run_id}").json()
    return out


def logged_lines(out: Path) -> int:
    return len((out / "metrics.jsonl").read_text().splitlines())


def spool_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "spool").rglob("run-*"))


def sync(server: ServerProcess, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cggm_core", "sync", "--server", server.url]
    return subprocess.run(cmd, cwd=REPO, env=spool_env(tmp_path), capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_train_server_survives_an_outage_longer_than_30s_at_its_end(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server()
    out = tmp_path / "out"
    log = (tmp_path / "train.log").open("w")
    proc = subprocess.Popen(train_cmd(server, out), cwd=REPO, env=spool_env(tmp_path), stdout=log, stderr=log)
    try:
        with server.client() as api:
            run_id = wait_until(lambda: api.get("/api/runs").json()["data"], 60, "the run")[0]["id"]
            wait_until(lambda: stored_count(api, run_id) > 0, 60, "the first metrics")
        server.kill()
        # Training ends during the outage (summary.json is written just before the sink closes);
        # the backend stays away for longer than the old 30 s limit after that.
        wait_until(lambda: (out / "summary.json").exists(), 120, "training to end", 0.2)
        time.sleep(OLD_LIMIT_S + 5.0)
        assert proc.poll() is None, "the run must still be trying to deliver its points"
        server.start()
        assert proc.wait(timeout=180) == 0, (tmp_path / "train.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with server.client() as api:
        run = run_of(api, run_id)
        assert run["status"] == "finished", run
        logged = run["summary"]["logged_points"]
        assert stored_count(api, run_id) == logged == logged_lines(out)
        delivery = run["summary"]["delivery"]
        assert delivery["spooled"] > 0 and delivery["left_in_spool"] == 0 and delivery["lost"] == 0
    assert spool_files(tmp_path) == []


# A user's loop that logs while the backend is down, waits until everything is spooled, and says so.
SPOOLING_LOOP = """
import sys, time
from cggm_core.remote import RemoteRun
from cggm_core.tracking import Point

run = RemoteRun.create(sys.argv[1], {"model": "loop"}, name="killed-loop")
print(run.run_id, flush=True)
sys.stdin.readline()  # the test has taken the backend down
for step in range(600):
    run.sink.log([Point(k, step, float(step), time.time()) for k in ("a", "b", "c", "d", "e")])
run.sink.flush()  # in the spool now
print("spooled", flush=True)
time.sleep(600)  # killed here
"""


@pytest.mark.slow
def test_cggm_sync_delivers_the_spool_of_a_killed_process(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(env={"CGGM_HEARTBEAT_TIMEOUT_S": "2"})
    proc = subprocess.Popen(
        [sys.executable, "-c", SPOOLING_LOOP, server.url],
        cwd=REPO,
        env=spool_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "loop.log").open("w"),
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        run_id = int(proc.stdout.readline())
        server.kill()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "spooled"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    spool = tmp_path / "spool" / server_slug(server.url) / f"run-{run_id}.jsonl"
    assert spool.exists(), spool_files(tmp_path)
    with spool.open("a") as f:
        f.write('{"key": "a", "step": 600, "va')  # as if it had been killed in the middle of a write
    server.start()
    r = sync(server, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"run {run_id}: 3,000 points delivered" in r.stdout and "1 corrupt spool lines skipped" in r.stdout
    with server.client() as api:
        assert stored_count(api, run_id) == 3_000
        # Its process is gone: no heartbeat, so the run is lost (it never reported an end).
        wait_until(lambda: run_of(api, run_id)["status"] == "lost", 20, "the run to be lost")
    assert spool_files(tmp_path) == []
    again = sync(server, tmp_path)
    assert again.returncode == 0 and "nothing left to send" in again.stdout


@pytest.mark.slow
def test_a_run_that_gives_up_leaves_its_points_and_its_end_to_cggm_sync(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server()
    out = tmp_path / "out"
    log = (tmp_path / "train.log").open("w")
    cmd = train_cmd(server, out, "--retry-s", "2")
    proc = subprocess.Popen(cmd, cwd=REPO, env=spool_env(tmp_path), stdout=log, stderr=log)
    try:
        with server.client() as api:
            run_id = wait_until(lambda: api.get("/api/runs").json()["data"], 60, "the run")[0]["id"]
            wait_until(lambda: stored_count(api, run_id) > 0, 60, "the first metrics")
        server.kill()
        assert proc.wait(timeout=180) == 0, (tmp_path / "train.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = spool_files(tmp_path)
    assert f"run-{run_id}.jsonl" in left and f"run-{run_id}.finish.json" in left, left
    assert "cggm sync" in (tmp_path / "train.log").read_text()
    server.start()
    with server.client() as api:
        assert run_of(api, run_id)["status"] in ("running", "lost")  # its end is not known yet
    r = sync(server, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"run {run_id}: reported as finished" in r.stdout
    with server.client() as api:
        run = run_of(api, run_id)
        assert run["status"] == "finished"
        assert stored_count(api, run_id) == logged_lines(out) == run["summary"]["logged_points"]
    assert spool_files(tmp_path) == []


@pytest.mark.slow
def test_a_worker_resends_what_earlier_processes_left_for_its_server(
    make_server: Callable[..., ServerProcess], workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    server = make_server()
    with server.client() as api:
        run_id = new_running_run(api)
        spool = tmp_path / "spool" / server_slug(server.url) / f"run-{run_id}.jsonl"
        spool.parent.mkdir(parents=True)
        now = time.time()
        spool.write_text(
            "".join(json.dumps({"key": "k", "step": s, "value": 1.0, "time": now}) + "\n" for s in range(2500))
        )
        workers.append(start_worker(server.url, tmp_path / "worker.log", "--spool-dir", str(tmp_path / "spool")))
        wait_until(lambda: stored_count(api, run_id) == 2_500, 60, "the old spool to arrive")
        wait_until(lambda: not spool.exists(), 10, "the spool to be removed")


def test_sync_argument_and_reachability_errors_exit_2(tmp_path: Path) -> None:
    for args in (["--server", f"http://127.0.0.1:{free_port()}"], ["--retry-s=-1"]):
        cmd = [sys.executable, "-m", "cggm_core", "sync", *args]
        r = subprocess.run(cmd, cwd=REPO, env=spool_env(tmp_path), capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("cggm: error:"), r.stderr
