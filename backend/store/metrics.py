"""Metric history: idempotent batch ingest, the `latest` table, series queries.

Idempotency: (run_id, key, step) is unique and inserts use ON CONFLICT DO NOTHING, so a batch the
client retried (after a timeout whose answer it never saw) stores nothing twice. RETURNING tells
which rows were new, which gives the duplicate count without a second query.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from ..downsample import minmax_indices
from ..models import Latest
from ..schemas.metrics import PointIn


def _dialect(session: Session) -> str:
    name = session.get_bind().dialect.name
    if name not in ("sqlite", "postgresql"):
        raise RuntimeError(f"unsupported database dialect {name!r}; use SQLite or PostgreSQL")
    return name


def ingest_points(session: Session, *, run_id: int, points: Sequence[PointIn]) -> tuple[int, int]:
    """Store new points, skip known (key, step); update `latest` in the same transaction.

    Returns (accepted, duplicates).
    """
    if not points:
        return 0, 0
    # (key, step) -> (key, step, value or None for NaN, time); plain tuples: this loop runs per point.
    rows: dict[tuple[str, int], tuple[str, int, float | None, float]] = {}
    for key, step, value, t in points:
        # A (key, step) repeated inside the batch: the first one wins, like a repeat across batches.
        if (key, step) not in rows:
            rows[(key, step)] = (key, step, None if value != value else value, t)  # NULL stands for NaN
    unique = list(rows.values())
    if _dialect(session) == "postgresql":
        accepted = _insert_unnest(session, run_id=run_id, rows=unique)
    else:
        accepted = _insert_sqlite(session, run_id=run_id, rows=unique)

    _update_blocks(session, run_id=run_id, rows=unique)

    newest: dict[str, tuple[str, int, float | None, float]] = {}
    for row in unique:
        cur = newest.get(row[0])
        if cur is None or row[1] > cur[1]:
            newest[row[0]] = row
    latest = [{"run_id": run_id, "key": k, "step": st, "value": v, "time": t} for k, st, v, t in newest.values()]
    session.execute(_UPSERT_LATEST, latest)
    return accepted, len(points) - accepted


# The last value per key, in the same transaction; a batch that arrives late changes nothing.
_UPSERT_LATEST = text(
    "INSERT INTO latest (run_id, key, step, value, time) VALUES (:run_id, :key, :step, :value, :time) "
    "ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, value = excluded.value, time = excluded.time "
    "WHERE latest.step < excluded.step"
)

BLOCK_STEPS = 64  # steps per rollup block: a 1M-step series has 15.6k blocks

# Merge a block's min and max with what is stored. Right-hand sides read the row as it was before
# the update (SQL semantics, in SQLite and PostgreSQL alike), so the CASEs agree with each other.
_UPSERT_BLOCK = text(
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


def _update_blocks(session: Session, *, run_id: int, rows: list[tuple[str, int, float | None, float]]) -> None:
    """Fold this batch's points into the rollup (NaN points, stored as NULL, are left out)."""
    blocks: dict[tuple[str, int], dict[str, Any]] = {}
    for key, step, value, t in rows:
        if value is None:
            continue
        b = blocks.get((key, step // BLOCK_STEPS))
        if b is None:
            blocks[(key, step // BLOCK_STEPS)] = {
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
        session.execute(_UPSERT_BLOCK, list(blocks.values()))


# PostgreSQL: one statement over four arrays. Measured (1,000-point batches, one writer): ~34k points/s
# against ~11k for SQLAlchemy's multi-row INSERT ... RETURNING. Its rowcount counts new rows only.
_UNNEST_INSERT = text(
    "INSERT INTO metrics (run_id, key, step, value, time) "
    "SELECT :run_id, k, s, v, t FROM unnest(:keys, :steps, :values, :times) AS u(k, s, v, t) "
    "ON CONFLICT (run_id, key, step) DO NOTHING"
).bindparams(
    bindparam("keys", type_=postgresql.ARRAY(postgresql.TEXT)),
    bindparam("steps", type_=postgresql.ARRAY(postgresql.BIGINT)),
    bindparam("values", type_=postgresql.ARRAY(postgresql.DOUBLE_PRECISION)),
    bindparam("times", type_=postgresql.ARRAY(postgresql.DOUBLE_PRECISION)),
)


def _insert_unnest(session: Session, *, run_id: int, rows: list[tuple[str, int, float | None, float]]) -> int:
    keys, steps, values, times = (list(c) for c in zip(*rows, strict=True))
    params = {"run_id": run_id, "keys": keys, "steps": steps, "values": values, "times": times}
    result = session.connection().execute(_UNNEST_INSERT, params)
    return int(result.rowcount)


# SQLite: the driver's executemany of one prepared statement, inside the session's transaction.
# Measured per 1,000-point batch (bench/backend_profile.py): 21-30 ms through SQLAlchemy's bulk
# INSERT ... RETURNING against 2-3 ms here. sqlite3 sums the changes of every execution in its
# rowcount, and a row skipped by ON CONFLICT DO NOTHING is no change: rowcount = new rows.
_SQLITE_INSERT = (
    "INSERT INTO metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, key, step) DO NOTHING"
)


def _insert_sqlite(session: Session, *, run_id: int, rows: list[tuple[str, int, float | None, float]]) -> int:
    dbapi = session.connection().connection  # the pooled sqlite3 connection, in this transaction
    cursor = dbapi.cursor()
    try:
        cursor.executemany(_SQLITE_INSERT, [(run_id, *r) for r in rows])
        return int(cursor.rowcount)
    finally:
        cursor.close()


def list_keys(session: Session, *, run_id: int) -> list[str]:
    return list(session.scalars(select(Latest.key).where(Latest.run_id == run_id).order_by(Latest.key)))


def latest_values(session: Session, *, run_id: int) -> dict[str, tuple[int, float, float]]:
    rows = session.execute(select(Latest.key, Latest.step, Latest.value, Latest.time).where(Latest.run_id == run_id))
    return {k: (s, math.nan if v is None else v, t) for k, s, v, t in rows}


def query_series(
    session: Session, *, run_id: int, keys: list[str] | None, since_step: int | None, max_rows: int | None = None
) -> dict[str, tuple[list[int], list[float], list[float]]] | None:
    """Points per key, ordered by step; only steps strictly greater than since_step when given.

    With `max_rows`: None when there are more points than that (the caller streams them instead),
    so that this one-query path never holds more than max_rows rows.

    Read through the driver's own cursor and split into columns per key: SQLAlchemy's Row objects
    cost about 3.5 µs a point, 2.5x the driver's fetchall (bench/backend_profile.py).
    """
    ph = _placeholder(session)
    sql = f"SELECT key, step, value, time FROM metrics WHERE run_id = {ph}"
    params: list[Any] = [run_id]
    if keys is not None:
        sql += " AND key IN (" + ", ".join([ph] * len(keys)) + ")"
        params += keys
    if since_step is not None:
        sql += f" AND step > {ph}"
        params.append(since_step)
    sql += " ORDER BY key, step"
    if max_rows is not None:
        sql += f" LIMIT {int(max_rows) + 1}"
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if max_rows is not None and len(rows) > max_rows:
        return None
    out: dict[str, tuple[list[int], list[float], list[float]]] = {k: ([], [], []) for k in keys or []}
    nan = math.nan
    for key, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        part = list(group)
        values = [r[2] for r in part]
        vals = [nan if v is None else v for v in values] if None in values else values
        out[key] = ([r[1] for r in part], vals, [r[3] for r in part])
    return out


def series_chunk(
    session: Session, *, run_id: int, key: str, after_step: int, limit: int
) -> tuple[list[int], list[float | None], list[float]]:
    """Up to `limit` points of one series with step > after_step, in step order (None = NaN).

    Keyset paging on the (run_id, key, step) index: each chunk is one short indexed range read, so
    a series of any length is read in bounded memory, and no transaction spans the chunks.
    """
    ph = _placeholder(session)
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(
            f"SELECT step, value, time FROM metrics WHERE run_id = {ph} AND key = {ph} AND step > {ph} "
            f"ORDER BY step LIMIT {int(limit)}",
            [run_id, key, after_step],
        )
        rows = cursor.fetchall()
    finally:
        cursor.close()
    # Three list comprehensions: ~8x faster than zip(*rows) on 50,000 rows (measured).
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


# A downsampled read of a series reads its raw points when that is cheap: few blocks (the rollup
# would give fewer points than asked for) and at most this many points to hold.
RAW_READ_MAX_POINTS = 200_000


def query_downsampled(
    session: Session, *, run_id: int, key: str, since_step: int | None, max_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One series reduced to at most `max_points`, keeping bucket extremes and the first and last point.

    Long series are read from the rollup: the min and max point of every block after since_step,
    the raw points of the block since_step falls in, and the raw first and last point (indexed
    lookups), then min-max downsampled. The series' min and max (after since_step) are always
    among those, so they survive, as with the raw path. Returns (steps, values, times) arrays.
    """
    since = -1 if since_step is None else since_step
    first_block = since // BLOCK_STEPS + 1  # blocks wholly after since_step
    ph = _placeholder(session)
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(
            "SELECT min_step, min_value, min_time, max_step, max_value, max_time FROM metric_blocks "
            f"WHERE run_id = {ph} AND key = {ph} AND block >= {ph} ORDER BY block",
            [run_id, key, first_block],
        )
        blocks = cursor.fetchall()
        points: list[Any] = []
        use_raw = 2 * len(blocks) < max_points and len(blocks) * BLOCK_STEPS <= RAW_READ_MAX_POINTS
        if use_raw:
            cursor.execute(
                f"SELECT step, value, time FROM metrics WHERE run_id = {ph} AND key = {ph} AND step > {ph} "
                f"ORDER BY step LIMIT {RAW_READ_MAX_POINTS + 1}",
                [run_id, key, since],
            )
            points = list(cursor.fetchall())
            use_raw = len(points) <= RAW_READ_MAX_POINTS  # more (NaN points have no block): the rollup
        if not use_raw:
            cursor.execute(
                f"SELECT step, value, time FROM metrics WHERE run_id = {ph} AND key = {ph} AND step > {ph} "
                f"AND step < {ph} ORDER BY step",
                [run_id, key, since, first_block * BLOCK_STEPS],
            )
            points = list(cursor.fetchall())  # the partial block since_step falls in (< 64 points)
            for order in ("ASC", "DESC"):
                cursor.execute(
                    f"SELECT step, value, time FROM metrics WHERE run_id = {ph} AND key = {ph} AND step > {ph} "
                    f"ORDER BY step {order} LIMIT 1",
                    [run_id, key, since],
                )
                points.extend(cursor.fetchall())
            for s_lo, v_lo, t_lo, s_hi, v_hi, t_hi in blocks:
                points.append((s_lo, v_lo, t_lo))
                points.append((s_hi, v_hi, t_hi))
            by_step = {p[0]: p for p in points}  # one point per step
            points = [by_step[step] for step in sorted(by_step)]
    finally:
        cursor.close()
    if not points:
        empty = np.empty(0)
        return empty.astype(np.int64), empty, empty
    steps = np.fromiter((p[0] for p in points), dtype=np.int64, count=len(points))
    values = np.fromiter((math.nan if p[1] is None else p[1] for p in points), dtype=np.float64, count=len(points))
    times = np.fromiter((p[2] for p in points), dtype=np.float64, count=len(points))
    if len(steps) > max_points:
        idx = minmax_indices(values, max_points)
        steps, values, times = steps[idx], values[idx], times[idx]
    return steps, values, times


def _placeholder(session: Session) -> str:
    return "?" if session.get_bind().dialect.name == "sqlite" else "%s"  # sqlite3 / psycopg paramstyle
