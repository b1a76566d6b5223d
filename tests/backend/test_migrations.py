"""Schema upgrades on real databases: a database made at revision 0001, upgraded the way a user's is.

Issue 8, item 7: a run logged before the metric_blocks rollup existed (0001), then continued after
the 0002 upgrade, lost its old extremes from downsampled reads (a spike at step 3,333 vanished with
max_points=100), because its new points had blocks and its old ones had none. 0003 back-fills.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from backend.db import MIGRATIONS_DIR, Database
from backend.schemas.metrics import PointIn
from backend.store import metrics as metric_store

from .conftest import ServerProcess, _pg_url_or_skip

N_OLD, N_NEW, SPIKE_STEP = 10_000, 10_000, 3333


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    base = _pg_url_or_skip()
    schema = f"cggm_mig_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def upgrade_to(db: Database, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()


def value_at(step: int) -> float:
    return 100.0 if step == SPIKE_STEP else math.sin(step / 40.0)


def test_upgrade_from_0001_keeps_old_extremes_in_downsampled_reads(empty_db_url: str, tmp_path: Path) -> None:
    db = Database(empty_db_url)
    upgrade_to(db, "0001")
    now = time.time()
    with db.engine.begin() as conn:  # what a 0001-era server stored: runs, metrics, latest; no rollup
        run_id = conn.execute(
            sa.text(
                "INSERT INTO runs (name, status, external, config, tags, notes, created_at, started_at) "
                "VALUES ('old', 'running', :t, '{}', '[]', '', :now, :now) RETURNING id"
            ),
            {"t": True, "now": now},
        ).scalar_one()
        rows = [{"r": run_id, "k": "coef/m0", "s": s, "v": value_at(s), "t": now + s} for s in range(N_OLD)]
        rows += [{"r": run_id, "k": "old/only", "s": s, "v": value_at(s), "t": now + s} for s in range(N_OLD)]
        conn.execute(sa.text("INSERT INTO metrics (run_id, key, step, value, time) VALUES (:r, :k, :s, :v, :t)"), rows)
        for key in ("coef/m0", "old/only"):
            conn.execute(
                sa.text("INSERT INTO latest (run_id, key, step, value, time) VALUES (:r, :k, :s, :v, :t)"),
                {"r": run_id, "k": key, "s": N_OLD - 1, "v": value_at(N_OLD - 1), "t": now + N_OLD - 1},
            )
    # The user upgrades to 0002 and the run goes on logging: only the new points get blocks.
    upgrade_to(db, "0002")
    new = [PointIn("coef/m0", s, value_at(s), now + s) for s in range(N_OLD, N_OLD + N_NEW)]
    with db.write() as session:
        metric_store.ingest_points(session, run_id=run_id, points=new)
    db.dispose()

    server = ServerProcess(empty_db_url, tmp_path).start()  # `cggm serve` upgrades to the newest revision
    try:
        with server.client() as api:
            for key, last in (("coef/m0", N_OLD + N_NEW - 1), ("old/only", N_OLD - 1)):
                s = api.get(f"/api/runs/{run_id}/metrics", params={"keys": key, "max_points": 100}).json()
                series = s["series"][key]
                assert len(series["steps"]) <= 100
                assert SPIKE_STEP in series["steps"], (key, series["steps"][:20])
                assert max(series["values"]) == 100.0
                assert series["steps"][0] == 0 and series["steps"][-1] == last
                assert min(series["values"]) == pytest.approx(-1.0, abs=1e-3)
    finally:
        server.stop()

    # The rollup now holds what it would hold had every point been ingested after 0002.
    db = Database(empty_db_url)
    with db.engine.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT block, min_step, max_step FROM metric_blocks WHERE run_id = :r AND key = 'coef/m0' "
                "ORDER BY block"
            ),
            {"r": run_id},
        ).all()
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    db.dispose()
    expected = []
    for block in range((N_OLD + N_NEW + 63) // 64):
        steps = range(block * 64, min((block + 1) * 64, N_OLD + N_NEW))
        values = [value_at(s) for s in steps]
        expected.append((block, steps[values.index(min(values))], steps[values.index(max(values))]))
    assert [tuple(r) for r in stored] == expected
    assert revision == "0005"  # the newest revision (`cggm serve` upgraded to it)
