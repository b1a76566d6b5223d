"""`cggm up` starts backend, dashboard and workers, Ctrl-C stops them all; CLI errors exit 2."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import REPO, TINY_JOB, free_port, wait_until


def test_worker_and_serve_argument_errors_exit_2() -> None:
    for args in (["worker", "--device", "tpu:9"], ["worker", "--heartbeat-s", "0"], ["serve", "--port", "x"]):
        r = subprocess.run(
            [sys.executable, "-m", "cggm_core", *args], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "cggm: error:" in r.stderr


@pytest.mark.slow
def test_up_runs_a_job_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port, ui_port = free_port(), free_port()
    url, ui = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
    cmd = [sys.executable, "-m", "cggm_core", "up", "--api-port", str(port), "--ui-port", str(ui_port)]
    cmd += ["--data-dir", str(tmp_path), "--device", "cpu", "--workers", "2"]
    log = tmp_path / "up.log"
    up = subprocess.Popen(cmd, cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:

        def answers(address: str) -> bool:
            try:
                return httpx.get(address, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(lambda: answers(f"{url}/api/health"), 60, "cggm up's backend")
        wait_until(lambda: answers(ui), 60, "cggm up's dashboard")
        assert f"dashboard {ui}" in log.read_text()
        run_ids = [httpx.post(f"{url}/api/runs", json={"config": TINY_JOB}).json()["id"] for _ in range(2)]
        for run_id in run_ids:
            wait_until(
                lambda run_id=run_id: httpx.get(f"{url}/api/runs/{run_id}").json()["status"] == "finished",
                90,
                "the jobs to finish",
            )
        workers = {httpx.get(f"{url}/api/runs/{i}").json()["worker"] for i in run_ids}
        assert workers <= {"local-0", "local-1"}
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=90) == 0
        assert not answers(f"{url}/api/health")  # the backend is gone too
        assert not answers(ui)  # and the dashboard
        assert (tmp_path / "cggm.db").exists()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


@pytest.mark.slow
def test_train_with_server_logs_an_external_run(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = make_server()
    sets = [f"--set={k}={v}" for k, v in TINY_JOB.items() if k not in ("dataset", "method")]
    cmd = [sys.executable, "-m", "cggm_core", "train", "--dataset", "synthetic", "--method", "cggm", *sets]
    cmd += ["--out", str(tmp_path / "out"), "--no-progress", "--server", server.url, "--run-name", "from-cli"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with server.client() as api:
        run = api.get("/api/runs").json()["data"][0]
        assert run["name"] == "from-cli" and run["external"] and run["status"] == "finished"
        assert run["config"]["epochs"] == 2 and run["config"]["train_size"] == 256
        series = api.get(f"/api/runs/{run['id']}/metrics").json()["series"]
        assert sum(len(s["steps"]) for s in series.values()) == run["summary"]["logged_points"]
        # The local metrics.jsonl holds the same points.
        lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == run["summary"]["logged_points"]


def test_train_with_unreachable_server_exits_2(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "cggm_core", "train", "--dataset", "synthetic", "--method", "cggm", "--epochs", "1"]
    cmd += ["--out", str(tmp_path), "--server", f"http://127.0.0.1:{free_port()}"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cannot reach" in r.stderr
