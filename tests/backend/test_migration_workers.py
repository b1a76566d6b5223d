"""Revision 0004 on a database made at 0003, as a user's is upgraded: every run gets its `model`
from its config, the workers table appears, and claims filter on the backfilled models."""

from __future__ import annotations

import json
import time
from pathlib import Path

import sqlalchemy as sa

from backend.db import Database

from .conftest import ServerProcess
from .test_migrations import empty_db_url, upgrade_to

__all__ = ["empty_db_url"]  # the fixture, shared with test_migrations

OLD_RUNS = [
    # (status, external, config): what a 0003-era server stored
    ("queued", False, {"dataset": "synthetic_seq", "method": "joint", "model": "transformer", "epochs": 1}),
    ("queued", False, {"dataset": "synthetic", "method": "joint", "epochs": 1}),  # from before runs named a model
    ("finished", False, {"dataset": "mfeat", "method": "cggm", "model": "mlp"}),
    ("running", True, {"dataset": "mine", "method": "mine", "model": {"layers": 3}}),  # an external run's own config
    ("running", True, {"model": "x" * 150}),  # too long for the column
]


def test_upgrade_from_0003_backfills_models_and_adds_workers(empty_db_url: str, tmp_path: Path) -> None:
    db = Database(empty_db_url)
    upgrade_to(db, "0003")
    now = time.time()
    ids = []
    with db.engine.begin() as conn:
        for status, external, config in OLD_RUNS:
            ids.append(
                conn.execute(
                    sa.text(
                        "INSERT INTO runs (name, status, external, config, dataset, method, tags, notes, created_at) "
                        "VALUES ('old', :s, :e, :c, :d, :m, '[]', '', :now) RETURNING id"
                    ),
                    {
                        "s": status,
                        "e": external,
                        "c": json.dumps(config),
                        "d": config.get("dataset"),
                        "m": config.get("method"),
                        "now": now,
                    },
                ).scalar_one()
            )
    db.dispose()

    server = ServerProcess(empty_db_url, tmp_path).start()  # `cggm serve` upgrades to the newest revision
    try:
        with server.client() as api:
            models = [api.get(f"/api/runs/{i}").json()["model"] for i in ids]
            assert models == ["transformer", None, "mlp", None, None]
            assert api.get("/api/workers").json() == {"data": [], "count": 0}
            # The backfilled model counts: a worker without transformer does not get the older seq run;
            # the run without a model runs its dataset's default, so a worker with the dataset gets it.
            body = {"worker": "w", "capabilities": {"datasets": ["synthetic", "synthetic_seq"], "models": ["mlp"]}}
            got = api.post("/api/workers/claim", json=body)
            assert got.status_code == 200 and got.json()["id"] == ids[1]
            assert api.post("/api/workers/claim", json=body).status_code == 204
            assert api.post("/api/workers/claim", json={"worker": "old"}).json()["id"] == ids[0]
            assert {w["name"] for w in api.get("/api/workers").json()["data"]} == {"w", "old"}
    finally:
        server.stop()
    db = Database(empty_db_url)
    with db.engine.connect() as conn:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    db.dispose()
    assert revision == "0005"
