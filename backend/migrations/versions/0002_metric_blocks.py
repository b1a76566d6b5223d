"""Rollup table metric_blocks: per block of 64 steps, the min and max point of each series.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Series stored before this revision have no blocks; their downsampled reads fall back to reading
the raw points (correct, only slower), so no backfill is needed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_blocks",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("block", sa.BigInteger(), primary_key=True),
        sa.Column("min_step", sa.BigInteger(), nullable=False),
        sa.Column("min_value", sa.Float(), nullable=False),
        sa.Column("min_time", sa.Float(), nullable=False),
        sa.Column("max_step", sa.BigInteger(), nullable=False),
        sa.Column("max_value", sa.Float(), nullable=False),
        sa.Column("max_time", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("metric_blocks")
