"""HttpSink against a real backend (a `cggm serve` subprocess) through faults: refused batches,
batches that fail forever, corrupt and unwritable spools, a resend cut off half-way.

Faults the backend does not produce on demand come from a small real HTTP proxy in a thread
(tests/backend/fault_proxy.py) that forwards everything else. Points are counted exactly: what
was logged against what the backend stored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cggm_core.http_sink import HttpSink
from cggm_core.tracking import Point

from .conftest import ServerProcess, new_running_run, stored_count, wait_until
from .fault_proxy import DROP, fault_proxy

KEYS = ("loss", "acc/a", "acc/b", "coef/a", "coef/b")
BAD_KEY = "k" * 201  # longer than the backend's 200: refused today with a 422 naming the point


def points(first_step: int, last_step: int, keys: tuple[str, ...] = KEYS) -> list[Point]:
    now = time.time()
    return [Point(k, s, s * 0.001 + i, now) for s in range(first_step, last_step) for i, k in enumerate(keys)]


def spool_line(p: Point) -> str:
    return json.dumps({"key": p.key, "step": p.step, "value": p.value, "time": p.time})


@pytest.fixture
def backend(make_server: Callable[..., ServerProcess]) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    server = make_server()
    with server.client() as api:
        yield server, api


def sink_records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cggm_core.http_sink" and r.levelno == level and text in r.message]


def test_points_the_backend_refuses_for_good_are_dropped_and_later_ones_flow(
    backend: tuple[ServerProcess, httpx.Client], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, api = backend
    run_id = new_running_run(api)
    caplog.set_level(logging.INFO, logger="cggm_core.http_sink")
    sink = HttpSink(server.url, run_id, spool_dir=tmp_path / "spool")
    good = 0
    for step in range(2000):
        batch = points(step, step + 1)
        if step in (150, 900, 1700):  # three bad points, in three different batches of 1,000
            batch.append(Point(BAD_KEY, step, 1.0, time.time()))
        sink.log(batch)
        good += len(KEYS)
    report = sink.close()
    assert stored_count(api, run_id) == good == 10_000  # the good points of the refused batches too
    assert report.delivered == good and report.rejected == 3
    assert report.dead_lettered == report.left_in_spool == report.lost == 0
    # Logged once, not once per refused batch; and one line at close says what happened.
    assert len(sink_records(caplog, logging.WARNING, "refused")) == 1
    assert [r.message for r in caplog.records if "points delivered" in r.message] == [report.line()]
    assert "3 rejected" in report.line()


def test_a_batch_refused_forever_is_dead_lettered_and_later_points_flow(
    backend: tuple[ServerProcess, httpx.Client], tmp_path: Path
) -> None:
    server, api = backend
    run_id = new_running_run(api)
    with fault_proxy(server.url) as proxy:
        # A 500 for every batch holding the poisoned key (as PostgreSQL answered a NUL in a key).
        proxy.fault = lambda method, path, body: 500 if b"poison" in body else None
        sink = HttpSink(proxy.url, run_id, spool_dir=tmp_path / "spool", refused_retry_s=1.0, refused_attempts=3)
        sink.log(points(0, 20))  # 100 points
        sink.flush()
        poisoned = [*points(20, 40), Point("poison", 20, 1.0, time.time())]
        sink.log(poisoned)
        sink.flush()  # alone in its batch: retried, then set aside
        sink.log(points(40, 1040))  # 5,000 later points
        report = sink.close()
    assert stored_count(api, run_id) == 100 + 5_000
    assert report.dead_lettered == len(poisoned) == 101 and report.delivered == 5_100
    assert report.left_in_spool == report.rejected == report.lost == 0
    dead = [json.loads(line) for line in Path(str(report.dead_letter_path)).read_text().splitlines()]
    assert len(dead) == 1 and dead[0]["status"] == 500 and len(dead[0]["points"]) == 101
    tries = [p for p in proxy.posted if "poison" in p.keys]
    assert 3 <= len(tries) <= 12, "retried a bounded number of times"


def test_a_backend_that_is_down_never_dead_letters(backend: tuple[ServerProcess, httpx.Client], tmp_path: Path) -> None:
    """Down (no answer, or a gateway's 502/503/504) is the spool's job, however long it lasts."""
    server, api = backend
    run_id = new_running_run(api)
    with fault_proxy(server.url) as proxy:
        down_until = time.monotonic() + 3.0  # far longer than refused_retry_s below
        answers: Iterator[int | str] = iter([DROP, 503, 502, 504] * 1000)
        proxy.fault = lambda method, path, body: next(answers) if time.monotonic() < down_until else None
        sink = HttpSink(proxy.url, run_id, spool_dir=tmp_path / "spool", refused_retry_s=0.2, refused_attempts=1)
        for step in range(0, 600, 100):
            sink.log(points(step, step + 100))
            time.sleep(0.5)
        report = sink.close()
    assert stored_count(api, run_id) == 3_000 == report.delivered
    assert report.spooled > 0 and report.dead_lettered == 0 and report.left_in_spool == 0
    assert not list((tmp_path / "spool").rglob("*.dead.jsonl"))


def test_corrupt_spool_lines_are_skipped_and_counted(
    backend: tuple[ServerProcess, httpx.Client], tmp_path: Path
) -> None:
    """A spool left by a process killed mid-write: half a line inside, half a line at the end."""
    server, api = backend
    run_id = new_running_run(api)
    spool = tmp_path / "spool" / f"run-{run_id}.jsonl"
    spool.parent.mkdir(parents=True)
    left = points(0, 400)  # 2,000 points
    lines = [spool_line(p) for p in left]
    lines.insert(1234, lines[1234][:17])  # the tail of a killed writer, then the next process's points
    lines.insert(1500, "\x00\x00 not json")
    spool.write_text("\n".join(lines) + "\n" + spool_line(points(400, 401)[0])[:25])
    sink = HttpSink(server.url, run_id, spool_path=spool)
    sink.log(points(1000, 1200))  # 1,000 points logged after the start keep flowing
    report = sink.close()
    assert stored_count(api, run_id) == 2_000 + 1_000
    assert report.corrupt_skipped == 3 and report.delivered == 3_000 and report.left_in_spool == 0
    assert not spool.exists()


def test_an_unwritable_spool_folder_keeps_points_in_memory(
    backend: tuple[ServerProcess, httpx.Client], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tests run as root, so the folder is made unwritable by putting it under a regular file."""
    server, api = backend
    run_id = new_running_run(api)
    (tmp_path / "not-a-dir").write_text("a regular file")
    caplog.set_level(logging.WARNING, logger="cggm_core.http_sink")
    with fault_proxy(server.url) as proxy:
        proxy.fault = lambda method, path, body: DROP  # an outage from the start
        sink = HttpSink(proxy.url, run_id, spool_dir=tmp_path / "not-a-dir" / "spool")
        sink.log(points(0, 200))  # 1,000 points during the outage
        sink.flush()
        assert stored_count(api, run_id) == 0
        proxy.fault = lambda method, path, body: None  # the backend is back
        sink.log(points(200, 1200))  # 5,000 more
        report = sink.close()
    assert stored_count(api, run_id) == 6_000 == report.delivered
    assert report.spool_path is None and report.lost == 0 and report.spooled >= 1_000
    warnings = sink_records(caplog, logging.WARNING, "no spool can be written")
    assert len(warnings) == 1 and "not-a-dir" in warnings[0].message


def test_the_memory_buffer_is_bounded_and_says_what_it_lost(
    backend: tuple[ServerProcess, httpx.Client], tmp_path: Path
) -> None:
    server, api = backend
    run_id = new_running_run(api)
    (tmp_path / "f").write_text("")
    with fault_proxy(server.url) as proxy:
        proxy.fault = lambda method, path, body: DROP
        sink = HttpSink(proxy.url, run_id, spool_dir=tmp_path / "f" / "spool", max_memory_points=1_000)
        sink.log(points(0, 400))  # 2,000 points: 1,000 fit
        sink.flush()
        proxy.fault = lambda method, path, body: None
        report = sink.close()
    assert stored_count(api, run_id) == 1_000 == report.delivered
    assert report.lost == 1_000 and "1,000 LOST" in report.line()


def test_a_resend_cut_off_half_way_never_sends_acknowledged_batches_again(
    backend: tuple[ServerProcess, httpx.Client], tmp_path: Path
) -> None:
    """The backend answers two chunks of the spool, then is down again; a line of the spool is
    damaged meanwhile. What it acknowledged is not sent again (no duplicates), nothing is lost."""
    server, api = backend
    run_id = new_running_run(api)
    with fault_proxy(server.url) as proxy:
        state: dict[str, Any] = {"mode": "down", "answered": 0}
        lock = threading.Lock()

        def fault(method: str, path: str, body: bytes) -> int | str | None:
            with lock:
                if state["mode"] == "down":
                    return DROP
                if state["mode"] == "flaky":
                    if state["answered"] >= 2:
                        state["mode"] = "down"
                        return DROP
                    state["answered"] += 1
                return None

        proxy.fault = fault
        sink = HttpSink(proxy.url, run_id, spool_dir=tmp_path / "spool", max_backoff_s=0.5)
        sink.log(points(0, 1000))  # 5,000 points, all spooled
        sink.flush()
        with lock:
            state["mode"] = "flaky"
        wait_until(lambda: stored_count(api, run_id) == 2_000 and state["mode"] == "down", 60, "two chunks resent")
        with sink.spool_path.open("a") as f:  # damaged while the sink runs
            f.write('{"key": "loss", "st\n')
        sink.log(points(1000, 1200))  # 1,000 more, behind the damage
        sink.flush()
        with lock:
            state["mode"] = "up"
        report = sink.close()
    assert stored_count(api, run_id) == 6_000
    assert report.delivered == 6_000 and report.duplicates == 0 and report.corrupt_skipped == 1
    assert report.left_in_spool == 0 and not sink.spool_path.exists()


def test_a_later_process_resends_only_what_was_not_acknowledged(
    backend: tuple[ServerProcess, httpx.Client], tmp_path: Path
) -> None:
    server, api = backend
    run_id = new_running_run(api)
    spool = tmp_path / "spool" / f"run-{run_id}.jsonl"
    spool.parent.mkdir(parents=True)
    spool.write_text("".join(spool_line(p) + "\n" for p in points(0, 1000)))  # 5,000 points left earlier
    with fault_proxy(server.url) as proxy:
        answered = iter(range(1_000_000))
        proxy.fault = lambda method, path, body: None if next(answered) < 2 else DROP
        first = HttpSink(proxy.url, run_id, spool_path=spool, close_timeout_s=1.0)
        report = first.close()  # gives up: the backend went down after two chunks
    assert report.delivered == 2_000 and report.left_in_spool == 3_000 and spool.exists()
    assert stored_count(api, run_id) == 2_000
    second = HttpSink(server.url, run_id, spool_path=spool)
    report = second.close()
    assert report.delivered == 3_000 and report.duplicates == 0 and report.left_in_spool == 0
    assert stored_count(api, run_id) == 5_000 and not spool.exists()


def test_a_nul_in_a_key_on_postgresql_does_not_block_later_points(
    make_server: Callable[..., ServerProcess], pg_schema_url: str, tmp_path: Path
) -> None:
    """The issue's case: 0 of 5,001 points stored. PostgreSQL cannot store a NUL; whether the
    backend answers 500 (dead letter after the retries) or 422 (that point rejected), every
    other point arrives and each one is accounted for."""
    server = make_server(db_url=pg_schema_url)
    with server.client() as api:
        run_id = new_running_run(api)
        sink = HttpSink(server.url, run_id, spool_dir=tmp_path / "spool", refused_retry_s=1.0, refused_attempts=3)
        sink.log([Point("bad\x00key", 0, 1.0, time.time())])
        sink.log(points(0, 1000))  # 5,000 points
        report = sink.close()
        stored = stored_count(api, run_id)
    assert stored == report.delivered and stored + report.rejected + report.dead_lettered == 5_001
    assert stored >= 5_000 - 1_000 and report.left_in_spool == report.lost == 0
    # At most the batch that carried the NUL is set aside; every later batch arrived.
    assert report.dead_lettered <= 1_000
