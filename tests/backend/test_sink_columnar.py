"""HttpSink end to end with the columnar body, against a real `cggm serve` (through the recording
proxy of fault_proxy.py, which forwards everything): every logged point is stored as logged, a bad
point in a columnar batch is refused alone, and a backend that takes only rows still gets them."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cggm_core.http_sink import HttpSink
from cggm_core.tracking import Point

from .conftest import ServerProcess, new_running_run, stored_count
from .fault_proxy import fault_proxy

KEYS = ("loss", "acc/a", "coef/a")


@pytest.fixture
def backend(make_server: Callable[..., ServerProcess]) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    server = make_server()
    with server.client() as api:
        yield server, api


def _value(i: int, step: int) -> float:
    if step % 500 == 3:
        return math.nan
    if step == 777:
        return math.inf if i else -math.inf
    return step * 0.001 + i


def test_httpsink_posts_columns_and_every_point_is_stored_as_logged(
    backend: tuple[ServerProcess, httpx.Client], tmp_path: Path
) -> None:
    server, api = backend
    run_id = new_running_run(api)
    t0 = time.time()
    logged = [Point(k, s, _value(i, s), t0 + s) for s in range(2500) for i, k in enumerate(KEYS)]
    with fault_proxy(server.url) as proxy:
        sink = HttpSink(proxy.url, run_id, spool_dir=tmp_path / "spool", batch_size=1000)
        for s in range(0, 2500, 50):
            sink.log(logged[s * len(KEYS) : (s + 50) * len(KEYS)])
        report = sink.close()
    assert report.delivered == len(logged) == 7500 and report.complete
    posted = [p for p in proxy.posted if p.answer == 200]
    assert posted and {p.shape for p in posted} == {"columns"}
    assert sum(p.points for p in posted) == len(logged)
    series = api.get(f"/api/runs/{run_id}/metrics").json()["series"]
    for k in KEYS:
        want = [p for p in logged if p.key == k]
        assert series[k]["steps"] == [p.step for p in want]
        assert series[k]["times"] == [p.time for p in want]
        enc = {math.inf: "Infinity", -math.inf: "-Infinity"}
        assert series[k]["values"] == [("NaN" if v != v else enc.get(v, v)) for v in (p.value for p in want)], k


def test_a_bad_point_in_a_columnar_batch_is_refused_alone(
    backend: tuple[ServerProcess, httpx.Client], tmp_path: Path
) -> None:
    server, api = backend
    run_id = new_running_run(api)
    now = time.time()
    with fault_proxy(server.url) as proxy:
        sink = HttpSink(proxy.url, run_id, spool_dir=tmp_path / "spool")
        for s in range(600):
            batch = [Point(k, s, 1.0, now) for k in KEYS]
            if s == 123:
                batch.append(Point("k" * 201, s, 1.0, now))  # a key the backend refuses (422 naming the series)
            sink.log(batch)
        report = sink.close()
    assert report.rejected == 1 and report.delivered == 1800 and report.dead_lettered == 0
    assert stored_count(api, run_id) == 1800
    assert {p.shape for p in proxy.posted} == {"columns"}
    assert [p.answer for p in proxy.posted].count(422) == 1


def test_a_backend_that_takes_only_rows_gets_rows(backend: tuple[ServerProcess, httpx.Client], tmp_path: Path) -> None:
    server, api = backend
    run_id = new_running_run(api)
    # What a backend from before the columnar body answers to {"series": [...]}.
    old_answer = {
        "detail": [{"type": "missing", "loc": ["body", "points"], "msg": 'expected an object {"points": [...]}'}]
    }

    def rows_only(method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
        if method == "POST" and path.endswith("/metrics") and "points" not in json.loads(body):
            return 422, json.dumps(old_answer).encode()
        return None

    now = time.time()
    with fault_proxy(server.url) as proxy:
        proxy.fault = rows_only
        sink = HttpSink(proxy.url, run_id, spool_dir=tmp_path / "spool")
        for s in range(1500):
            sink.log([Point(k, s, 0.5, now) for k in KEYS])
        report = sink.close()
    assert report.delivered == 4500 and report.rejected == 0 and report.complete
    assert stored_count(api, run_id) == 4500
    shapes = [p.shape for p in proxy.posted]
    assert shapes[0] == "columns" and set(shapes[1:]) == {"rows"}  # asked once, then rows
