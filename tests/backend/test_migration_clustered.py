"""Revision 0005 on a database made at 0004, as a user's is upgraded: `metrics` loses its surrogate
id and is keyed by (run_id, key, step) (on SQLite, with `metric_blocks` and `latest`, as a table
without rowid). Every point, block and latest value comes through; retries still store nothing
twice; reads answer what they answered before; and the downgrade gives the old shape back."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from backend.db import Database

from .conftest import ServerProcess
from .test_migrations import empty_db_url, upgrade_to

__all__ = ["empty_db_url"]  # the fixture, shared with test_migrations

STEPS = 300


def _value(run: int, key: str, step: int) -> float | None:
    if step == 17:
        return None  # NaN is stored as NULL
    if step == 18:
        return math.inf
    return run * 1000.0 + len(key) + step * 0.001


def _table(conn: sa.Connection, table: str) -> list[tuple[Any, ...]]:
    columns = {
        "metrics": "run_id, key, step, value, time",
        "metric_blocks": "run_id, key, block, min_step, min_value, max_step, max_value",
        "latest": "run_id, key, step, value, time",
    }[table]
    return [tuple(r) for r in conn.execute(sa.text(f"SELECT {columns} FROM {table} ORDER BY 1, 2, 3")).all()]


def test_upgrade_to_0005_keeps_every_point_and_the_key(empty_db_url: str, tmp_path: Path) -> None:
    db = Database(empty_db_url)
    upgrade_to(db, "0004")
    now = time.time()
    with db.engine.begin() as conn:
        runs = [
            conn.execute(
                sa.text(
                    "INSERT INTO runs (name, status, external, config, tags, notes, created_at, started_at) "
                    "VALUES ('old', 'running', :t, '{}', '[]', '', :now, :now) RETURNING id"
                ),
                {"t": True, "now": now},
            ).scalar_one()
            for _ in range(2)
        ]
        # Two runs written at the same time, as a 0004 server stored them: rows interleaved by step.
        rows = [
            {"r": r, "k": k, "s": s, "v": _value(r, k, s), "t": now + s}
            for s in range(STEPS)
            for r in runs
            for k in ("loss", "acc/m0")
        ]
        conn.execute(sa.text("INSERT INTO metrics (run_id, key, step, value, time) VALUES (:r, :k, :s, :v, :t)"), rows)
        for r in runs:
            for k in ("loss", "acc/m0"):
                conn.execute(
                    sa.text(
                        "INSERT INTO metric_blocks VALUES (:r, :k, 0, 0, :lo, :t, 63, :hi, :t), "
                        "(:r, :k, 1, 64, :lo, :t, 127, :hi, :t)"
                    ),
                    {"r": r, "k": k, "lo": -1.0, "hi": 1.0, "t": now},
                )
                conn.execute(
                    sa.text("INSERT INTO latest VALUES (:r, :k, :s, :v, :t)"),
                    {"r": r, "k": k, "s": STEPS - 1, "v": _value(r, k, STEPS - 1), "t": now + STEPS - 1},
                )
        before = {t: _table(conn, t) for t in ("metrics", "metric_blocks", "latest")}
    db.dispose()

    server = ServerProcess(empty_db_url, tmp_path).start()  # `cggm serve` upgrades to the newest revision
    try:
        with server.client() as api:
            got = api.get(f"/api/runs/{runs[1]}/metrics", params={"keys": "loss"}).json()["series"]["loss"]
            assert got["steps"] == list(range(STEPS))
            assert got["values"][17] == "NaN" and got["values"][18] == "Infinity"
            assert got["values"][19] == _value(runs[1], "loss", 19)
            # A retried old batch stores nothing twice; a new step is taken.
            again = {"points": [{"key": "loss", "step": 5, "value": 9.0}, {"key": "loss", "step": STEPS, "value": 2.0}]}
            assert api.post(f"/api/runs/{runs[0]}/metrics", json=again).json() == {"accepted": 1, "duplicates": 1}
            assert api.get(f"/api/runs/{runs[0]}/latest").json()["loss"]["step"] == STEPS
    finally:
        server.stop()

    db = Database(empty_db_url)
    with db.engine.connect() as conn:
        after = {t: _table(conn, t) for t in ("metrics", "metric_blocks", "latest")}
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0005"
        columns = [c["name"] for c in sa.inspect(conn).get_columns("metrics")]
        primary = sa.inspect(conn).get_pk_constraint("metrics")["constrained_columns"]
        if db.is_sqlite:
            ddl = {
                name: sql
                for name, sql in conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
            }
    db.dispose()
    new_point = (runs[0], "loss", STEPS)
    assert [r for r in after["metrics"] if r[:3] != new_point] == before["metrics"]
    resent = [b for b in after["metric_blocks"] if b[:2] == (runs[0], "loss")]
    assert [b for b in after["metric_blocks"] if b[:2] != (runs[0], "loss")] == [
        b for b in before["metric_blocks"] if b[:2] != (runs[0], "loss")
    ]
    # The re-sent step 5 kept its stored value, so the rollup merged that, not the 9.0 sent again.
    assert resent[0][6] == _value(runs[0], "loss", 5) and resent[0][5] == 5
    assert resent[-1][2:] == (STEPS // 64, STEPS, 2.0, STEPS, 2.0)
    assert columns == ["run_id", "key", "step", "value", "time"]
    assert primary == ["run_id", "key", "step"]
    if db.is_sqlite:
        for table in ("metrics", "metric_blocks", "latest"):
            assert ddl[table].rstrip().endswith("WITHOUT ROWID"), ddl[table]
            assert "ON DELETE CASCADE" in ddl[table]

    # The downgrade gives 0004's shape back, with every point.
    db = Database(empty_db_url)
    upgrade_to(db, "0005")
    from alembic import command
    from alembic.config import Config

    from backend.db import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
        conn.commit()
    with db.engine.connect() as conn:
        assert _table(conn, "metrics") == after["metrics"]
        assert "id" in [c["name"] for c in sa.inspect(conn).get_columns("metrics")]
        unique = sa.inspect(conn).get_unique_constraints("metrics")
    db.dispose()
    assert [u["column_names"] for u in unique] == [["run_id", "key", "step"]]
