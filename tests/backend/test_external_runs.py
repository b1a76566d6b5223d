"""External runs (a user's own loop through RemoteRun, `cggm train --server`) against a real server:
they heartbeat, so a dead one becomes lost and one that comes back is running again; Stop ends
them as stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import REPO, TINY_JOB, ServerProcess, stored_count, wait_until

# A user's loop: no torch, two points per step, until the backend says stop.
USER_LOOP = """
import sys, time
from cggm_core.remote import RemoteRun
from cggm_core.tracking import Point

with RemoteRun.create(sys.argv[1], {"model": "loop"}, name="user-loop", heartbeat_s=0.3) as run:
    print(run.run_id, flush=True)
    step = 0
    while not run.should_stop() and step < 200_000:
        run.sink.log([Point(k, step, float(step), time.time()) for k in ("a", "b")])
        step += 1
        time.sleep(0.01)
    run.finish(summary={"logged": 2 * step})
"""


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()


def start_user_loop(server_url: str, tmp_path: Path, children: list[subprocess.Popen[str]]) -> int:
    env = {**os.environ, "CGGM_SPOOL_DIR": str(tmp_path / "spool")}
    proc = subprocess.Popen(
        [sys.executable, "-c", USER_LOOP, server_url],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "loop.log").open("w"),
        text=True,
    )
    children.append(proc)
    assert proc.stdout is not None
    return int(proc.stdout.readline())


def run_of(api: httpx.Client, run_id: int) -> dict[str, Any]:
    out: dict[str, Any] = api.get(f"/api/runs/{run_id}").json()
    return out


def status_is(api: httpx.Client, run_id: int, status: str) -> Callable[[], dict[str, Any] | None]:
    return lambda: ((r := run_of(api, run_id))["status"] == status and r) or None


@pytest.mark.slow
def test_an_external_run_whose_process_dies_becomes_lost_and_comes_back(
    make_server: Callable[..., ServerProcess], tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    server = make_server(env={"CGGM_HEARTBEAT_TIMEOUT_S": "2"})
    with server.client() as api:
        run_id = start_user_loop(server.url, tmp_path, children)
        wait_until(lambda: stored_count(api, run_id) > 0, 60, "the first metrics")
        time.sleep(3.0)  # longer than the timeout: a live loop keeps its run running (asserted next)
        assert run_of(api, run_id)["status"] == "running"
        loop = children[0]
        loop.send_signal(signal.SIGSTOP)  # frozen: no heartbeats
        run = wait_until(status_is(api, run_id, "lost"), 20, "the frozen run to become lost")
        assert run["ended_at"] is None
        loop.send_signal(signal.SIGCONT)  # its heartbeats resume: running again
        wait_until(status_is(api, run_id, "running"), 20, "the run to be running again")
        events = [e["message"] for e in api.get(f"/api/runs/{run_id}/events").json()["data"]]
        assert any(m.startswith("lost") for m in events) and "its script is back: running again" in events
        loop.kill()
        loop.wait()
        wait_until(status_is(api, run_id, "lost"), 20, "the killed run to become lost")
        assert api.post(f"/api/runs/{run_id}/stop").json()["status"] == "stopped"


@pytest.mark.slow
def test_stop_ends_an_external_loop_as_stopped(
    make_server: Callable[..., ServerProcess], tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    server = make_server()
    with server.client() as api:
        run_id = start_user_loop(server.url, tmp_path, children)
        wait_until(lambda: stored_count(api, run_id) > 100, 60, "the first metrics")
        assert api.post(f"/api/runs/{run_id}/stop").json()["status"] == "stopping"
        run = wait_until(status_is(api, run_id, "stopped"), 30, "the loop to stop")
        assert children[0].wait(timeout=30) == 0
        assert run["summary"]["logged"] == stored_count(api, run_id) == run["summary"]["delivery"]["delivered"]


@pytest.mark.slow
def test_stop_ends_cggm_train_server_as_stopped(make_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = make_server()
    sets = [f"--set={k}={v}" for k, v in {**TINY_JOB, "epochs": 2000}.items() if k not in ("dataset", "method")]
    cmd = [sys.executable, "-m", "cggm_core", "train", "--dataset", "synthetic", "--method", "cggm", *sets]
    cmd += ["--out", str(tmp_path / "out"), "--no-progress", "--server", server.url]
    env = {**os.environ, "CGGM_SPOOL_DIR": str(tmp_path / "spool")}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with server.client() as api:
            run_id = wait_until(lambda: api.get("/api/runs").json()["data"], 60, "the run")[0]["id"]
            wait_until(lambda: stored_count(api, run_id) > 50, 60, "the first metrics")
            api.post(f"/api/runs/{run_id}/stop")
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, out
            run = run_of(api, run_id)
            assert run["status"] == "stopped" and "\nstopped: test" in out, out
            assert stored_count(api, run_id) == run["summary"]["logged_points"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
