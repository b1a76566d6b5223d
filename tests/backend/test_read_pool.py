"""Full reads in a helper process while metrics stream in (backend/read_pool.py).

Real helper processes (spawned) on a real SQLite file: what a helper answers is byte for byte what
the server reads itself, a helper that dies costs one read its speed and nothing else, and a
real `cggm serve` hands its reads to its helper while batches arrive and answers as a server
without helpers does. No mock: the helper is found and watched through /proc.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.db import Database
from backend.read_pool import Pieces, ReadPool, ReadRequest, reachable_from_another_process
from backend.routers.metrics import downsampled_pieces, read_pieces
from backend.schemas.metrics import SeriesIn
from backend.store import metrics as metric_store
from backend.store import runs as run_store

from .conftest import REPO, free_port, new_running_run


def _wait(predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _filled_db(path: Path) -> tuple[Database, int]:
    db = Database(f"sqlite:///{path}")
    db.migrate()
    with db.write() as session:
        run = run_store.create_run(session, name="r", config={}, tags=[], notes="", external=True)
    steps = list(range(0, 3000, 3))
    values = [None if s % 97 == 0 else (math.inf if s == 300 else s * 0.1) for s in steps]  # None: NaN
    series = [SeriesIn("loss", steps, values, [1000.0 + s for s in steps]), SeriesIn("acc/m0", [5], [0.5], [1.0])]
    with db.write_connection() as conn:
        metric_store.ingest_series(conn, run_id=run.id, series=series)
    return db, run.id


def _not_here() -> Pieces | None:
    raise AssertionError("the server read it itself; a helper should have")


def test_a_helper_answers_what_the_server_would_and_a_dead_one_costs_nothing(tmp_path: Path) -> None:
    db, run_id = _filled_db(tmp_path / "h.db")
    pool = ReadPool(str(db.engine.url), processes=1, busy_s=60.0)
    try:
        # No batch yet: no helper, the server reads.
        assert pool.read(ReadRequest(run_id, ["loss"], max_rows=50_000), lambda: {"here": (0, b"")}) == {
            "here": (0, b"")
        }
        pool.note_write()
        _wait(lambda: pool._ready, 60, "the helper to start")
        for keys in (["loss"], ["acc/m0", "loss", "never"], None):
            want = read_pieces(db, run_id=run_id, keys=keys, max_rows=50_000)
            assert pool.read(ReadRequest(run_id, keys, max_rows=50_000), _not_here) == want
        assert (
            pool.read(ReadRequest(run_id, None, max_rows=100), _not_here) is None
        )  # too long for one piece: streamed instead
        # The run page's read: each key downsampled (after since_step too).
        for since in (None, 1500):
            req = ReadRequest(run_id, ["loss", "acc/m0", "never"], since_step=since, max_points=50)
            want_ds = downsampled_pieces(db, run_id=run_id, keys=req.keys or [], since_step=since, max_points=50)
            assert pool.read(req, _not_here) == want_ds
            assert 0 < want_ds["loss"][0] <= 50 and want_ds["never"][0] == 0
        assert pool.served == 6
        # Every helper busy (its one slot taken): the read is the server's rather than wait in line.
        pool._in_flight = 1
        assert pool.read(ReadRequest(run_id, ["loss"], max_rows=50_000), lambda: {"here": (0, b"")}) == {
            "here": (0, b"")
        }
        pool._in_flight = 0
        assert (pool.overflows, pool.served) == (1, 6)

        # The helper is killed: that read is the server's, right and whole; the next batch starts another.
        (pid,) = pool.helper_pids()
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _alive(pid), 10, "the kill")
        want = read_pieces(db, run_id=run_id, keys=["loss"], max_rows=50_000)
        here = []
        got = pool.read(ReadRequest(run_id, ["loss"], max_rows=50_000), lambda: here.append(1) or want)
        assert got == want and here == [1] and pool.fallbacks == 1
        pool.note_write()
        _wait(lambda: pool._ready, 60, "a new helper")
        assert pool.helper_pids() != [pid]
        assert pool.read(ReadRequest(run_id, ["loss"], max_rows=50_000), _not_here) == want
    finally:
        pool.close()
        db.dispose()


def test_with_no_batch_for_a_while_the_server_reads_itself(tmp_path: Path) -> None:
    db, run_id = _filled_db(tmp_path / "q.db")
    pool = ReadPool(str(db.engine.url), processes=1, busy_s=0.3)
    try:
        pool.note_write()
        _wait(lambda: pool._ready, 60, "the helper to start")
        pool.note_write()
        assert pool.read(ReadRequest(run_id, ["loss"], max_rows=50_000), _not_here) is not None
        time.sleep(0.5)  # past busy_s: the hop to a helper would only cost time
        assert pool.read(ReadRequest(run_id, ["loss"], max_rows=50_000), lambda: {"here": (0, b"")}) == {
            "here": (0, b"")
        }
    finally:
        pool.close()
        db.dispose()


def _helpers_of(pid: int) -> list[int]:
    """The server's pool processes (multiprocessing's spawn_main children), from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
        if ppid == pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(int(entry.name))
    return out


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.timeout(180)
def test_a_server_reads_in_its_helper_while_batches_arrive_and_answers_as_one_without(  # type: ignore[no-untyped-def]
    make_server, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    helped = make_server(url, env={"CGGM_READ_PROCESSES": "1", "CGGM_READ_CACHE_MB": "0"})
    plain = make_server(url, env={"CGGM_READ_PROCESSES": "0", "CGGM_READ_CACHE_MB": "0"})
    assert helped.proc is not None and plain.proc is not None
    assert _helpers_of(plain.proc.pid) == []
    with helped.client() as a, plain.client() as b:
        run_id = new_running_run(a)

        def post(step0: int) -> None:
            steps = list(range(step0, step0 + 500))
            body = {"series": [{"key": "loss", "steps": steps, "values": [s * 0.5 for s in steps]}]}
            a.post(f"/api/runs/{run_id}/metrics", json=body).raise_for_status()

        post(0)
        (helper,) = _wait(lambda: _helpers_of(helped.proc.pid), 60, "the server's read helper")  # type: ignore[union-attr]
        _wait(lambda: _settled(helper), 60, "the helper to finish starting")
        before = _cpu_ticks(helper)
        params = {"keys": "loss"}
        for i in range(1, 30):
            post(i * 500)
            got = a.get(f"/api/runs/{run_id}/metrics", params=params)
            assert got.status_code == 200
            assert got.content == b.get(f"/api/runs/{run_id}/metrics", params=params).content
            assert len(got.json()["series"]["loss"]["steps"]) == (i + 1) * 500
        assert _cpu_ticks(helper) > before  # the helper did the reads (it does nothing else)
        # The run page's read (each key downsampled), also in the helper.
        before = _cpu_ticks(helper)
        page = {"keys": "loss,never", "max_points": "300"}
        for i in range(30, 45):
            post(i * 500)
            got = a.get(f"/api/runs/{run_id}/metrics", params=page)
            assert got.status_code == 200
            assert got.content == b.get(f"/api/runs/{run_id}/metrics", params=page).content
            assert 0 < len(got.json()["series"]["loss"]["steps"]) <= 300
        assert _cpu_ticks(helper) > before
        assert _helpers_of(plain.proc.pid) == []

        # Its helper killed, the server still answers every read, and rightly; a new one starts.
        os.kill(helper, signal.SIGKILL)
        for i in range(45, 50):
            post(i * 500)
            got = a.get(f"/api/runs/{run_id}/metrics", params=params)
            assert got.status_code == 200
            assert got.content == b.get(f"/api/runs/{run_id}/metrics", params=params).content

        def new_helpers() -> list[int]:
            post(0)  # a batch (all known steps) starts the helpers again
            return [p for p in _helpers_of(helped.proc.pid) if p != helper]  # type: ignore[union-attr]

        (second,) = _wait(new_helpers, 60, "a new helper")
    helped.stop()
    _wait(lambda: not _alive(second), 20, "the helper to stop with the server")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _settled(pid: int) -> bool:
    """Its start-up (imports, engine) done: its CPU time stops growing."""
    first = _cpu_ticks(pid)
    time.sleep(0.3)
    return _cpu_ticks(pid) == first


@pytest.mark.parametrize("when", ["starting", "started"])
def test_a_killed_servers_helper_leaves_with_it(make_server, tmp_path: Path, when: str) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL gives the server no chance to stop its helper: the helper sees it is orphaned and
    exits, also when the server died while the helper was still starting."""
    server = make_server(env={"CGGM_READ_PROCESSES": "1"})
    assert server.proc is not None
    pid = server.proc.pid
    with server.client() as api:
        run_id = new_running_run(api)
        body = {"series": [{"key": "loss", "steps": [1, 2], "values": [0.5, 0.25]}]}
        api.post(f"/api/runs/{run_id}/metrics", json=body).raise_for_status()
    (helper,) = _wait(lambda: _helpers_of(pid), 60, "the server's read helper")
    if when == "started":
        _wait(lambda: _settled(helper), 60, "the helper to finish starting")
    server.kill()
    _wait(lambda: not _alive(helper), 20, "the orphaned helper to exit")


@pytest.mark.parametrize(
    ("url", "shared"),
    [
        ("sqlite://", False),
        ("sqlite:///:memory:", False),
        ("sqlite:///file:db?mode=memory&uri=true", False),
        ("sqlite:////tmp/cggm.db", True),
        ("postgresql+psycopg://u:p@127.0.0.1/cggm", True),
    ],
)
def test_no_helper_for_a_database_only_the_server_can_see(url: str, shared: bool) -> None:
    assert reachable_from_another_process(url) is shared


def test_by_default_a_sqlite_server_has_a_helper_and_a_postgresql_one_none(  # type: ignore[no-untyped-def]
    make_server, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the helper made reads under ingest slower (BENCHMARKS §3.0e): off unless asked for."""
    monkeypatch.delenv("CGGM_READ_PROCESSES", raising=False)
    for url, want in ((None, 1), (pg_schema_url, 0)):
        server = make_server(url)
        assert server.proc is not None
        pid = server.proc.pid
        with server.client() as api:
            run_id = new_running_run(api)
            for step in range(3):
                body = {"series": [{"key": "loss", "steps": [step], "values": [0.5]}]}
                api.post(f"/api/runs/{run_id}/metrics", json=body).raise_for_status()
                time.sleep(0.5)
            if want:
                _wait(lambda: _helpers_of(pid), 60, "the helper")  # noqa: B023 (called at once)
            else:
                time.sleep(2.0)  # a helper, were there one, would be up by now
                assert _helpers_of(pid) == []
        server.stop()


def test_ctrl_c_stops_serve_and_its_helper_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole foreground group: the helper ignores it and the server stops it."""
    port = free_port()
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "cggm_core", "serve", "--port", str(port), "--db", f"sqlite:///{tmp_path / 'c.db'}"]
    env = {**os.environ, "CGGM_READ_PROCESSES": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: _answers(f"{url}/api/health"), 60, "the server")
        with httpx.Client(base_url=url, timeout=30) as api:
            run_id = new_running_run(api)
            body = {"series": [{"key": "loss", "steps": [1, 2], "values": [0.5, 0.25]}]}
            api.post(f"/api/runs/{run_id}/metrics", json=body).raise_for_status()
        (helper,) = _wait(lambda: _helpers_of(proc.pid), 60, "the helper")
        _wait(lambda: _settled(helper), 60, "the helper to finish starting")
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert not _alive(helper)
        text = log.read_text()
        assert "Application shutdown complete" in text and "Traceback" not in text, text
    finally:
        if proc.poll() is None:
            proc.kill()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
