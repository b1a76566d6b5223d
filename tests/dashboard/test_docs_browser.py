"""/docs in real headless Chromium with every request off 127.0.0.1 blocked: Swagger UI renders."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import REPO
from .pagekit import free_port, wait_for, wait_http

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("docs")
    port = free_port()
    log = workdir / "backend.log"
    cmd = [sys.executable, "-m", "cggm_core", "serve", "--port", str(port), "--db-dir", str(workdir)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/health", proc, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def offline(page: Any, base: str) -> list[str]:
    """Abort every request that does not go to `base`; return the list of those attempted."""
    blocked: list[str] = []

    def handle(route: Any) -> None:
        if route.request.url.startswith(f"{base}/"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", handle)
    return blocked


def test_swagger_ui_renders_without_network(backend: str, page: Any) -> None:
    operations = sum(len(ops) for ops in httpx.get(f"{backend}/openapi.json").json()["paths"].values())
    blocked = offline(page, backend)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{backend}/docs")
    wait_for(lambda: page.locator(".opblock").count() == operations, 30, f"{operations} operations listed")
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("CGGM Monitor")
    # One operation opens and shows its parameters: the UI is live, not only drawn.
    page.locator(".opblock-summary", has_text="/api/runs/{run_id}").first.click()
    page.locator(".opblock .parameters").first.wait_for()
    assert blocked == [] and errors == [], (blocked, errors)
