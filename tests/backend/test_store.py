"""Run store through the real API, on SQLite and (when CGGM_TEST_PG_URL is set) PostgreSQL."""

from __future__ import annotations

import math
import threading
import time

import httpx
import pytest

from .conftest import TINY_JOB, new_running_run, stored_count


def points(key: str, steps: range, value: float = 1.0) -> list[dict[str, object]]:
    return [{"key": key, "step": s, "value": value + s, "time": 1000.0 + s} for s in steps]


def test_duplicated_batch_is_counted_and_stored_once(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    batch = {"points": points("train/loss", range(50))}
    first = api.post(f"/api/runs/{run_id}/metrics", json=batch).json()
    again = api.post(f"/api/runs/{run_id}/metrics", json=batch).json()
    assert first == {"accepted": 50, "duplicates": 0}
    assert again == {"accepted": 0, "duplicates": 50}
    # Half old, half new; and a (key, step) repeated inside one batch counts once.
    mixed = points("train/loss", range(25, 75)) + [{"key": "train/loss", "step": 100, "value": 1.0}] * 2
    assert api.post(f"/api/runs/{run_id}/metrics", json={"points": mixed}).json() == {"accepted": 26, "duplicates": 26}
    assert stored_count(api, run_id) == 76
    series = api.get(f"/api/runs/{run_id}/metrics", params={"keys": "train/loss"}).json()["series"]["train/loss"]
    assert series["steps"] == [*range(75), 100]
    assert series["values"][:3] == [1.0, 2.0, 3.0]  # first write wins
    latest = api.get(f"/api/runs/{run_id}/latest").json()
    assert latest["train/loss"]["step"] == 100


def test_nan_and_infinities_round_trip(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    values = ["NaN", "Infinity", "-Infinity", 1.5, -0.0, 1e300]
    batch = [{"key": "coef/m0", "step": i, "value": v} for i, v in enumerate(values)]
    assert api.post(f"/api/runs/{run_id}/metrics", json={"points": batch}).json()["accepted"] == 6
    got = api.get(f"/api/runs/{run_id}/metrics").json()["series"]["coef/m0"]["values"]
    assert got == ["NaN", "Infinity", "-Infinity", 1.5, -0.0, 1e300]
    assert api.get(f"/api/runs/{run_id}/latest").json()["coef/m0"]["value"] == 1e300


def test_since_step_returns_only_newer_points(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    api.post(f"/api/runs/{run_id}/metrics", json={"points": points("a", range(10)) + points("b", range(5))})
    series = api.get(f"/api/runs/{run_id}/metrics", params={"keys": "a,b", "since_step": 6}).json()["series"]
    assert series["a"]["steps"] == [7, 8, 9]
    assert series["b"]["steps"] == []
    assert api.get(f"/api/runs/{run_id}/keys").json() == {"keys": ["a", "b"]}


def test_downsampling_keeps_extremes_first_and_last(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    n = 5000
    values = [math.sin(i / 50.0) for i in range(n)]
    values[1234], values[3777], values[2500] = 50.0, -40.0, "NaN"  # type: ignore[call-overload]
    batch = [{"key": "grad_norm/m0", "step": i, "value": v, "time": float(i)} for i, v in enumerate(values)]
    assert api.post(f"/api/runs/{run_id}/metrics", json={"points": batch}).json()["accepted"] == n
    s = api.get(f"/api/runs/{run_id}/metrics", params={"max_points": 100}).json()["series"]["grad_norm/m0"]
    assert 50 <= len(s["steps"]) <= 100
    assert s["steps"][0] == 0 and s["steps"][-1] == n - 1
    assert s["steps"] == sorted(s["steps"])
    assert 1234 in s["steps"] and 3777 in s["steps"]
    finite = [v for v in s["values"] if isinstance(v, float)]
    assert max(finite) == 50.0 and min(finite) == -40.0
    assert s["values"][s["steps"].index(n - 1)] == pytest.approx(math.sin((n - 1) / 50.0))
    assert all(s["times"][i] == float(step) for i, step in enumerate(s["steps"]))
    # Incremental + downsampled: still only newer points, still the last one.
    tail = api.get(f"/api/runs/{run_id}/metrics", params={"since_step": 4000, "max_points": 10}).json()
    steps = tail["series"]["grad_norm/m0"]["steps"]
    assert steps[0] == 4001 and steps[-1] == n - 1 and len(steps) <= 10


def test_claims_are_atomic_under_concurrency(api: httpx.Client, store_server) -> None:  # type: ignore[no-untyped-def]
    # Drain whatever earlier tests queued, then queue ten jobs and let four threads race for them.
    while api.post("/api/workers/claim", json={"worker": "drain"}).status_code == 200:
        pass
    queued = [api.post("/api/runs", json={"config": TINY_JOB}).json()["id"] for _ in range(10)]
    claimed: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        with store_server.client() as c:
            while True:
                r = c.post("/api/workers/claim", json={"worker": name})
                if r.status_code == 204:
                    return
                if r.status_code != 200:
                    errors.append(r.text)
                    return
                with lock:
                    claimed.append(r.json()["id"])

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(claimed) == sorted(queued)  # each exactly once
    run = api.get(f"/api/runs/{queued[0]}").json()
    assert run["status"] == "running" and run["worker"].startswith("w") and run["started_at"] is not None


def test_four_concurrent_writers_lose_nothing(api: httpx.Client, store_server) -> None:  # type: ignore[no-untyped-def]
    run_ids = [new_running_run(api) for _ in range(2)]
    batches, batch_size = 8, 1000
    errors: list[str] = []

    def writer(i: int) -> None:
        run_id = run_ids[i % 2]  # two writers per run, different keys
        with store_server.client() as c:
            for b in range(batches):
                steps = range(b * batch_size, (b + 1) * batch_size)
                r = c.post(f"/api/runs/{run_id}/metrics", json={"points": points(f"w{i}", steps)})
                if r.status_code != 200 or r.json() != {"accepted": batch_size, "duplicates": 0}:
                    errors.append(f"{r.status_code} {r.text[:200]}")

    started = time.perf_counter()
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert errors == []
    for run_id in run_ids:
        assert stored_count(api, run_id) == 2 * batches * batch_size
    print(f"4 writers: {4 * batches * batch_size / elapsed:,.0f} points/s")


def test_status_rules(api: httpx.Client) -> None:
    run_id = api.post("/api/runs", json={"config": TINY_JOB}).json()["id"]
    # queued: no metrics yet (409), stop makes it stopped at once, stopping again is a conflict
    assert api.post(f"/api/runs/{run_id}/metrics", json={"points": points("a", range(1))}).status_code == 409
    assert api.post(f"/api/runs/{run_id}/stop").json()["status"] == "stopped"
    assert api.post(f"/api/runs/{run_id}/stop").status_code == 409
    # running external run: stop → stopping, heartbeat says stop, finish, then writes are refused
    ext = new_running_run(api)
    assert api.post(f"/api/runs/{ext}/heartbeat").json() == {"stop": False, "status": "running"}
    assert api.post(f"/api/runs/{ext}/stop").json()["status"] == "stopping"
    assert api.post(f"/api/runs/{ext}/heartbeat").json() == {"stop": True, "status": "stopping"}
    assert api.post(f"/api/runs/{ext}/metrics", json={"points": points("a", range(3))}).json()["accepted"] == 3
    done = api.post(f"/api/runs/{ext}/finish", json={"status": "stopped", "summary": {"best": "NaN", "n": 3}})
    assert done.status_code == 200 and done.json()["summary"] == {"best": "NaN", "n": 3}
    assert api.post(f"/api/runs/{ext}/metrics", json={"points": points("a", range(3, 5))}).status_code == 409
    assert api.post(f"/api/runs/{ext}/stop").status_code == 409
    assert api.post(f"/api/runs/{ext}/finish", json={"status": "finished"}).status_code == 409
    assert stored_count(api, ext) == 3


def test_external_run_keeps_its_config_and_crud(api: httpx.Client) -> None:
    config = {"dataset": "my-own", "lr": 0.1, "anything": [1, 2]}
    r = api.post("/api/runs", json={"config": config, "external": True, "name": "mine", "tags": ["a"]})
    assert r.status_code == 201
    run = r.json()
    assert run["status"] == "running" and run["config"] == config and run["name"] == "mine"
    patched = api.patch(f"/api/runs/{run['id']}", json={"tags": ["b", "c"], "notes": "hello"}).json()
    assert patched["tags"] == ["b", "c"] and patched["notes"] == "hello" and patched["name"] == "mine"
    queued = api.post("/api/runs", json={"config": {"dataset": "synthetic", "method": "joint", "epochs": 3}}).json()
    assert queued["status"] == "queued" and queued["config"]["epochs"] == 3 and "lr" in queued["config"]
    page = api.get("/api/runs", params={"method": "joint", "status": "queued,running", "limit": 1}).json()
    assert page["count"] >= 1 and len(page["data"]) == 1 and page["data"][0]["method"] == "joint"
    assert api.delete(f"/api/runs/{run['id']}").status_code == 204
    assert api.get(f"/api/runs/{run['id']}").status_code == 404
    assert api.get(f"/api/runs/{run['id']}/metrics").status_code == 404


@pytest.mark.slow
def test_two_backend_processes_share_one_sqlite_file(make_server) -> None:  # type: ignore[no-untyped-def]
    """Writers on two server processes: the write lock is per process, so this exercises SQLite's own
    locking (WAL, BEGIN IMMEDIATE, busy_timeout): no 'database is locked', no lost point."""
    a = make_server()
    b = make_server()  # same tmp_path/cggm.db
    with a.client() as api:
        run_id = new_running_run(api)
    errors: list[str] = []

    def writer(i: int) -> None:
        with (a if i % 2 else b).client() as c:
            for n in range(6):
                r = c.post(
                    f"/api/runs/{run_id}/metrics", json={"points": points(f"p{i}", range(n * 500, (n + 1) * 500))}
                )
                if r.status_code != 200 or r.json()["accepted"] != 500:
                    errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with b.client() as api:
        assert stored_count(api, run_id) == 4 * 6 * 500


def test_downsampled_read_of_a_long_series_from_the_rollup(api: httpx.Client) -> None:
    """50,000 points sent out of order and partly twice: the rollup path keeps the global min and
    max, the first and last point, returns only real stored points, and stays under max_points."""
    run_id = new_running_run(api)
    n = 50_000
    values = [math.sin(i / 300.0) + 0.001 * (i % 7) for i in range(n)]
    values[31_337], values[7], values[44_444] = 9.5, -8.25, "NaN"  # type: ignore[call-overload]
    rows = [{"key": "coef/m0", "step": i, "value": v, "time": 1000.0 + i} for i, v in enumerate(values)]
    for start in (40_000, 30_000, 20_000, 10_000, 0):  # newest first: blocks are merged, not appended
        for i in range(start, start + 10_000, 5_000):
            assert api.post(f"/api/runs/{run_id}/metrics", json={"points": rows[i : i + 5_000]}).status_code == 200
    # A retried batch changes nothing, in the rollup too.
    assert api.post(f"/api/runs/{run_id}/metrics", json={"points": rows[31_000:32_000]}).json()["duplicates"] == 1000
    s = api.get(f"/api/runs/{run_id}/metrics", params={"max_points": 1500}).json()["series"]["coef/m0"]
    assert 700 <= len(s["steps"]) <= 1500
    assert s["steps"] == sorted(set(s["steps"]))
    assert s["steps"][0] == 0 and s["steps"][-1] == n - 1
    assert 31_337 in s["steps"] and 7 in s["steps"]
    finite = [v for v in s["values"] if isinstance(v, float)]
    assert max(finite) == 9.5 and min(finite) == -8.25
    for step, value, t in zip(s["steps"], s["values"], s["times"], strict=True):
        assert value == values[step] and t == 1000.0 + step  # real points, not bucket averages


def test_a_step_sent_again_with_another_value_leaves_the_rollup_as_the_series_is(api: httpx.Client) -> None:
    """The first value of a step wins (ON CONFLICT DO NOTHING); the rollup must agree. Before
    migration 0005's change, a re-send of steps with other values merged the *sent* extremes into
    the blocks, so a downsampled read showed a point (step 64, 99.0) that the series does not hold."""
    run_id = new_running_run(api)
    n = 6400
    rows = [{"key": "loss", "step": i, "value": math.cos(i / 100.0), "time": 1000.0 + i} for i in range(n)]
    for i in range(0, n, 1000):
        api.post(f"/api/runs/{run_id}/metrics", json={"points": rows[i : i + 1000]}).raise_for_status()
    other = [{**r, "value": 99.0 if r["step"] == 64 else -99.0} for r in rows[0:200]] + [
        {"key": "loss", "step": n, "value": 0.5, "time": 1000.0 + n}  # and one new step
    ]
    assert api.post(f"/api/runs/{run_id}/metrics", json={"points": other}).json() == {"accepted": 1, "duplicates": 200}
    # max_points below twice the 101 blocks: the read is served from the rollup, not the raw points
    s = api.get(f"/api/runs/{run_id}/metrics", params={"max_points": 150}).json()["series"]["loss"]
    assert len(s["steps"]) <= 150
    for step, value in zip(s["steps"], s["values"], strict=True):
        assert value == (0.5 if step == n else rows[step]["value"]), step  # only stored points
    assert max(s["values"]) == 1.0 and min(s["values"]) == pytest.approx(-1.0, abs=1e-3)


# -- issue 8, item 8: a key that is accepted can be fetched ---------------------------------------------------
def test_repeated_keys_parameters_are_taken_verbatim_and_the_comma_form_still_works(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    batch = points("acc/m0", range(3)) + points("acc/m1", range(2)) + points("val/acc", range(4))
    assert api.post(f"/api/runs/{run_id}/metrics", json={"points": batch}).json()["accepted"] == 9

    def fetch(params: object) -> dict[str, list[int]]:
        r = api.get(f"/api/runs/{run_id}/metrics", params=params)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        return {k: s["steps"] for k, s in r.json()["series"].items()}

    repeated = fetch([("keys", "val/acc"), ("keys", "acc/m0")])
    assert list(repeated) == ["val/acc", "acc/m0"] and repeated["acc/m0"] == [0, 1, 2]
    assert fetch({"keys": "acc/m1, val/acc"}) == {"acc/m1": [0, 1], "val/acc": [0, 1, 2, 3]}  # comma form
    # Repeated values are verbatim: "acc/m0,acc/m1" is one (unknown) key there, not two.
    assert fetch([("keys", "acc/m0,acc/m1"), ("keys", "val/acc")]) == {"acc/m0,acc/m1": [], "val/acc": [0, 1, 2, 3]}
    assert fetch([("keys", "acc/m0"), ("keys", "acc/m0")]) == {"acc/m0": [0, 1, 2]}  # asked twice, answered once
    # The same holds for downsampled and incremental reads.
    assert fetch([("keys", "acc/m1"), ("keys", "val/acc"), ("max_points", 4)]) == {
        "acc/m1": [0, 1],
        "val/acc": [0, 1, 2, 3],
    }
    assert fetch([("keys", "val/acc"), ("keys", "acc/m1"), ("since_step", 1)]) == {"val/acc": [2, 3], "acc/m1": []}
    for bad in ([("keys", "acc/m0"), ("keys", "")], [("keys", "a\x00")], [("keys", " , ")]):
        r = api.get(f"/api/runs/{run_id}/metrics", params=bad)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "keys"], (bad, r.text)


# -- issue 8, item 5: long full-resolution reads are streamed, the same JSON --------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def small_chunk_server(request: pytest.FixtureRequest, make_server):  # type: ignore[no-untyped-def]
    """A server that streams any read above 1,000 points (the default is 50,000), on each database."""
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_schema_url")
    return make_server(url, env={"CGGM_READ_CHUNK_POINTS": "1000"})


def test_long_reads_are_streamed_and_identical_to_a_plain_read(small_chunk_server) -> None:  # type: ignore[no-untyped-def]
    special = {17: "NaN", 1001: "Infinity", 2002: "-Infinity", 3003: -0.0, 4004: 1e300}
    expected: dict[str, dict[str, list[object]]] = {}
    batch: list[dict[str, object]] = []
    for key, n in (("k/big", 5500), ("k/mid", 2100), ("k/small", 10)):
        steps = list(range(0, 2 * n, 2))  # gaps, so that chunk boundaries are not step boundaries
        values = [special.get(i, float(i % 97) / 7.0) for i in range(n)]
        times = [1000.0 + 0.5 * i for i in range(n)]
        expected[key] = {"steps": steps, "values": values, "times": times}
        batch += [{"key": key, "step": s, "value": v, "time": t} for s, v, t in zip(steps, values, times, strict=True)]
    with small_chunk_server.client() as api:
        run_id = new_running_run(api)
        assert api.post(f"/api/runs/{run_id}/metrics", json={"points": batch}).json()["accepted"] == len(batch)

        whole = api.get(f"/api/runs/{run_id}/metrics")
        assert whole.headers.get("transfer-encoding") == "chunked" and "content-length" not in whole.headers
        assert whole.json() == {"series": {k: expected[k] for k in sorted(expected)}}

        since = api.get(
            f"/api/runs/{run_id}/metrics", params=[("keys", "k/small"), ("keys", "k/big"), ("since_step", 9)]
        )
        tail = {k: [s for s in expected[k]["steps"] if s > 9] for k in ("k/small", "k/big")}  # type: ignore[operator]
        assert {k: s["steps"] for k, s in since.json()["series"].items()} == tail
        assert list(since.json()["series"]) == ["k/small", "k/big"]

        small = api.get(f"/api/runs/{run_id}/metrics", params={"keys": "k/small"})
        assert "content-length" in small.headers and small.json()["series"]["k/small"] == expected["k/small"]

        down = api.get(f"/api/runs/{run_id}/metrics", params={"max_points": 100}).json()["series"]
        assert set(down) == set(expected)
        for key, s in down.items():
            assert len(s["steps"]) <= 100 and s["steps"][0] == 0 and s["steps"][-1] == expected[key]["steps"][-1]
            finite = [v for v in s["values"] if isinstance(v, float)]
            assert max(finite) == max(v for v in expected[key]["values"] if isinstance(v, float))
        assert 8008 in down["k/big"]["steps"]  # the 1e300 at index 4004
