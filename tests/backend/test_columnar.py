"""The columnar ingest body `{"series": [{key, steps, values, times?}]}` through the real API, on
SQLite and (when CGGM_TEST_PG_URL is set) PostgreSQL: stored exactly like the row body, idempotent
on retry, and refused (422 naming the field, nothing stored) where the row body would be."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from .conftest import new_running_run, stored_count

N = 3000  # 47 rollup blocks: a read with max_points=40 comes from the rollup, not the raw points


def _value(key: int, step: int) -> float | str:
    if step % 401 == 7:
        return "NaN"
    if step == 1999:
        return "Infinity" if key else "-Infinity"
    return math.sin(step / (30.0 + key)) * (key + 1)


def _rows(keys: int) -> list[dict[str, Any]]:
    return [
        {"key": f"k{k}/m", "step": s, "value": _value(k, s), "time": 5000.0 + s * 0.25}
        for s in range(N)
        for k in range(keys)
    ]


def _columns(keys: int) -> list[dict[str, Any]]:
    return [
        {
            "key": f"k{k}/m",
            "steps": list(range(N)),
            "values": [_value(k, s) for s in range(N)],
            "times": [5000.0 + s * 0.25 for s in range(N)],
        }
        for k in range(keys)
    ]


def _post(api: httpx.Client, run_id: int, body: dict[str, Any]) -> httpx.Response:
    return api.post(f"/api/runs/{run_id}/metrics", json=body)


def _everything(api: httpx.Client, run_id: int) -> dict[str, Any]:
    return {
        "full": api.get(f"/api/runs/{run_id}/metrics").json(),
        "since": api.get(f"/api/runs/{run_id}/metrics", params={"since_step": 2500}).json(),
        "rollup": api.get(f"/api/runs/{run_id}/metrics", params={"max_points": 40}).json(),
        "raw_downsampled": api.get(f"/api/runs/{run_id}/metrics", params={"max_points": 4000}).json(),
        "latest": api.get(f"/api/runs/{run_id}/latest").json(),
        "keys": api.get(f"/api/runs/{run_id}/keys").json(),
    }


def test_columnar_body_is_stored_exactly_like_rows(api: httpx.Client) -> None:
    keys = 3
    by_rows, by_columns = new_running_run(api), new_running_run(api)
    rows, cols = _rows(keys), _columns(keys)
    for i in range(0, len(rows), 3000):
        assert _post(api, by_rows, {"points": rows[i : i + 3000]}).status_code == 200
    # columns in slices of 1,000 steps, the keys of a slice in one request
    for s0 in range(0, N, 1000):
        part = [{f: (c[f][s0 : s0 + 1000] if f != "key" else c[f]) for f in c} for c in cols]
        r = _post(api, by_columns, {"series": part})
        assert r.json() == {"accepted": keys * 1000, "duplicates": 0}, r.text
    want, got = _everything(api, by_rows), _everything(api, by_columns)
    assert got == want
    # and it is what was sent (not two identical wrong answers)
    k0 = got["full"]["series"]["k0/m"]
    assert k0["steps"] == list(range(N))
    assert k0["values"][7] == "NaN" and k0["values"][1999] == "-Infinity" and k0["values"][3] == _value(0, 3)
    assert k0["times"][10] == 5002.5
    assert got["latest"]["k1/m"] == {"step": N - 1, "value": _value(1, N - 1), "time": 5000.0 + (N - 1) * 0.25}
    rollup = got["rollup"]["series"]["k2/m"]
    assert len(rollup["steps"]) <= 40 and max(v for v in rollup["values"] if not isinstance(v, str)) > 2.9


def test_rows_and_columns_in_one_body_and_a_key_split_over_entries(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    body = {
        "points": [{"key": "a", "step": 0, "value": 1.0, "time": 10.0}],
        "series": [
            {"key": "a", "steps": [2, 1], "values": [3, 2.0], "times": [12.0, 11.0]},  # any order; ints are numbers
            {"key": "b", "steps": [5], "values": ["NaN"]},  # no times: received now
            {"key": "a", "steps": [1, 3], "values": [99.0, 4.0], "times": [None, 13.0]},  # step 1 again: first wins
            {"key": "c", "steps": [], "values": [], "times": []},
        ],
    }
    r = _post(api, run_id, body)
    assert r.json() == {"accepted": 5, "duplicates": 1}, r.text
    series = api.get(f"/api/runs/{run_id}/metrics").json()["series"]
    assert series["a"] == {"steps": [0, 1, 2, 3], "values": [1.0, 2.0, 3.0, 4.0], "times": [10.0, 11.0, 12.0, 13.0]}
    assert series["b"]["values"] == ["NaN"] and series["b"]["times"][0] > 1e9
    assert set(series) == {"a", "b"}


def test_a_retried_columnar_batch_is_stored_once(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    batch = {"series": [{"key": "loss", "steps": list(range(500)), "values": [s * 0.5 for s in range(500)]}]}
    assert _post(api, run_id, batch).json() == {"accepted": 500, "duplicates": 0}
    assert _post(api, run_id, batch).json() == {"accepted": 0, "duplicates": 500}
    overlap = {"series": [{"key": "loss", "steps": list(range(400, 700)), "values": [-1.0] * 300}]}
    assert _post(api, run_id, overlap).json() == {"accepted": 200, "duplicates": 100}
    got = api.get(f"/api/runs/{run_id}/metrics", params={"keys": "loss"}).json()["series"]["loss"]
    assert got["steps"] == list(range(700))
    assert got["values"][499] == 249.5 and got["values"][500] == -1.0  # the first write of step 499 stays
    assert stored_count(api, run_id) == 700


GOOD: dict[str, Any] = {"key": "acc/m0", "steps": [0, 1, 2], "values": [0.5, 0.6, 0.7], "times": [1.0, 2.0, 3.0]}


@pytest.mark.parametrize(
    ("entry", "loc", "words"),
    [
        ({**GOOD, "values": [0.5, 0.6]}, ["values"], "2 values for 3 steps"),
        ({**GOOD, "times": [1.0, 2.0, 3.0, 4.0]}, ["times"], "4 times for 3 steps"),
        ({**GOOD, "steps": [0, "one", 2]}, ["steps", 1], "integer"),
        ({**GOOD, "steps": [0, -1, 2]}, ["steps", 1], "integer"),
        ({**GOOD, "steps": [0, 1.5, 2]}, ["steps", 1], "integer"),
        ({**GOOD, "steps": [0, True, 2]}, ["steps", 1], "integer"),
        ({**GOOD, "steps": [0, 1, 2**63]}, ["steps", 2], "integer"),
        ({**GOOD, "values": [0.5, "high", 0.7]}, ["values", 1], "number"),
        ({**GOOD, "values": [0.5, None, 0.7]}, ["values", 1], "number"),
        ({**GOOD, "values": [0.5, False, 0.7]}, ["values", 1], "number"),
        ({**GOOD, "values": [0.5, "nan", 0.7]}, ["values", 1], "NaN"),  # the convention's spelling only
        ({**GOOD, "times": [1.0, "now", 3.0]}, ["times", 1], "finite number"),
        ({**GOOD, "times": [1.0, True, 3.0]}, ["times", 1], "finite number"),
        ({**GOOD, "times": "now"}, ["times"], "list"),
        ({**GOOD, "steps": 3}, ["steps"], "list"),
        ({k: v for k, v in GOOD.items() if k != "values"}, ["values"], "list"),
        ({k: v for k, v in GOOD.items() if k != "steps"}, ["steps"], "list"),
        ({**GOOD, "key": ""}, ["key"], "1 to"),
        ({**GOOD, "key": "acc,m0"}, ["key"], "comma"),
        ({**GOOD, "key": "acc/\x00m0"}, ["key"], "control character"),
        ({**GOOD, "key": 7}, ["key"], "string"),
        ({**GOOD, "colour": "red"}, ["colour"], "unknown field"),
    ],
)
def test_bad_columns_are_422_naming_the_field_and_nothing_is_stored(
    api: httpx.Client, entry: dict[str, Any], loc: list[str | int], words: str
) -> None:
    run_id = new_running_run(api)
    other = {"key": "fine", "steps": [0], "values": [1.0]}  # a good entry in the same body is not stored either
    r = _post(api, run_id, {"series": [other, entry]})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(d["loc"] == ["body", "series", 1, *loc] and words in d["msg"] for d in detail), detail
    assert stored_count(api, run_id) == 0


def test_bad_series_lists_and_a_bare_nan_are_422(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    for body, loc in (({"series": "nope"}, ["body", "series"]), ({"series": [3]}, ["body", "series", 0])):
        r = _post(api, run_id, body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, r.text
    # NaN as a bare JSON token is not JSON; the convention is the string "NaN"
    raw = b'{"series": [{"key": "a", "steps": [0], "values": [NaN]}]}'
    r = api.post(f"/api/runs/{run_id}/metrics", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"], r.text
    assert stored_count(api, run_id) == 0


def test_the_batch_limit_counts_both_shapes(api: httpx.Client) -> None:
    run_id = new_running_run(api)  # the store server runs with CGGM_MAX_BATCH=10000
    rows = [{"key": "a", "step": s, "value": 1.0} for s in range(6000)]
    series = [{"key": "b", "steps": list(range(4001)), "values": [1.0] * 4001}]
    r = _post(api, run_id, {"points": rows, "series": series})
    assert r.status_code == 413 and "10001 points" in r.text, r.text
    series[0]["steps"], series[0]["values"] = list(range(4000)), [1.0] * 4000
    assert _post(api, run_id, {"points": rows, "series": series}).json() == {"accepted": 10000, "duplicates": 0}
