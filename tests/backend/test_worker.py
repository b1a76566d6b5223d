"""Real `cggm worker` processes against a real server: train, stop, lose, survive a backend restart."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import TINY_JOB, ServerProcess, start_worker, stored_count, wait_until

HEARTBEAT_S = 0.5


def run_of(client: httpx.Client, run_id: int) -> dict[str, Any]:
    r = client.get(f"/api/runs/{run_id}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def queue(client: httpx.Client, **overrides: Any) -> int:
    r = client.post("/api/runs", json={"config": {**TINY_JOB, **overrides}})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def spool_args(tmp_path: Path) -> list[str]:
    return ["--spool-dir", str(tmp_path / "spool")]  # never the user's own spool folder


def per_modality_keys(modalities: list[str]) -> set[str]:
    keys = {"train/loss", "train/acc", "loss/gm", "imbalance/acc_gap", "imbalance/grad_ratio", "val/acc", "val/loss"}
    for m in modalities:
        keys |= {
            f"{k}/{m}"
            for k in ("acc", "grad_norm", "grad_norm_mod", "coef", "cos", "val/acc", "val/contrib", "probe/acc")
        }
    return keys


@pytest.mark.slow
def test_worker_trains_a_queued_job(
    make_server: Callable[..., ServerProcess], workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    server = make_server()
    with server.client() as api:
        run_id = queue(api)
        workers.append(
            start_worker(
                server.url,
                tmp_path / "worker.log",
                "--once",
                "--name",
                "w-test",
                "--spool-dir",
                str(tmp_path / "spool"),
            )
        )
        run = wait_until(
            lambda: (r := run_of(api, run_id))["status"] in ("finished", "failed") and r, 60, "the run to end"
        )
        assert run["status"] == "finished", run["error"]
        assert run["worker"] == "w-test"
        assert workers[0].wait(timeout=30) == 0  # --once: exits after its job
        summary = run["summary"]
        assert summary["epochs_done"] == 2 and summary["steps"] == 8  # 256 samples / batch 64 × 2 epochs
        delivery = summary["delivery"]
        assert delivery["delivered"] == summary["logged_points"] and delivery["run_id"] == run_id
        for count in ("duplicates", "rejected", "dead_lettered", "left_in_spool", "corrupt_skipped", "lost", "spooled"):
            assert delivery[count] == 0, (count, delivery)
        assert not any((tmp_path / "spool").rglob("run-*")), "a delivered run leaves no spool files"
        keys = set(api.get(f"/api/runs/{run_id}/keys").json()["keys"])
        assert per_modality_keys(summary["modalities"]) <= keys
        assert stored_count(api, run_id) == summary["logged_points"]
        coef = api.get(f"/api/runs/{run_id}/metrics", params={"keys": "coef/m0"}).json()["series"]["coef/m0"]
        assert len(coef["steps"]) == 8 and coef["steps"] == list(range(coef["steps"][0], coef["steps"][0] + 8))


@pytest.mark.slow
def test_stop_mid_run(
    make_server: Callable[..., ServerProcess], workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    server = make_server()
    with server.client() as api:
        run_id = queue(api, epochs=2000)  # far longer than the test
        workers.append(
            start_worker(server.url, tmp_path / "worker.log", *spool_args(tmp_path), heartbeat_s=HEARTBEAT_S)
        )
        wait_until(lambda: stored_count(api, run_id) > 50, 60, "the first metrics")
        requested = time.monotonic()
        assert api.post(f"/api/runs/{run_id}/stop").json()["status"] == "stopping"
        # The worker sees the stop at its next heartbeat, then evaluates and reports.
        run = wait_until(lambda: (r := run_of(api, run_id))["status"] == "stopped" and r, 30, "the run to stop")
        took = time.monotonic() - requested
        assert run["summary"]["status"] == "stopped" and run["summary"]["epochs_done"] < 2000
        # Training stopped within two heartbeats of the request: few steps after it.
        last_step = max(max(s["steps"]) for s in api.get(f"/api/runs/{run_id}/metrics").json()["series"].values())
        assert last_step == run["summary"]["steps"]
        assert took < 2 * HEARTBEAT_S + 10, f"stop took {took:.1f} s"
        assert stored_count(api, run_id) == run["summary"]["logged_points"]
        assert workers[0].poll() is None  # the worker goes on serving the queue


@pytest.mark.slow
def test_killed_worker_makes_the_run_lost(
    make_server: Callable[..., ServerProcess], workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    server = make_server(env={"CGGM_HEARTBEAT_TIMEOUT_S": "2"})
    with server.client() as api:
        run_id = queue(api, epochs=2000)
        workers.append(
            start_worker(server.url, tmp_path / "worker.log", *spool_args(tmp_path), heartbeat_s=HEARTBEAT_S)
        )
        wait_until(lambda: stored_count(api, run_id) > 0, 60, "the first metrics")
        time.sleep(2.5)  # longer than the timeout: a live worker keeps the run running (the assertion below)
        assert run_of(api, run_id)["status"] == "running"
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        run = wait_until(lambda: (r := run_of(api, run_id))["status"] == "lost" and r, 15, "the run to become lost")
        assert run["ended_at"] is None
        events = [e["message"] for e in api.get(f"/api/runs/{run_id}/events").json()["data"]]
        assert any(m.startswith("lost") for m in events)
        # A lost run can be stopped (no worker to wait for).
        assert api.post(f"/api/runs/{run_id}/stop").json()["status"] == "stopped"


@pytest.mark.slow
def test_sigterm_finishes_the_run_as_stopped(
    make_server: Callable[..., ServerProcess], workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    server = make_server()
    with server.client() as api:
        run_id = queue(api, epochs=2000)
        workers.append(start_worker(server.url, tmp_path / "worker.log", *spool_args(tmp_path)))
        wait_until(lambda: stored_count(api, run_id) > 0, 60, "the first metrics")
        workers[0].send_signal(signal.SIGTERM)
        assert workers[0].wait(timeout=30) == 0
        run = run_of(api, run_id)
        assert run["status"] == "stopped"
        assert stored_count(api, run_id) == run["summary"]["logged_points"]


@pytest.mark.slow
def test_backend_restart_mid_run_loses_nothing(
    make_server: Callable[..., ServerProcess], workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    server = make_server()
    with server.client() as api:
        run_id = queue(api, epochs=40)
        workers.append(start_worker(server.url, tmp_path / "worker.log", "--once", *spool_args(tmp_path)))
        wait_until(lambda: stored_count(api, run_id) > 100, 60, "the first metrics")
        assert run_of(api, run_id)["status"] == "running"
    server.kill()
    time.sleep(2.0)  # downtime while the worker keeps training (not an assertion)
    server.start()
    with server.client() as api:
        run = wait_until(
            lambda: (r := run_of(api, run_id))["status"] in ("finished", "failed") and r, 120, "the run to end"
        )
        assert run["status"] == "finished", run["error"]
        delivery = run["summary"]["delivery"]
        assert delivery["spooled"] > 0, "the backend was down: some points must have gone through the spool"
        assert delivery["left_in_spool"] == 0 and delivery["rejected"] == 0 and delivery["dead_lettered"] == 0
        assert stored_count(api, run_id) == run["summary"]["logged_points"]


@pytest.mark.slow
def test_a_job_that_fails_reports_the_error_and_the_worker_goes_on(
    make_server: Callable[..., ServerProcess], workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    import sqlite3

    server = make_server()
    with server.client() as api:
        bad_id = queue(api)
        # A stored config from another version that no longer resolves (the API would refuse it).
        with sqlite3.connect(tmp_path / "cggm.db") as conn:
            conn.execute(
                "UPDATE runs SET config = ? WHERE id = ?", ('{"dataset": "synthetic", "method": "gone"}', bad_id)
            )
        good_id = queue(api)
        workers.append(start_worker(server.url, tmp_path / "worker.log", *spool_args(tmp_path)))
        bad = wait_until(lambda: (r := run_of(api, bad_id))["status"] == "failed" and r, 60, "the bad run to fail")
        assert bad["error"].startswith("SettingError: unknown method 'gone'") and "Traceback" in bad["error"]
        good = wait_until(lambda: (r := run_of(api, good_id))["status"] == "finished" and r, 60, "the next run")
        assert stored_count(api, good_id) == good["summary"]["logged_points"]
