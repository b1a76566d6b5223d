"""A job that no connected worker can run says so in the browser: real Chromium, a real backend
with the example plugin installed, a real worker without it, the real dashboard. Then a worker
with the plugin starts, takes the job, and the page says finished and no longer waits."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..plugintools import EXAMPLE, pip_install, plugin_env
from .conftest import REPO
from .pagekit import free_port, wait_for, wait_http

pytestmark = pytest.mark.browser

JOB = {"dataset": "toy_rings", "method": "cggm", "epochs": 2, "ring_samples": 200, "probe_steps": 20}
REASON = "no connected worker has dataset 'toy_rings'; install the plugin package 'cggm-plugin-example' on a worker"


class PluginStack:
    """Backend (with the plugin) + dashboard + a worker without the plugin; more workers on demand."""

    def __init__(self, workdir: Path, site: Path) -> None:
        self.workdir, self.site = workdir, site
        self.api = f"http://127.0.0.1:{free_port()}"
        self.ui_port = free_port()
        self.ui = f"http://127.0.0.1:{self.ui_port}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def worker(self, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable, "-m", "cggm_core", "worker", "--server", self.api, "--name", name, "--device", "cpu",
            "--no-progress", "--poll-s", "0.2", "--spool-dir", str(self.workdir / "spool"),
        ]  # fmt: skip
        return self.start(name, cmd, env)


@pytest.fixture
def plugin_stack(tmp_path: Path) -> Iterator[PluginStack]:
    site = pip_install(EXAMPLE, tmp_path / "site", tmp_path)
    stack = PluginStack(tmp_path, site)
    port = stack.api.rsplit(":", 1)[1]
    db = f"sqlite:///{tmp_path / 'cggm.db'}"
    env = plugin_env(site, OMP_NUM_THREADS="1")
    env.pop("CGGM_TOKEN", None)
    try:
        backend = stack.start(
            "backend",
            [sys.executable, "-m", "cggm_core", "serve", "--port", port, "--db", db, "--log-level", "warning"],
            env,
        )
        wait_http(f"{stack.api}/api/health", backend, tmp_path / "backend.log")
        stack.worker("plain", plugin_env(OMP_NUM_THREADS="1"))
        dash_cmd = [sys.executable, "-m", "dashboard.cli", "--port", str(stack.ui_port), "--api", stack.api]
        dash = stack.start("dashboard", [*dash_cmd, "--poll-ms", "500"], env)
        wait_http(f"{stack.ui}/", dash, tmp_path / "dashboard.log")
        yield stack
    finally:
        for proc in reversed(stack.procs):
            proc.terminate()
        for proc in reversed(stack.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_job_no_worker_can_run_says_why_until_one_can(plugin_stack: PluginStack, page: Any) -> None:
    api = httpx.Client(base_url=plugin_stack.api, timeout=10.0)
    wait_for(
        lambda: any(w["name"] == "plain" for w in api.get("/api/workers").json()["data"]),
        90,
        "the plain worker to connect",
        0.3,
    )
    run = api.post("/api/runs", json={"config": JOB, "name": "rings-waiting"}).json()
    assert run["waiting_reason"].startswith(REASON), run["waiting_reason"]
    page.goto(f"{plugin_stack.ui}/runs/{run['id']}")
    waiting = page.locator("#run-waiting")
    wait_for(lambda: waiting.inner_text().startswith(REASON), 30, "the run page to say why it waits")
    assert page.locator("#run-status").inner_text() == "queued"
    # The runs table says it too, in the run's row.
    page.goto(f"{plugin_stack.ui}/")
    row = page.locator("#runs-table tr", has_text="rings-waiting")
    wait_for(lambda: row.count() == 1 and REASON in row.inner_text(), 30, "the runs table's waiting cell")
    # A worker with the plugin: it takes the job; the run page stops waiting and ends finished.
    plugin_stack.worker("with-plugin", plugin_env(plugin_stack.site, OMP_NUM_THREADS="1"))
    page.goto(f"{plugin_stack.ui}/runs/{run['id']}")
    wait_for(lambda: page.locator("#run-status").inner_text() == "finished", 120, "the run to finish")
    assert waiting.inner_text() == ""
    assert api.get(f"/api/runs/{run['id']}").json()["worker"] == "with-plugin"
    api.close()
