"""Security posture: no server listens beyond this machine without a token unless told so on
purpose (and then it warns); with --token-reads the token guards reads too, and every client of
ours (worker, HttpSink, dashboard) still works because it sends the token on every request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cggm_core.exposure import exposure_error, is_loopback

from .conftest import REPO, TINY_JOB, free_port, start_worker, wait_until

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("CGGM_")}


def cggm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cggm_core", *args],
        cwd=REPO,
        env=env or CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_loopback_hosts() -> None:
    for host in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "10.1.2.3", "192.168.0.7", "no-such-host.invalid"):
        assert not is_loopback(host), host
    assert exposure_error("serve", "0.0.0.0", "a-token", False) is None
    assert exposure_error("serve", "0.0.0.0", None, True) is None
    assert exposure_error("serve", "127.0.0.1", None, False) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--host", "0.0.0.0", "--port", "1"],
        ["up", "--host", "0.0.0.0", "--api-port", "1", "--ui-port", "0", "--workers", "0"],
        ["dashboard", "--host", "0.0.0.0", "--port", "1"],
        ["serve", "--host", "10.1.2.3", "--port", "1"],
    ],
    ids=["serve", "up", "dashboard", "serve-lan"],
)
def test_a_public_host_without_a_token_is_refused(argv: list[str], tmp_path: Path) -> None:
    r = cggm(*argv, "--db-dir", str(tmp_path)) if argv[0] != "dashboard" else cggm(*argv)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr  # one line, nothing started
    assert r.stderr.startswith(f"cggm: error: {argv[0]} --host {argv[2]} listens beyond this machine")
    assert "CGGM_TOKEN" in r.stderr and "--insecure-no-token" in r.stderr
    assert not (tmp_path / "cggm.db").exists()


def test_dashboard_module_refuses_too() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "dashboard.cli", "--host", "0.0.0.0", "--port", "1"],
        cwd=REPO,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--insecure-no-token" in r.stderr, r.stderr


def test_token_reads_without_a_token_is_refused(tmp_path: Path) -> None:
    for argv in (["serve", "--token-reads"], ["up", "--token-reads", "--ui-port", "0", "--workers", "0"]):
        r = cggm(*argv, "--db-dir", str(tmp_path))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--token-reads needs a token" in r.stderr, r.stderr
    r = cggm("serve", "--db-dir", str(tmp_path), env={**CLEAN_ENV, "CGGM_TOKEN_READS": "1"})
    assert r.returncode == 2 and "--token-reads needs a token" in r.stderr, r.stderr


def _serve_and_read_warning(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    """Start `cggm serve` on all interfaces, wait for it to answer on 127.0.0.1, return its start-up output."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "cggm_core", "serve", "--host", "0.0.0.0", "--port", str(port)]
    cmd += ["--db-dir", str(tmp_path), *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env or CLEAN_ENV, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        import httpx

        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 60, "serve on 0.0.0.0")
        return log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_insecure_flag_starts_and_warns(tmp_path: Path) -> None:
    text = _serve_and_read_warning(tmp_path, "--insecure-no-token")
    assert (
        "cggm: warning: serve listens on 0.0.0.0 with no token (--insecure-no-token or CGGM_INSECURE_NO_TOKEN=1)"
        in text
    )


def test_a_token_on_a_public_host_warns_that_reads_are_open(tmp_path: Path) -> None:
    text = _serve_and_read_warning(tmp_path, env={**CLEAN_ENV, "CGGM_TOKEN": "s3cret"})
    assert "its token guards writes only" in text and "--token-reads" in text
    text = _serve_and_read_warning(tmp_path, "--token-reads", env={**CLEAN_ENV, "CGGM_TOKEN": "s3cret"})
    assert "warning" not in text


@pytest.mark.slow
def test_token_reads_guards_reads_and_our_clients_still_work(
    make_server, workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    server = make_server(env={"CGGM_TOKEN": "s3cret", "CGGM_TOKEN_READS": "1"})
    with server.client() as anon, server.client(token="s3cret") as auth, server.client(token="wrong") as wrong:
        run_id = auth.post("/api/runs", json={"config": TINY_JOB}).json()["id"]
        for path in ("/api/runs", f"/api/runs/{run_id}", f"/api/runs/{run_id}/metrics", "/api/catalog", "/nope"):
            for client in (anon, wrong):
                r = client.get(path)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (path, r.status_code)
            assert auth.get(path).status_code == (404 if path == "/nope" else 200), path
        assert anon.post("/api/runs", json={"config": TINY_JOB}).status_code == 401
        # Left open: health checks and the (public) API docs.
        for path in ("/api/health", "/docs", "/openapi.json", "/docs/assets/swagger-ui.css"):
            assert anon.get(path).status_code == 200, path
        # A real worker (its BackendClient and HttpSink) trains the job through the guard.
        monkeypatch.setenv("CGGM_TOKEN", "s3cret")
        workers.append(start_worker(server.url, tmp_path / "worker.log", "--once"))
        wait_until(lambda: auth.get(f"/api/runs/{run_id}").json()["status"] == "finished", 120, "the job to finish")
        run = auth.get(f"/api/runs/{run_id}").json()
        series = auth.get(f"/api/runs/{run_id}/metrics").json()["series"]
        assert sum(len(s["steps"]) for s in series.values()) == run["summary"]["logged_points"] > 0
    # The dashboard's API client reads with its token.
    from dashboard.api import ApiClient

    client = ApiClient(server.url, token="s3cret")
    try:
        assert [r["id"] for r in client.list_runs()] == [run_id]
        assert client.get_run(run_id)["status"] == "finished"
    finally:
        client.close()
