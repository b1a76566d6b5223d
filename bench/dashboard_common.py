"""Shared pieces of the dashboard benchmarks: the real stack (backend + dashboard as subprocesses on free
ports of 127.0.0.1, an SQLite file in a temporary folder) and headless Chromium through Playwright.

Not a benchmark itself; `bench/dashboard_latency.py`, `bench/dashboard_load.py` and
`bench/dashboard_ticks.py` import it. Everything started here is stopped on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.settings import Settings
from tests.dashboard.pagekit import (  # the browser tests' helpers, shared
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    wait_http,
)

REPO = Path(__file__).resolve().parents[1]


class Stack:
    """Backend (`python -m cggm_core serve`) and dashboard (`python -m dashboard.cli`) subprocesses."""

    def __init__(self, api: str, ui: str, workdir: Path) -> None:
        self.api = api
        self.ui = ui
        self.workdir = workdir
        self.http = httpx.Client(base_url=api, timeout=60.0)
        # GET /api/health does not report it: the backend's own default (CGGM_MAX_BATCH in this environment).
        self.max_batch = Settings().max_batch

    def create_external_run(self, name: str, config: dict[str, Any] | None = None) -> int:
        body = {"config": config or {"dataset": "bench", "method": "bench"}, "external": True, "name": name}
        r = self.http.post("/api/runs", json=body)
        r.raise_for_status()
        run = r.json()
        assert run["status"] == "running", run
        return int(run["id"])

    def post_points(self, run_id: int, points: list[dict[str, Any]]) -> None:
        for i in range(0, len(points), self.max_batch):
            r = self.http.post(f"/api/runs/{run_id}/metrics", json={"points": points[i : i + self.max_batch]})
            r.raise_for_status()

    def finish(self, run_id: int) -> None:
        self.http.post(f"/api/runs/{run_id}/finish", json={"status": "finished"}).raise_for_status()


@contextlib.contextmanager
def stack(poll_ms: int = 1000, backend_log_level: str = "warning") -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="cggm-bench-dash-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("CGGM_TOKEN", None)
    api_port, ui_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    ui = f"http://127.0.0.1:{ui_port}"
    commands = {
        "backend": [
            sys.executable,
            "-m",
            "cggm_core",
            "serve",
            "--port",
            str(api_port),
            "--db",
            f"sqlite:///{workdir / 'cggm.db'}",
            "--log-level",
            backend_log_level,
        ],
        "dashboard": [
            sys.executable,
            "-m",
            "dashboard.cli",
            "--port",
            str(ui_port),
            "--api",
            api,
            "--poll-ms",
            str(poll_ms),
        ],
    }
    procs: list[subprocess.Popen] = []
    try:
        for name, cmd in commands.items():
            log = workdir / f"{name}.log"
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
            procs.append(proc)
            wait_http(f"{api}/api/health" if name == "backend" else f"{ui}/", proc, log)
        yield Stack(api, ui, workdir)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """A persistent Chromium context (fresh profile) from Debian's binary; never `playwright install`."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="cggm-bench-chromium-")
    try:
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
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# The plotly div of the graph whose pattern id has this name (whatever its type), in page JS.
GD_JS = """(name) => { for (const el of document.querySelectorAll(`[id*='"name":"${name}"']`)) {
    const gd = el.querySelector('.js-plotly-plot'); if (gd) return gd; } return null; }"""


@contextlib.contextmanager
def cold_page(timeout_ms: int = 60_000, warm: Any = None) -> Iterator[Any]:
    """A page in a browser of its own, with a fresh profile: nothing cached, as a first visit.

    With `warm` (a browser context), a new tab of that browser instead (its cache kept).
    """
    if warm is not None:
        page = warm.new_page()
        page.set_default_timeout(timeout_ms)
        try:
            yield page
        finally:
            page.close()
        return
    with browser() as ctx:
        page = ctx.new_page()
        page.set_default_timeout(timeout_ms)
        yield page


def quantiles(xs: list[float]) -> dict[str, float]:
    """median, p90 (nearest rank), min, max."""
    s = sorted(xs)
    p90 = s[min(len(s) - 1, max(0, round(0.9 * len(s) + 0.5) - 1))]
    return {"n": len(s), "median": statistics.median(s), "p90": p90, "min": s[0], "max": s[-1]}


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"
