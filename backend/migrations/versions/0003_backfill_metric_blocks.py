"""Back-fill metric_blocks for points stored before the rollup existed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

0002 created the rollup empty, and its note said older series fall back to raw reads. They do not
when the run went on logging after the upgrade: its new points have blocks, the old ones have none,
and a downsampled read built from the blocks drops the old extremes (a spike at step 3,333 of a
series continued past 10,000 vanished with max_points=100). This revision folds every stored point
into its block, merging with blocks that exist (min of mins, max of maxes, the same merge as ingest),
so it is right for series stored before, after, or on both sides of 0002.

Bounded memory: series are paged from `latest` (one row per series) and each series' points are read
CHUNK rows at a time by step. The block size and the merge are copied here, not imported, so that
this revision keeps meaning what it meant when it was written.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BLOCK_STEPS = 64
SERIES_PAGE = 500
CHUNK = 50_000

_SERIES = sa.text(
    "SELECT run_id, key FROM latest WHERE run_id > :run_id OR (run_id = :run_id AND key > :key) "
    "ORDER BY run_id, key LIMIT :n"
)
_POINTS = sa.text(
    "SELECT step, value, time FROM metrics WHERE run_id = :run_id AND key = :key AND step > :after "
    "ORDER BY step LIMIT :n"
)
_MERGE = sa.text(
    "INSERT INTO metric_blocks (run_id, key, block, min_step, min_value, min_time, max_step, max_value, max_time) "
    "VALUES (:run_id, :key, :block, :min_step, :min_value, :min_time, :max_step, :max_value, :max_time) "
    "ON CONFLICT (run_id, key, block) DO UPDATE SET "
    "min_step = CASE WHEN excluded.min_value < metric_blocks.min_value THEN excluded.min_step ELSE metric_blocks.min_step END, "
    "min_time = CASE WHEN excluded.min_value < metric_blocks.min_value THEN excluded.min_time ELSE metric_blocks.min_time END, "
    "min_value = CASE WHEN excluded.min_value < metric_blocks.min_value THEN excluded.min_value ELSE metric_blocks.min_value END, "
    "max_step = CASE WHEN excluded.max_value > metric_blocks.max_value THEN excluded.max_step ELSE metric_blocks.max_step END, "
    "max_time = CASE WHEN excluded.max_value > metric_blocks.max_value THEN excluded.max_time ELSE metric_blocks.max_time END, "
    "max_value = CASE WHEN excluded.max_value > metric_blocks.max_value THEN excluded.max_value ELSE metric_blocks.max_value END"
)


def upgrade() -> None:
    conn = op.get_bind()
    run_id, key = -1, ""
    while True:
        series = conn.execute(_SERIES, {"run_id": run_id, "key": key, "n": SERIES_PAGE}).all()
        for run_id, key in series:
            _backfill_series(conn, run_id, key)
        if len(series) < SERIES_PAGE:
            return


def _backfill_series(conn: sa.Connection, run_id: int, key: str) -> None:
    after = -1
    while True:
        rows = conn.execute(_POINTS, {"run_id": run_id, "key": key, "after": after, "n": CHUNK}).all()
        blocks: dict[int, dict[str, Any]] = {}
        for step, value, t in rows:
            if value is None:  # NaN is stored as NULL and takes no part in the rollup
                continue
            b = blocks.get(step // BLOCK_STEPS)
            if b is None:
                blocks[step // BLOCK_STEPS] = {
                    "run_id": run_id, "key": key, "block": step // BLOCK_STEPS,
                    "min_step": step, "min_value": value, "min_time": t,
                    "max_step": step, "max_value": value, "max_time": t,
                }  # fmt: skip
                continue
            if value < b["min_value"]:
                b["min_step"], b["min_value"], b["min_time"] = step, value, t
            if value > b["max_value"]:
                b["max_step"], b["max_value"], b["max_time"] = step, value, t
        if blocks:
            conn.execute(_MERGE, list(blocks.values()))
        if len(rows) < CHUNK:
            return
        after = rows[-1][0]


def downgrade() -> None:
    # The blocks are derived data that 0002's schema holds as well; nothing to undo.
    pass
