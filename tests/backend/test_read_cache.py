"""The series read cache (backend/read_cache.py): kept pieces are used only while a series is
unchanged, so an answer is byte for byte what an uncached server answers, at every moment."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from backend.db import Database
from backend.read_cache import SeriesCache
from backend.routers.metrics import _cached_series_json, _series_json
from backend.schemas.metrics import SeriesIn
from backend.store import metrics as metric_store
from backend.store import runs as run_store

from .conftest import new_running_run


def _post(api: httpx.Client, run_id: int, key: str, steps: range, value: float = 0.0) -> None:
    body = {"series": [{"key": key, "steps": list(steps), "values": [value + s for s in steps]}]}
    api.post(f"/api/runs/{run_id}/metrics", json=body).raise_for_status()


def test_answers_match_an_uncached_server_as_series_grow_across_processes(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two servers on one SQLite file, one without the cache. Reads through the cached one stay
    identical to the uncached one's while points arrive (through either process), while a step is
    re-sent, and for keys with no points."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    cached = make_server(url)
    plain = make_server(url, env={"CGGM_READ_CACHE_MB": "0"})
    with cached.client() as a, plain.client() as b:
        run_id = new_running_run(a)
        _post(a, run_id, "loss", range(0, 500))
        _post(a, run_id, "acc", range(0, 300))
        params = {"keys": "loss,acc,never"}

        def same() -> bytes:
            first = a.get(f"/api/runs/{run_id}/metrics", params=params).content
            again = a.get(f"/api/runs/{run_id}/metrics", params=params).content  # from the cache
            assert first == again == b.get(f"/api/runs/{run_id}/metrics", params=params).content
            return first

        before = same()
        _post(b, run_id, "loss", range(500, 501))  # the other process writes: the count changes
        grown = same()
        assert grown != before and b"500" in grown
        _post(a, run_id, "loss", range(0, 10), value=99.0)  # re-sent steps keep their first values
        assert same() == grown
        _post(a, run_id, "never", range(0, 1))  # a key that had no points gets one
        assert b'"never":{"steps":[0]' in same()


def test_a_new_run_that_reuses_a_deleted_runs_id_is_not_answered_from_the_cache(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server()
    with server.client() as api:
        new_running_run(api)
        old = new_running_run(api)  # the highest id: SQLite gives it out again once it is deleted
        _post(api, old, "loss", range(100), value=1.0)
        first = api.get(f"/api/runs/{old}/metrics", params={"keys": "loss"}).json()
        assert api.delete(f"/api/runs/{old}").status_code == 204
        time.sleep(0.01)
        new = new_running_run(api)
        assert new == old  # the reuse this test is about
        _post(api, new, "loss", range(100), value=2.0)  # as many points, other values
        got = api.get(f"/api/runs/{new}/metrics", params={"keys": "loss"}).json()
        assert got["series"]["loss"]["values"][0] == 2.0 != first["series"]["loss"]["values"][0]


def test_the_cache_is_used_and_stays_within_its_bytes(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    with db.write() as session:
        run = run_store.create_run(session, name="r", config={}, tags=[], notes="", external=True)
    with db.write_connection() as conn:
        steps = list(range(1000))
        series = [SeriesIn(f"k{i}", steps, [float(s) for s in steps], [1.0] * 1000) for i in range(8)]
        metric_store.ingest_series(conn, run_id=run.id, series=series)
    cache = SeriesCache(max_bytes=80_000)  # room for ~4 of the 8 series (~20 KB each)

    def read(keys: list[str]) -> bytes:
        parts = _cached_series_json(db, cache, run_id=run.id, created_at=run.created_at, keys=keys, chunk=50_000)
        assert parts is not None
        got = b"".join(parts)
        plain = _series_json(db, run_id=run.id, keys=keys, since_step=None, max_points=None, chunk=50_000)
        assert got == b"".join(plain)
        return got

    read(["k0", "k1"])
    assert (cache.hits, cache.misses) == (0, 2)
    read(["k1", "k0"])
    assert (cache.hits, cache.misses) == (2, 2)
    read([f"k{i}" for i in range(8)])
    assert cache.size_bytes <= 80_000
    # A read longer than one piece is left to the streamed path.
    parts = _cached_series_json(db, cache, run_id=run.id, created_at=run.created_at, keys=["k0", "k1"], chunk=1500)
    assert parts is None
    db.dispose()
