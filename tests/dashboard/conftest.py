"""Fixtures for the dashboard tests: series factories, and for browser tests the real stack
(backend + one worker + dashboard as subprocesses on free ports of 127.0.0.1) and headless Chromium.

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


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where a skipped browser test would hide a broken setup."""
    if IN_CI:
        pytest.fail(f"CI=true but the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


class Stack:
    def __init__(self, api: str, ui: str, workdir: Path) -> None:
        self.api = api
        self.ui = ui
        self.workdir = workdir
        self.http = httpx.Client(base_url=api, timeout=10.0)

    def create_run(self, config: dict[str, Any], **body: Any) -> dict[str, Any]:
        r = self.http.post("/api/runs", json={"config": config, **body})
        r.raise_for_status()
        return r.json()

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


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    if importlib.util.find_spec("backend") is None and not (REPO / "backend" / "app.py").exists():
        unavailable("the backend package is missing")
    try:
        importlib.import_module("cggm_core.cli_stack")
        importlib.import_module("cggm_core.worker")
    except ImportError as e:
        unavailable(f"the stack commands are missing: {e}")
    workdir = Path(tempfile.mkdtemp(prefix="cggm-dash-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("CGGM_TOKEN", None)
    api_port, ui_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    ui = f"http://127.0.0.1:{ui_port}"
    launcher = str(Path(__file__).with_name("stack_launcher.py"))
    commands = {
        "backend": [
            sys.executable,
            launcher,
            "serve",
            "--port",
            str(api_port),
            "--db",
            f"sqlite:///{workdir / 'cggm.db'}",
            "--log-level",
            "warning",
        ],
        "worker": [sys.executable, launcher, "worker", "--server", api, "--no-progress", "--poll-s", "0.2"],
        "dashboard": [
            sys.executable,
            "-m",
            "dashboard.cli",
            "--port",
            str(ui_port),
            "--api",
            api,
            "--poll-ms",
            "500",
        ],
    }
    procs: list[subprocess.Popen] = []
    try:
        for name, cmd in commands.items():
            log = workdir / f"{name}.log"
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
            procs.append(proc)
            if name == "backend":
                wait_http(f"{api}/api/health", proc, log)
            elif name == "dashboard":
                wait_http(f"{ui}/", proc, log)
        yield Stack(api, ui, workdir)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


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
    yield p
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            p.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    p.close()
