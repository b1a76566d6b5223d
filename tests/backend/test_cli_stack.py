"""`cggm up` starts backend, dashboard and workers, names a process that dies and restarts it (or
stops everything), keeps its console free of a line per poll, Ctrl-C stops them all; CLI errors exit 2."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
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


def answers(address: str) -> bool:
    try:
        return httpx.get(address, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Up:
    """A real `cggm up` on free ports, its console (stdout + stderr) in a file."""

    def __init__(self, tmp_path: Path, *extra: str, ui: bool = True) -> None:
        self.port = free_port()
        self.ui_port = free_port() if ui else 0
        self.url = f"http://127.0.0.1:{self.port}"
        self.ui = f"http://127.0.0.1:{self.ui_port}"
        self.data = tmp_path
        cmd = [sys.executable, "-m", "cggm_core", "up", "--api-port", str(self.port), "--ui-port", str(self.ui_port)]
        cmd += ["--db-dir", str(tmp_path), "--device", "cpu", *extra]
        self.log = tmp_path / "up.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CGGM_")}
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def pid(self, name: str, after: int = -1) -> int:
        """The pid of the latest start of `name` (one other than `after`), once `up` has printed it."""

        def started() -> int | None:
            pids = [int(p) for p in re.findall(rf"started {re.escape(name)} \(pid (\d+)", self.text())]
            return pids[-1] if pids and pids[-1] != after else None

        return int(wait_until(started, 120, f"`up` to start {name}", 0.2))

    def wait_for_text(self, pattern: str, timeout_s: float = 120) -> re.Match[str]:
        return wait_until(lambda: re.search(pattern, self.text()), timeout_s, f"{pattern!r} in up's console", 0.2)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        up.close()


@pytest.mark.slow
def test_up_runs_a_job_and_ctrl_c_stops_everything(tmp_path: Path, ups: list[Up]) -> None:
    up = Up(tmp_path, "--workers", "2")
    ups.append(up)
    wait_until(lambda: answers(f"{up.url}/api/health"), 60, "cggm up's backend")
    wait_until(lambda: answers(up.ui), 60, "cggm up's dashboard")
    assert f"dashboard {up.ui}" in up.text()
    run_ids = [httpx.post(f"{up.url}/api/runs", json={"config": TINY_JOB}).json()["id"] for _ in range(2)]
    for run_id in run_ids:
        wait_until(
            lambda run_id=run_id: httpx.get(f"{up.url}/api/runs/{run_id}").json()["status"] == "finished",
            90,
            "the jobs to finish",
        )
    workers = {httpx.get(f"{up.url}/api/runs/{i}").json()["worker"] for i in run_ids}
    assert workers <= {"local-0", "local-1"}
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=90) == 0
    assert not answers(f"{up.url}/api/health")  # the backend is gone too
    assert not answers(up.ui)  # and the dashboard
    assert (tmp_path / "cggm.db").exists()


@pytest.mark.slow
def test_up_names_each_killed_process_and_restarts_it(tmp_path: Path, ups: list[Up]) -> None:
    up = Up(tmp_path, "--workers", "1")
    ups.append(up)
    backend, worker, dashboard = up.pid("backend"), up.pid("worker local-0"), up.pid("dashboard")
    wait_until(lambda: answers(up.ui), 90, "the dashboard")
    wait_until(lambda: "serving http" in up.text(), 90, "the worker polling for jobs")
    assert httpx.get(f"{up.url}/api/runs/999999").status_code == 404  # a failed request: logged

    # A worker: named, how it died, its last lines; a new one takes its place.
    os.kill(worker, signal.SIGKILL)
    up.wait_for_text(
        rf"worker local-0 \(pid {worker}\) was killed by SIGKILL; its last lines \(.*worker-local-0\.log\)"
    )
    up.wait_for_text(r"\| .*worker local-0 on cpu, serving http")  # its own output, quoted
    up.wait_for_text(r"restarting worker local-0 in 1 s \(restart 1 of at most 3 within 60 s\)")
    new_worker = up.pid("worker local-0", after=worker)

    # The dashboard: restarted and answering again.
    os.kill(dashboard, signal.SIGKILL)
    up.wait_for_text(rf"dashboard \(pid {dashboard}\) was killed by SIGKILL")
    new_dashboard = up.pid("dashboard", after=dashboard)
    wait_until(lambda: answers(up.ui), 90, "the restarted dashboard")

    # The backend: restarted on the same database; the dashboard and the worker stay up through it.
    os.kill(backend, signal.SIGKILL)
    up.wait_for_text(rf"backend \(pid {backend}\) was killed by SIGKILL; its last lines[^\n]*\n(    \| [^\n]*\n)*")
    assert re.search(r"    \| .*Uvicorn running on", up.text())
    new_backend = up.pid("backend", after=backend)
    up.wait_for_text(r"backend answers at http://127\.0\.0\.1:\d+/api/health")
    assert pid_alive(new_dashboard) and pid_alive(new_worker) and pid_alive(new_backend)
    assert answers(up.ui)

    # The restarted worker trains a job from the restarted backend.
    run_id = httpx.post(f"{up.url}/api/runs", json={"config": TINY_JOB}).json()["id"]
    run = wait_until(
        lambda: (r := httpx.get(f"{up.url}/api/runs/{run_id}").json())["status"] == "finished" and r,
        120,
        "the job to finish",
    )
    assert run["worker"] == "local-0"
    assert up.proc.poll() is None

    # The console: no access-log line for the polls (claims every second, heartbeats, ingest, the
    # dashboard's health checks), yet the failed request is there. Every process has its log file.
    console = up.text()
    assert '"GET /api/runs/999999 HTTP/1.1" 404' in console
    for noise in ("POST /api/workers/claim", "/heartbeat", f"POST /api/runs/{run_id}/metrics", "GET /api/health"):
        assert noise not in console, noise
    assert '"GET / HTTP/1.1" 200' not in console  # the dashboard's request log (werkzeug): our own GETs above
    logs = {p.name for p in (tmp_path / "logs").iterdir()}
    assert logs == {"backend.log", "worker-local-0.log", "dashboard.log"}
    assert f"run {run_id}: claimed" in (tmp_path / "logs" / "worker-local-0.log").read_text()

    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=120) == 0
    for pid in (new_backend, new_worker, new_dashboard):
        wait_until(lambda pid=pid: not pid_alive(pid), 30, f"pid {pid} to exit")


@pytest.mark.slow
def test_up_with_no_restarts_stops_everything_when_a_worker_dies(tmp_path: Path, ups: list[Up]) -> None:
    up = Up(tmp_path, "--workers", "1", "--max-restarts", "0", ui=False)
    ups.append(up)
    backend, worker = up.pid("backend"), up.pid("worker local-0")
    wait_until(lambda: "serving http" in up.text(), 90, "the worker polling for jobs")
    os.kill(worker, signal.SIGKILL)
    assert up.proc.wait(timeout=90) == 1
    text = up.text()
    assert f"worker local-0 (pid {worker}) was killed by SIGKILL" in text
    assert (
        "worker local-0 was killed by SIGKILL after no restarts allowed (--max-restarts 0): stopping everything" in text
    )
    assert "restarting" not in text
    assert not answers(f"{up.url}/api/health")
    wait_until(lambda: not pid_alive(backend), 30, "the backend to exit")


@pytest.mark.slow
def test_up_stops_everything_when_the_backend_cannot_come_back(tmp_path: Path, ups: list[Up]) -> None:
    up = Up(tmp_path, "--workers", "1", "--max-restarts", "2", ui=False)
    ups.append(up)
    backend, worker = up.pid("backend"), up.pid("worker local-0")
    wait_until(lambda: answers(f"{up.url}/api/health"), 60, "the backend")
    os.kill(backend, signal.SIGKILL)
    with socket.socket() as squatter:  # someone else takes the port: every restart fails to bind
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def bound() -> bool:
            try:
                squatter.bind(("127.0.0.1", up.port))
            except OSError:
                return False
            squatter.listen()
            return True

        wait_until(bound, 30, "the backend's port to be free")
        assert up.proc.wait(timeout=180) == 1
    text = up.text()
    assert f"backend (pid {backend}) was killed by SIGKILL" in text
    assert "restarting backend in 1 s (restart 1 of at most 2 within 60 s)" in text
    assert "restarting backend in 2 s (restart 2 of at most 2 within 60 s)" in text
    assert re.search(r"    \| .*address already in use", text), text[-3000:]
    assert re.search(r"cggm: backend exited with code \d+ after 2 restart\(s\) within 60 s: stopping everything", text)
    wait_until(lambda: not pid_alive(worker), 60, "the worker to be stopped")


def test_up_reports_a_backend_that_cannot_start(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        cmd = [sys.executable, "-m", "cggm_core", "up", "--api-port", str(port), "--ui-port", "0"]
        cmd += ["--db-dir", str(tmp_path), "--workers", "0"]
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert re.search(r"    \| .*address already in use", r.stderr), r.stderr
    assert re.search(r"cggm: error: backend exited with code \d+ before answering at http://127\.0\.0\.1", r.stderr)


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
