"""Metrics keyed by (run_id, key, step): no surrogate id; on SQLite, tables without a rowid.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-12

Before, `metrics` had an autoincrement `id` primary key and a unique constraint on
(run_id, key, step). Nothing reads `id`. On SQLite that is two B-trees per row (the rowid table
and the unique index) and a series read looks every point up in the rowid table, where points of
runs written at the same time are interleaved. Now (run_id, key, step) is the primary key, and on
SQLite `metrics`, `metric_blocks` and `latest` are WITHOUT ROWID tables (one B-tree each, in key
order). Measured in issue 13 (BENCHMARKS §3.0d, bench/backend_table_shape.py): a 20,000-point
series written beside three other runs fetches in 6.5 ms against 29.0, and an insert costs
12-14 % less CPU.

SQLite cannot change a table's primary key in place, so each table is rebuilt: a new table, the
rows copied in key order, the old table dropped and the new one renamed, in the migration's
transaction (the copy's time was not measured on a large database). PostgreSQL keeps its heap tables; `metrics` loses
`id` and its sequence, and the unique constraint becomes the primary key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_FK = "FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE CASCADE"

# table: (columns and key, the columns copied, the key order)
_SQLITE_TABLES = {
    "metrics": (
        "run_id INTEGER NOT NULL, key VARCHAR(200) NOT NULL, step BIGINT NOT NULL, value FLOAT, "
        f"time FLOAT NOT NULL, PRIMARY KEY (run_id, key, step), {_FK}",
        "run_id, key, step, value, time",
        "run_id, key, step",
    ),
    "metric_blocks": (
        "run_id INTEGER NOT NULL, key VARCHAR(200) NOT NULL, block BIGINT NOT NULL, "
        "min_step BIGINT NOT NULL, min_value FLOAT NOT NULL, min_time FLOAT NOT NULL, "
        "max_step BIGINT NOT NULL, max_value FLOAT NOT NULL, max_time FLOAT NOT NULL, "
        f"PRIMARY KEY (run_id, key, block), {_FK}",
        "run_id, key, block, min_step, min_value, min_time, max_step, max_value, max_time",
        "run_id, key, block",
    ),
    "latest": (
        "run_id INTEGER NOT NULL, key VARCHAR(200) NOT NULL, step BIGINT NOT NULL, value FLOAT, "
        f"time FLOAT NOT NULL, PRIMARY KEY (run_id, key), {_FK}",
        "run_id, key, step, value, time",
        "run_id, key",
    ),
}


def _rebuild_sqlite(table: str, columns_sql: str, columns: str, *, rowid: bool, order: str) -> None:
    suffix = "" if rowid else " WITHOUT ROWID"
    op.execute(f"CREATE TABLE _new_{table} ({columns_sql}){suffix}")
    op.execute(f"INSERT INTO _new_{table} ({columns}) SELECT {columns} FROM {table} ORDER BY {order}")
    op.execute(f"DROP TABLE {table}")
    op.execute(f"ALTER TABLE _new_{table} RENAME TO {table}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, (columns_sql, columns, order) in _SQLITE_TABLES.items():
            _rebuild_sqlite(table, columns_sql, columns, rowid=False, order=order)
        return
    op.drop_constraint("metrics_pkey", "metrics", type_="primary")
    op.drop_column("metrics", "id")
    op.drop_constraint("uq_metrics_run_key_step", "metrics", type_="unique")
    op.create_primary_key("metrics_pkey", "metrics", ["run_id", "key", "step"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        old_metrics = (
            "id INTEGER NOT NULL PRIMARY KEY, run_id INTEGER NOT NULL, key VARCHAR(200) NOT NULL, "
            "step BIGINT NOT NULL, value FLOAT, time FLOAT NOT NULL, "
            f"CONSTRAINT uq_metrics_run_key_step UNIQUE (run_id, key, step), {_FK}"
        )
        _rebuild_sqlite("metrics", old_metrics, "run_id, key, step, value, time", rowid=True, order="run_id, key, step")
        for table in ("metric_blocks", "latest"):
            columns_sql, columns, order = _SQLITE_TABLES[table]
            _rebuild_sqlite(table, columns_sql, columns, rowid=True, order=order)
        return
    op.drop_constraint("metrics_pkey", "metrics", type_="primary")
    op.create_unique_constraint("uq_metrics_run_key_step", "metrics", ["run_id", "key", "step"])
    op.add_column("metrics", sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False))
    op.create_primary_key("metrics_pkey", "metrics", ["id"])
