"""Fixtures for the backend tests: real uvicorn servers on free ports of 127.0.0.1, real SQLite
files in tmp_path (or a PostgreSQL URL from CGGM_TEST_PG_URL), real `cggm worker` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]

# A tiny synthetic job: 4 steps per epoch, a few seconds with a worker's start-up.
TINY_JOB: dict[str, Any] = {
    "dataset": "synthetic",
    "method": "cggm",
    "epochs": 2,
    "train_size": 256,
    "val_size": 64,
    "test_size": 64,
    "probe_steps": 20,
    "log_every": 1,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


class ServerProcess:
    """`cggm serve` in a subprocess; can be killed and restarted on the same port and database."""

    def __init__(self, db_url: str, log_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.db_url = db_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "CGGM_LOST_CHECK_INTERVAL_S": "0.5", **(env or {})}
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> ServerProcess:
        self.starts += 1
        log = (self.log_dir / f"server-{self.port}-{self.starts}.log").open("wb")
        cmd = [
            sys.executable,
            "-m",
            "cggm_core",
            "serve",
            "--port",
            str(self.port),
            "--db",
            self.db_url,
            "--log-level",
            "warning",
        ]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}; see {log.name}")
            try:
                return httpx.get(f"{self.url}/api/health", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 60, f"the server on port {self.port}", 0.1)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, timeout=30.0, headers=headers)


def start_worker(server_url: str, log_path: Path, *extra: str, heartbeat_s: float = 0.5) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "cggm_core", "worker", "--server", server_url, "--device", "cpu",
        "--no-progress", "--heartbeat-s", str(heartbeat_s), "--poll-s", "0.2", *extra,
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cggm.db'}"


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def make(db_url: str | None = None, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(db_url or f"sqlite:///{tmp_path / 'cggm.db'}", tmp_path, env)
        servers.append(server)
        return server.start()

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test starts; any still alive at the end are killed."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _pg_url_or_skip() -> str:
    url = os.environ.get("CGGM_TEST_PG_URL")
    if url:
        return url
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but CGGM_TEST_PG_URL is not set: the PostgreSQL store tests must run in CI")
    pytest.skip("CGGM_TEST_PG_URL not set (e.g. postgresql+psycopg://user:pw@127.0.0.1/db)")


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A fresh schema in the test database, selected by search_path, dropped afterwards."""
    import sqlalchemy as sa

    base = _pg_url_or_skip()
    schema = f"cggm_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def store_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per database kind, shared by the store tests (each makes its own runs)."""
    log_dir = tmp_path_factory.mktemp(f"store-{request.param}")
    url = f"sqlite:///{log_dir / 'cggm.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_schema_url")
    server = ServerProcess(url, log_dir, {"CGGM_MAX_BATCH": "10000"}).start()
    yield server
    server.stop()


@pytest.fixture
def api(store_server: ServerProcess) -> Iterator[httpx.Client]:
    with store_server.client() as client:
        yield client


def new_running_run(api: httpx.Client, **config: Any) -> int:
    """An external run: running at once, so it takes metrics without a worker."""
    r = api.post("/api/runs", json={"config": {"dataset": "synthetic", "method": "cggm", **config}, "external": True})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def stored_count(api: httpx.Client, run_id: int) -> int:
    series = api.get(f"/api/runs/{run_id}/metrics").json()["series"]
    return sum(len(s["steps"]) for s in series.values())
