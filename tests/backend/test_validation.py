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
