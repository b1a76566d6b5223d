"""Tables (DESIGN §7): runs, metrics (history), latest (last value per run and key), events, workers.

Times are Unix seconds (float) everywhere, like the `time` of a metric point. NaN cannot be stored
portably (SQLite turns a NaN REAL into NULL), so a metric value of NULL means NaN; ±Inf are stored
as themselves.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RUN_STATUSES = ("queued", "running", "stopping", "finished", "failed", "stopped", "lost")
ACTIVE_STATUSES = ("running", "stopping")
TERMINAL_STATUSES = ("finished", "failed", "stopped")
MAX_KEY_LEN = 200


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), index=True)
    external: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset: Mapped[str | None] = mapped_column(String(100), index=True)
    method: Mapped[str | None] = mapped_column(String(100), index=True)
    # The job's model (its config's `model`): with `dataset`, what a worker must have to claim it.
    model: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class Metric(Base):
    """One point of one series. The key (run_id, key, step) is the primary key, and on SQLite the
    table has no rowid (migration 0005): its rows are stored in key order, so a series is one
    contiguous range (a 20,000-point read fetches half as long) and an insert updates one B-tree
    instead of a rowid table plus a unique index."""

    __tablename__ = "metrics"
    __table_args__ = {"sqlite_with_rowid": False}

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LEN), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)  # NULL = NaN
    time: Mapped[float] = mapped_column(Float)


class MetricBlock(Base):
    """Rollup of a series by blocks of BLOCK_STEPS steps: each block's min and max point.

    Kept in the ingest transaction, so that a downsampled read of a long series reads ~N/64 rows
    instead of N (a 1M-point series: 15.6k rows). Min/max merges are idempotent, so a retried
    batch changes nothing. NaN points (NULL) take no part.
    """

    __tablename__ = "metric_blocks"
    __table_args__ = {"sqlite_with_rowid": False}

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LEN), primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    min_step: Mapped[int] = mapped_column(BigInteger)
    min_value: Mapped[float] = mapped_column(Float)
    min_time: Mapped[float] = mapped_column(Float)
    max_step: Mapped[int] = mapped_column(BigInteger)
    max_value: Mapped[float] = mapped_column(Float)
    max_time: Mapped[float] = mapped_column(Float)


class Latest(Base):
    __tablename__ = "latest"
    __table_args__ = {"sqlite_with_rowid": False}

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LEN), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float)  # NULL = NaN
    time: Mapped[float] = mapped_column(Float)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    time: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class Worker(Base):
    """A worker the backend has heard from: what it says it can run, and when it was last seen.

    Seen = a claim (every poll while idle) or a heartbeat of a run it trains. `capabilities` is
    what the worker sent with its claims (datasets, models, devices, plugins, versions); NULL for
    a worker of an older version that sends none, which is taken to run the built-ins.
    """

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    capabilities: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    first_seen_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float] = mapped_column(Float, index=True)
