"""Malformed input gets the right 4xx, names the field, and stores nothing; never a 500."""

from __future__ import annotations

import httpx
import pytest

from .conftest import TINY_JOB, new_running_run, stored_count

GOOD = {"key": "acc/m0", "step": 1, "value": 0.5}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"points": [{**GOOD, "step": "one"}]}, "step"),
        ({"points": [{**GOOD, "step": -1}]}, "step"),
        ({"points": [{**GOOD, "step": 1.5}]}, "step"),
        ({"points": [{**GOOD, "step": True}]}, "step"),
        ({"points": [{**GOOD, "value": "high"}]}, "value"),
        ({"points": [{**GOOD, "value": None}]}, "value"),
        ({"points": [{"key": "acc/m0", "step": 1}]}, "value"),
        ({"points": [{**GOOD, "key": ""}]}, "key"),
        ({"points": [{**GOOD, "key": "   "}]}, "key"),
        ({"points": [{**GOOD, "key": " acc/m0"}]}, "key"),  # cannot come back through a query
        ({"points": [{**GOOD, "key": "acc/m0\n"}]}, "key"),
        ({"points": [{**GOOD, "key": "acc,m0"}]}, "key"),
        ({"points": [{**GOOD, "key": 7}]}, "key"),
        ({"points": [{**GOOD, "key": "k" * 201}]}, "key"),
        ({"points": [{**GOOD, "time": "now"}]}, "time"),
        ({"points": [{**GOOD, "colour": "red"}]}, "colour"),
        ({"points": [GOOD, "not a point"]}, 1),
        ({"points": "nope"}, "points"),
        ({"pts": []}, "points"),
        ([GOOD], "points"),
    ],
)
def test_bad_points_are_422_naming_the_field(api: httpx.Client, body: object, field: object) -> None:
    run_id = new_running_run(api)
    r = api.post(f"/api/runs/{run_id}/metrics", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"][0]["loc"]
    assert stored_count(api, run_id) == 0  # a batch with one bad point stores nothing


def test_non_json_and_non_finite_tokens_are_422(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    for raw in (b"{not json", b"", b'{"points": [{"key": "a", "step": 1, "value": NaN}]}', b"\xff\xfe"):
        r = api.post(f"/api/runs/{run_id}/metrics", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (raw, r.text)
    assert stored_count(api, run_id) == 0


def test_huge_batch_is_413(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    batch = [{"key": "a", "step": i, "value": 1.0} for i in range(10_001)]
    r = api.post(f"/api/runs/{run_id}/metrics", json={"points": batch})
    assert r.status_code == 413 and "10000" in r.text
    huge_body = b'{"points": [' + b" " * 20_000_000 + b"]}"
    assert api.post(f"/api/runs/{run_id}/metrics", content=huge_body).status_code == 413
    assert stored_count(api, run_id) == 0


def test_unknown_run_is_404(api: httpx.Client) -> None:
    assert api.post("/api/runs/999999/metrics", json={"points": [GOOD]}).status_code == 404
    for path in ("", "/metrics", "/keys", "/latest", "/events"):
        assert api.get(f"/api/runs/999999{path}").status_code == 404
    for path in ("/stop", "/heartbeat"):
        assert api.post(f"/api/runs/999999{path}").status_code == 404
    assert api.post("/api/runs/999999/finish", json={"status": "finished"}).status_code == 404
    assert api.get("/api/runs/not-a-number").status_code == 422


def test_bad_job_config_is_422_with_the_setting_message(api: httpx.Client) -> None:
    r = api.post("/api/runs", json={"config": {**TINY_JOB, "rho": "lots"}})
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "config"] and "rho" in detail["msg"]
    r = api.post("/api/runs", json={"config": {**TINY_JOB, "method": "magic"}})
    assert (
        r.status_code == 422 and "allowed: " in r.json()["detail"][0]["msg"] and "cggm" in r.json()["detail"][0]["msg"]
    )
    r = api.post("/api/runs", json={"config": {**TINY_JOB, "epochs": 0}})
    assert r.status_code == 422 and "epochs" in r.json()["detail"][0]["msg"]
    for bad in ({"config": "x"}, {"config": {}, "tags": [""]}, {"config": TINY_JOB, "colour": 1}, {}):
        assert api.post("/api/runs", json=bad).status_code == 422, bad
    r = api.post(
        "/api/runs",
        content=b'{"config": {"dataset": NaN}, "external": true}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code in (201, 422)  # never a 500 for a non-finite token
    r = api.post("/api/runs/1/finish", json={"status": "exploded"})
    assert r.status_code in (404, 422) and "status" in r.text


def test_query_parameters_are_checked(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    assert api.get(f"/api/runs/{run_id}/metrics", params={"max_points": 2}).status_code == 422
    assert api.get(f"/api/runs/{run_id}/metrics", params={"since_step": "x"}).status_code == 422
    assert api.get(f"/api/runs/{run_id}/metrics", params={"keys": ","}).status_code == 422
    r = api.get("/api/runs", params={"status": "sleeping"})
    assert r.status_code == 422 and "allowed" in r.text
    assert api.get("/api/runs", params={"limit": 0}).status_code == 422


def test_health_catalog_and_docs(api: httpx.Client) -> None:
    assert api.get("/api/health").json()["status"] == "ok"
    catalog = api.get("/api/catalog").json()
    assert {"datasets", "methods", "trainer"} <= set(catalog)
    assert "cggm" in [m["name"] for m in catalog["methods"]]
    assert api.get("/docs").status_code == 200
    spec = api.get("/openapi.json").json()
    for path in ("/api/runs", "/api/runs/{run_id}/metrics", "/api/workers/claim", "/api/runs/{run_id}/heartbeat"):
        assert path in spec["paths"]
    assert "MetricsBatch" in spec["components"]["schemas"]


@pytest.mark.slow
def test_token_guards_every_write_but_not_reads(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(env={"CGGM_TOKEN": "s3cret"})
    with server.client() as anon, server.client(token="s3cret") as auth, server.client(token="wrong") as wrong:
        assert anon.post("/api/runs", json={"config": TINY_JOB}).status_code == 401
        assert wrong.post("/api/runs", json={"config": TINY_JOB}).status_code == 401
        run_id = auth.post("/api/runs", json={"config": TINY_JOB}).json()["id"]
        for method, path in (("post", "/stop"), ("post", "/heartbeat"), ("delete", ""), ("patch", "")):
            kwargs = {"json": {"notes": "x"}} if method == "patch" else {}
            assert getattr(anon, method)(f"/api/runs/{run_id}{path}", **kwargs).status_code == 401, path
        assert anon.post(f"/api/runs/{run_id}/metrics", json={"points": [GOOD]}).status_code == 401
        assert anon.post("/api/workers/claim").status_code == 401
        assert anon.get(f"/api/runs/{run_id}").status_code == 200
        assert anon.get("/api/runs").json()["count"] == 1


def test_migrations_match_the_models(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from backend.db import Database
    from backend.models import Base

    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    db.migrate()  # a second start is a no-op
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    db.dispose()
    assert diff == []
    assert mode == "wal"


# -- issue 8, items 1 and 4: what PostgreSQL or SQLite cannot store is a 422 on both ------------------
@pytest.mark.parametrize(
    ("method", "path", "body", "loc"),
    [
        ("post", "/api/runs/{run}/metrics", {"points": [{**GOOD, "key": "acc/\x00m0"}]}, ["body", "points", 0, "key"]),
        ("post", "/api/runs/{run}/metrics", {"points": [{**GOOD, "key": "acc/\x1bm0"}]}, ["body", "points", 0, "key"]),
        ("post", "/api/runs", {"name": "a\x00b", "config": {}, "external": True}, ["body", "name"]),
        ("post", "/api/runs", {"name": "a\nb", "config": {}, "external": True}, ["body", "name"]),
        ("post", "/api/runs", {"tags": ["ok", "b\x07"], "config": {}, "external": True}, ["body", "tags", 1]),
        ("post", "/api/runs", {"notes": "a\x00b", "config": {}, "external": True}, ["body", "notes"]),
        ("post", "/api/runs", {"config": {"lr\x00": 1.0}, "external": True}, ["body", "config"]),
        ("post", "/api/runs", {"config": {"a": {"b": ["x\x00"]}}, "external": True}, ["body", "config"]),
        ("post", "/api/runs", {"config": {**TINY_JOB, "views": "kar\x00"}}, ["body", "config"]),
        ("patch", "/api/runs/{run}", {"notes": "\x00"}, ["body", "notes"]),
        ("patch", "/api/runs/{run}", {"name": "\u0085"}, ["body", "name"]),
        ("post", "/api/runs/{run}/events", {"events": [{"message": "a\x00b"}]}, ["body", "events", 0, "message"]),
        ("post", "/api/runs/{run}/finish", {"status": "failed", "error": "boom\x00"}, ["body", "error"]),
        ("post", "/api/runs/{run}/finish", {"status": "finished", "summary": {"acc": "\x00"}}, ["body", "summary"]),
        ("post", "/api/workers/claim", {"worker": "gpu\x000"}, ["body", "worker"]),
    ],
)
def test_control_characters_are_422_naming_the_field(
    api: httpx.Client, method: str, path: str, body: object, loc: list[object]
) -> None:
    run_id = new_running_run(api)
    r = getattr(api, method)(path.format(run=run_id), json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc, r.text
    assert "control character" in r.text
    assert stored_count(api, run_id) == 0
    assert api.get(f"/api/runs/{run_id}").json()["status"] == "running"  # finish refused: nothing changed


def test_control_characters_in_query_filters_are_422(api: httpx.Client) -> None:
    for param in ("dataset", "method"):
        r = api.get("/api/runs", params={param: "cggm\x00"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", param], r.text
    run_id = new_running_run(api)
    r = api.get(f"/api/runs/{run_id}/metrics", params={"keys": "acc/\x00"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "keys"], r.text


def test_text_keeps_tabs_and_newlines(api: httpx.Client) -> None:
    notes = "line one\n\tline two\r\n"
    r = api.post("/api/runs", json={"config": {"cmd": "a\tb"}, "notes": notes, "external": True})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    assert api.get(f"/api/runs/{run_id}").json()["notes"] == notes
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: x'
    assert api.post(f"/api/runs/{run_id}/events", json={"events": [{"message": trace}]}).status_code == 201
    assert api.get(f"/api/runs/{run_id}/events").json()["data"][-1]["message"] == trace


BIG_IDS = [2**31, 2**63, 10**400]


@pytest.mark.parametrize("big", BIG_IDS, ids=["2^31", "2^63", "10^400"])
def test_overflowing_ids_and_integer_parameters_are_422_naming_the_field(api: httpx.Client, big: int) -> None:
    run_id = new_running_run(api)
    requests = [
        ("get", f"/api/runs/{big}", {}, ["path", "run_id"]),
        ("patch", f"/api/runs/{big}", {"json": {"notes": "x"}}, ["path", "run_id"]),
        ("delete", f"/api/runs/{big}", {}, ["path", "run_id"]),
        ("post", f"/api/runs/{big}/stop", {}, ["path", "run_id"]),
        ("post", f"/api/runs/{big}/heartbeat", {}, ["path", "run_id"]),
        ("post", f"/api/runs/{big}/finish", {"json": {"status": "finished"}}, ["path", "run_id"]),
        ("post", f"/api/runs/{big}/metrics", {"json": {"points": [GOOD]}}, ["path", "run_id"]),
        ("get", f"/api/runs/{big}/metrics", {}, ["path", "run_id"]),
        ("get", f"/api/runs/{big}/keys", {}, ["path", "run_id"]),
        ("get", f"/api/runs/{big}/latest", {}, ["path", "run_id"]),
        ("get", f"/api/runs/{big}/events", {}, ["path", "run_id"]),
        ("post", f"/api/runs/{big}/events", {"json": {"events": [{"message": "x"}]}}, ["path", "run_id"]),
        ("get", "/api/runs", {"params": {"offset": big}}, ["query", "offset"]),
        ("get", "/api/runs", {"params": {"limit": big}}, ["query", "limit"]),
        ("get", f"/api/runs/{run_id}/events", {"params": {"after_id": big}}, ["query", "after_id"]),
        ("get", f"/api/runs/{run_id}/events", {"params": {"limit": big}}, ["query", "limit"]),
        ("get", f"/api/runs/{run_id}/metrics", {"params": {"max_points": big}}, ["query", "max_points"]),
    ]
    if big >= 2**63:  # steps are BIGINT: 2^31 is a fine step
        requests.append(
            ("get", f"/api/runs/{run_id}/metrics", {"params": {"since_step": big}}, ["query", "since_step"])
        )
        requests.append(("post", f"/api/runs/{run_id}/metrics", {"json": {"points": [{**GOOD, "step": big}]}}, None))
    for method, path, kwargs, loc in requests:
        r = getattr(api, method)(path, **kwargs)
        assert r.status_code == 422, (method, path, kwargs, r.status_code, r.text[:300])
        if loc is not None:
            assert r.json()["detail"][0]["loc"] == loc, (path, r.text)
    assert api.get(f"/api/runs/{run_id}/metrics", params={"since_step": 2**31}).json() == {"series": {}}


@pytest.mark.parametrize("bad", [["synthetic"], {"name": "synthetic"}, 7, 1e300, "x" * 101])
@pytest.mark.parametrize("field", ["dataset", "method"])
@pytest.mark.parametrize("external", [False, True])
def test_dataset_and_method_must_be_names(api: httpx.Client, field: str, bad: object, external: bool) -> None:
    config = {"dataset": "synthetic", "method": "cggm", field: bad}
    r = api.post("/api/runs", json={"config": config, "external": external})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "config"] and field in r.json()["detail"][0]["msg"], r.text


LONG_FLOAT = b"1" + b"0" * 400 + b".5"


def test_long_number_literals_and_deep_json_are_422(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    headers = {"Content-Type": "application/json"}
    bodies = [
        ("/api/runs", b'{"config": {"dataset": "synthetic", "method": "cggm", "rho": ' + LONG_FLOAT + b"}}"),
        ("/api/runs", b'{"config": {"dataset": ' + LONG_FLOAT + b', "method": "cggm"}, "external": true}'),
        ("/api/runs", b'{"config": {"dataset": 1' + b"0" * 400 + b', "method": "cggm"}, "external": true}'),
        ("/api/runs", b'{"config": {"x": 1' + b"0" * 5000 + b'}, "external": true}'),  # past int() limit
        (f"/api/runs/{run_id}/metrics", b'{"points": [{"key": "k", "step": 1, "value": ' + LONG_FLOAT + b"}]}"),
        (
            f"/api/runs/{run_id}/metrics",
            b'{"points": [{"key": "k", "step": 1, "value": 1.0, "time": ' + LONG_FLOAT + b"}]}",
        ),
        (f"/api/runs/{run_id}/events", b'{"events": [{"message": "m", "time": ' + LONG_FLOAT + b"}]}"),
    ]
    for depth, where in ((33, "config"), (500, "config"), (5000, "config"), (500, "summary")):
        deep = b'{"a": ' * depth + b"1" + b"}" * depth
        if where == "config":
            bodies.append(("/api/runs", b'{"config": ' + deep + b', "external": true}'))
        else:
            bodies.append((f"/api/runs/{run_id}/finish", b'{"status": "finished", "summary": ' + deep + b"}"))
    for path, body in bodies:
        r = api.post(path, content=body, headers=headers)
        assert r.status_code == 422, (path, body[:80], r.status_code, r.text[:300])
        assert r.json()["detail"][0]["loc"][0] == "body", r.text
    ok = b'{"a": ' * 31 + b"1" + b"}" * 31  # 32 levels with the config itself: allowed
    assert (
        api.post("/api/runs", content=b'{"config": ' + ok + b', "external": true}', headers=headers).status_code == 201
    )
    assert stored_count(api, run_id) == 0 and api.get(f"/api/runs/{run_id}").json()["status"] == "running"


# -- issue 8, item 5: every write body is bounded -------------------------------------------------------------
def test_every_write_body_has_a_size_limit(api: httpx.Client) -> None:
    run_id = new_running_run(api)
    big = "x" * 2_000_000  # above the 1 MiB limit of a non-ingest body
    writes = [
        ("post", "/api/runs", {"config": {"blob": big}, "external": True}),
        ("patch", f"/api/runs/{run_id}", {"notes": big}),
        ("post", f"/api/runs/{run_id}/events", {"events": [{"message": big[:90_000]}] * 20}),
        ("post", f"/api/runs/{run_id}/finish", {"status": "finished", "summary": {"blob": big}}),
        ("post", "/api/workers/claim", {"worker": big}),
    ]
    for method, path, body in writes:
        r = getattr(api, method)(path, json=body)
        assert r.status_code == 413, (path, r.status_code, r.text[:200])
        assert "limit" in r.json()["detail"]
    # Below the body limit, a config or summary is still bounded on its own (64 KiB of JSON).
    r = api.post("/api/runs", json={"config": {"blob": "x" * 70_000}, "external": True})
    assert r.status_code == 422 and "65536" in r.text, r.text
    r = api.post(f"/api/runs/{run_id}/finish", json={"status": "finished", "summary": {"blob": "x" * 70_000}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "summary"], r.text
    assert api.get(f"/api/runs/{run_id}").json()["status"] == "running"
    assert api.get("/api/runs", params={"limit": 500}).status_code == 200


def test_the_schema_states_the_server_bounds(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(env={"CGGM_MAX_PAGE": "50", "CGGM_MAX_BATCH": "300"})
    with server.client() as api:
        spec = api.get("/openapi.json").json()
        limit = next(p for p in spec["paths"]["/api/runs"]["get"]["parameters"] if p["name"] == "limit")
        assert limit["schema"]["maximum"] == 50 and limit["schema"]["type"] == "integer"
        assert spec["components"]["schemas"]["MetricsBatch"]["properties"]["points"]["maxItems"] == 300
        assert api.get("/api/runs").status_code == 200  # the default page (100) is cut to max_page
        assert api.get("/api/runs", params={"limit": 50}).status_code == 200
        r = api.get("/api/runs", params={"limit": 51})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]
        # Every operation declares what it may answer.
        for path, operations in spec["paths"].items():
            for method, op in operations.items():
                codes = set(op["responses"])
                if path.startswith("/api/runs"):
                    assert {"422", "500", "503"} <= codes, (method, path, codes)
                if "{run_id}" in path:
                    assert "404" in codes, (method, path)
                if method in ("post", "patch", "delete") and path != "/api/health":
                    assert {"401", "413"} <= codes, (method, path, codes)
        for path in ("/api/runs/{run_id}/finish", "/api/runs/{run_id}/stop", "/api/runs/{run_id}/metrics"):
            assert "409" in spec["paths"][path]["post"]["responses"], path


def test_string_settings_refuse_control_characters(api: httpx.Client) -> None:
    r = api.post("/api/runs", json={"config": {**TINY_JOB, "strengths": "3.0,\t3.0"}})
    assert r.status_code == 422 and "strengths" in r.json()["detail"][0]["msg"], r.text
    assert "control character" in r.json()["detail"][0]["msg"]
