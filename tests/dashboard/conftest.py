"""Fixtures for the dashboard tests: for browser tests the real stack (backend, a worker, the
dashboard as subprocesses on free ports of 127.0.0.1) and headless Chromium.

`stack` (session) has a worker and trains real jobs; `bare_stack` (per module) has no worker, a
fresh database, a 3 s heartbeat timeout (runs go `lost` quickly) and a 2 s undo window, and can
stop and start its backend and dashboard (outage and recovery tests).
With CI=true a missing Chromium, Playwright or backend fails the browser tests instead of skipping.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .pagekit import CHROMIUM, CHROMIUM_ARGS, free_port, wait_http

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LAUNCHER = str(Path(__file__).with_name("stack_launcher.py"))


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where a skipped browser test would hide a broken setup."""
    if IN_CI:
        pytest.fail(f"CI=true but the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


class Stack:
    """Backend, optional worker and dashboard subprocesses; each can be stopped and started again."""

    def __init__(self, workdir: Path, *, worker: bool, env: dict[str, str] | None = None, poll_ms: int = 500) -> None:
        self.workdir = workdir
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            **(env or {}),
        }
        self.env.pop("CGGM_TOKEN", None)
        self.api_port, self.ui_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.ui = f"http://127.0.0.1:{self.ui_port}"
        self.http = httpx.Client(base_url=self.api, timeout=10.0)
        db = f"sqlite:///{workdir / 'cggm.db'}"
        self.commands = {
            "backend": [
                sys.executable,
                LAUNCHER,
                "serve",
                "--port",
                str(self.api_port),
                "--db",
                db,
                "--log-level",
                "warning",
            ],
            "worker": [sys.executable, LAUNCHER, "worker", "--server", self.api, "--no-progress", "--poll-s", "0.2"],
            "dashboard": [
                sys.executable,
                *("-m", "dashboard.cli", "--port", str(self.ui_port), "--api", self.api, "--poll-ms", str(poll_ms)),
            ],
        }
        if not worker:
            del self.commands["worker"]
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        log = self.workdir / f"{name}.log"
        proc = subprocess.Popen(
            self.commands[name], cwd=REPO, env=self.env, stdout=log.open("a"), stderr=subprocess.STDOUT
        )
        self.procs[name] = proc
        if name == "backend":
            wait_http(f"{self.api}/api/health", proc, log)
        elif name == "dashboard":
            wait_http(f"{self.ui}/", proc, log)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def start_all(self) -> None:
        for name in self.commands:
            self.start(name)

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text()

    # ---- the backend's API, as a test needs it
    def create_run(self, config: dict[str, Any], **body: Any) -> dict[str, Any]:
        r = self.http.post("/api/runs", json={"config": config, **body})
        r.raise_for_status()
        return r.json()

    def external_run(self, name: str, config: dict[str, Any] | None = None) -> int:
        run = self.create_run(config or {"dataset": "ext", "method": "ext"}, name=name, external=True)
        return int(run["id"])

    def post(self, run_id: int, points: list[dict[str, Any]]) -> None:
        self.http.post(f"/api/runs/{run_id}/metrics", json={"points": points}).raise_for_status()

    def finish(self, run_id: int, summary: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"status": "finished", **({"summary": summary} if summary else {})}
        self.http.post(f"/api/runs/{run_id}/finish", json=body).raise_for_status()

    def run(self, run_id: int) -> dict[str, Any]:
        return self.http.get(f"/api/runs/{run_id}").json()

    def wait_status(self, run_id: int, statuses: set[str], timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] in statuses:
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not reach {statuses}: {self.run(run_id)['status']}")


def _check_stack_available() -> None:
    if importlib.util.find_spec("backend") is None and not (REPO / "backend" / "app.py").exists():
        unavailable("the backend package is missing")
    try:
        importlib.import_module("cggm_core.cli_stack")
        importlib.import_module("cggm_core.worker")
    except ImportError as e:
        unavailable(f"the stack commands are missing: {e}")


@contextlib.contextmanager
def running_stack(**kwargs: Any) -> Iterator[Stack]:
    _check_stack_available()
    workdir = Path(tempfile.mkdtemp(prefix="cggm-dash-"))
    s = Stack(workdir, **kwargs)
    try:
        s.start_all()
        yield s
    finally:
        s.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with running_stack(worker=True) as s:
        yield s


@pytest.fixture(scope="module")
def bare_stack() -> Iterator[Stack]:
    env = {"CGGM_HEARTBEAT_TIMEOUT_S": "3", "CGGM_LOST_CHECK_INTERVAL_S": "0.5", "CGGM_DASHBOARD_UNDO_S": "2"}
    with running_stack(worker=False, env=env) as s:
        yield s


@pytest.fixture(scope="session")
def browser_context() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright; never `playwright install`)")
    if not Path(CHROMIUM).exists():
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    profile = tempfile.mkdtemp(prefix="cggm-chromium-")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
            accept_downloads=True,
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def page(browser_context: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    p = browser_context.new_page()
    p.set_default_timeout(20_000)
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.js_errors = errors  # type: ignore[attr-defined]
    yield p
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            p.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    p.close()
