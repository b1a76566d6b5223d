"""Workers and what they can run: the `workers` table, and each run's `model`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10

A worker now tells the backend, with each claim, which datasets and models it has (plugins
included) and its devices; the backend hands it only runs whose dataset and model it has, so a
run needs its model in a column beside its dataset. Backfilled from each run's config (a queued
job's config is resolved, so it names its model); a run whose config names none keeps NULL, which
a claim reads as "the dataset's default model": any worker with the dataset may take it.

Runs are read in pages by id, so the backfill's memory is bounded however many runs there are.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PAGE = 1000
MAX_NAME = 100  # the column's width, as for dataset and method

_runs = sa.table("runs", sa.column("id", sa.Integer()), sa.column("config", sa.JSON()), sa.column("model", sa.String()))


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("capabilities", sa.JSON(), nullable=True),
        sa.Column("first_seen_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_workers_last_seen_at", "workers", ["last_seen_at"])
    op.add_column("runs", sa.Column("model", sa.String(MAX_NAME), nullable=True))
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(
            sa.select(_runs.c.id, _runs.c.config).where(_runs.c.id > after).order_by(_runs.c.id).limit(PAGE)
        ).all()
        for run_id, config in rows:
            model = _model_of(config)
            if model is not None:
                conn.execute(sa.update(_runs).where(_runs.c.id == run_id).values(model=model))
        if len(rows) < PAGE:
            return
        after = rows[-1][0]


def _model_of(config: Any) -> str | None:
    if isinstance(config, str):  # a driver that hands JSON back as text
        try:
            config = json.loads(config)
        except ValueError:
            return None
    model = config.get("model") if isinstance(config, dict) else None
    return model if isinstance(model, str) and 0 < len(model) <= MAX_NAME else None


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("model")
    op.drop_index("ix_workers_last_seen_at", table_name="workers")
    op.drop_table("workers")
