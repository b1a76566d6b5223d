"""Metric history: idempotent batch ingest, the `latest` table, series queries.

Idempotency: (run_id, key, step) is unique and inserts use ON CONFLICT DO NOTHING, so a batch the
client retried (after a timeout whose answer it never saw) stores nothing twice. The insert's row
count is the number of new rows, which gives the duplicate count without a second query.

Both ingest bodies (rows and columns) arrive here as columns per key (`SeriesIn`) and go through
one code path, so they are stored alike.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, bindparam, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ..downsample import minmax_indices
from ..models import Latest
from ..schemas.metrics import PointIn, SeriesIn


def _dialect(session: Session | Connection) -> str:
    name = session.dialect.name if isinstance(session, Connection) else session.get_bind().dialect.name
    if name not in ("sqlite", "postgresql"):
        raise RuntimeError(f"unsupported database dialect {name!r}; use SQLite or PostgreSQL")
    return name


Rows = Sequence[tuple[Any, ...]]


def ingest_points(session: Session | Connection, *, run_id: int, points: Sequence[PointIn]) -> tuple[int, int]:
    """Rows, stored as `ingest_series` stores columns. Returns (accepted, duplicates)."""
    by_key: dict[str, SeriesIn] = {}
    for key, step, value, t in points:
        col = by_key.get(key)
        if col is None:
            col = by_key[key] = SeriesIn(key, [], [], [])
        col.steps.append(step)
        col.values.append(None if value != value else value)  # NULL stands for NaN
        col.times.append(t)
    return ingest_series(session, run_id=run_id, series=list(by_key.values()), total=len(points))


def ingest_series(
    session: Session | Connection, *, run_id: int, series: Sequence[SeriesIn], total: int | None = None
) -> tuple[int, int]:
    """Store new points, skip known (key, step); update the rollup and `latest` in the same
    transaction. `total`: how many points the request had (repeats included). Returns (accepted,
    duplicates)."""
    if total is None:
        total = sum(len(s.steps) for s in series)
    merged = _merged(series)
    if not merged:
        return 0, total
    conn = session.connection() if isinstance(session, Session) else session
    if _dialect(conn) == "postgresql":
        accepted = _insert_unnest(conn, run_id=run_id, series=merged)
    else:
        rows = list(
            itertools.chain.from_iterable(
                zip(itertools.repeat(run_id), itertools.repeat(s.key), s.steps, s.values, s.times) for s in merged
            )
        )
        accepted = _executemany(conn, _SQLITE_INSERT, rows)
    new_points = sum(len(s.steps) for s in merged)
    # A re-sent step keeps its first value (ON CONFLICT DO NOTHING), so when the batch held steps
    # already stored, the rollup merges what is stored at the batch's steps, not what was sent:
    # a re-send with another value must not put a point into the rollup that the series lacks.
    blocks = _blocks(run_id, merged if accepted == new_points else _stored(conn, run_id, merged))
    if blocks:
        _executemany(conn, _UPSERT_BLOCK.replace("?", _placeholder(conn)), blocks)
    latest = [(run_id, s.key, s.steps[-1], s.values[-1], s.times[-1]) for s in merged]
    _executemany(conn, _UPSERT_LATEST.replace("?", _placeholder(conn)), latest)
    return accepted, total - accepted


def _stored(conn: Connection, run_id: int, merged: list[SeriesIn]) -> list[SeriesIn]:
    """What is stored now at each series' steps (ordered, None = NaN)."""
    ph = _placeholder(conn)
    sql = (
        f"SELECT step, value, time FROM metrics WHERE run_id = {ph} AND key = {ph} AND step >= {ph} AND step <= {ph} "
        "ORDER BY step"
    )
    out: list[SeriesIn] = []
    cursor = conn.connection.cursor()
    try:
        for s in merged:
            cursor.execute(sql, (run_id, s.key, s.steps[0], s.steps[-1]))
            wanted = set(s.steps)
            rows = [r for r in cursor.fetchall() if r[0] in wanted]
            out.append(SeriesIn(s.key, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]))
    finally:
        cursor.close()
    return out


def _merged(series: Sequence[SeriesIn]) -> list[SeriesIn]:
    """One series per key with strictly increasing steps: a (key, step) repeated in the batch keeps
    its first point, like a repeat across batches. The usual batch (each key once, steps
    increasing) passes through unchanged."""
    seen: dict[str, list[SeriesIn]] = {}
    for s in series:
        if s.steps:
            seen.setdefault(s.key, []).append(s)
    out: list[SeriesIn] = []
    for key, parts in seen.items():
        if len(parts) == 1 and all(map(operator.lt, parts[0].steps, parts[0].steps[1:])):
            out.append(parts[0])
            continue
        first: dict[int, tuple[float | None, float]] = {}
        for p in parts:
            for step, v, t in zip(p.steps, p.values, p.times, strict=True):
                if step not in first:
                    first[step] = (v, t)
        steps = sorted(first)
        out.append(SeriesIn(key, steps, [first[st][0] for st in steps], [first[st][1] for st in steps]))
    return out


def _executemany(conn: Connection, sql: str, rows: Rows) -> int:
    """The driver's executemany inside the connection's transaction (SQLAlchemy's own executemany
    builds a parameter dict per row: ~3 µs a row, the floor's whole cost). Driver errors are raised
    as SQLAlchemy's, so that the API's fault handling (503 busy, 500 permanent, 409, 422) applies."""
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(sql, rows)
        return int(cursor.rowcount)
    except conn.dialect.loaded_dbapi.Error as e:
        raise DBAPIError.instance(sql, None, e, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect) from e
    finally:
        cursor.close()


# The last value per key, in the same transaction; a batch that arrives late changes nothing.
_UPSERT_LATEST = (
    "INSERT INTO latest (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, value = excluded.value, time = excluded.time "
    "WHERE latest.step < excluded.step"
)

BLOCK_STEPS = 64  # steps per rollup block: a 1M-step series has 15.6k blocks

# Merge a block's min and max with what is stored. Right-hand sides read the row as it was before
# the update (SQL semantics, in SQLite and PostgreSQL alike), so the CASEs agree with each other.
_UPSERT_BLOCK = (
    "INSERT INTO metric_blocks (run_id, key, block, min_step, min_value, min_time, max_step, max_value, max_time) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, key, block) DO UPDATE SET "
    "min_step = CASE WHEN excluded.min_value < metric_blocks.min_value THEN excluded.min_step ELSE metric_blocks.min_step END, "
    "min_time = CASE WHEN excluded.min_value < metric_blocks.min_value THEN excluded.min_time ELSE metric_blocks.min_time END, "
    "min_value = CASE WHEN excluded.min_value < metric_blocks.min_value THEN excluded.min_value ELSE metric_blocks.min_value END, "
    "max_step = CASE WHEN excluded.max_value > metric_blocks.max_value THEN excluded.max_step ELSE metric_blocks.max_step END, "
    "max_time = CASE WHEN excluded.max_value > metric_blocks.max_value THEN excluded.max_time ELSE metric_blocks.max_time END, "
    "max_value = CASE WHEN excluded.max_value > metric_blocks.max_value THEN excluded.max_value ELSE metric_blocks.max_value END"
)


def _blocks(run_id: int, merged: list[SeriesIn]) -> list[tuple[Any, ...]]:
    """This batch's min and max point per (key, block) for the rollup (NaN points, stored as NULL,
    are left out). Steps are increasing, so a block's points are consecutive."""
    out: list[tuple[Any, ...]] = []
    for key, steps, values, times in merged:
        block = -1
        lo_s = lo_v = lo_t = hi_s = hi_v = hi_t = None
        for step, v, t in zip(steps, values, times, strict=True):
            if v is None:
                continue
            b = step // BLOCK_STEPS
            if b != block:
                if block >= 0:
                    out.append((run_id, key, block, lo_s, lo_v, lo_t, hi_s, hi_v, hi_t))
                block, lo_s, lo_v, lo_t, hi_s, hi_v, hi_t = b, step, v, t, step, v, t
                continue
            if v < lo_v:  # type: ignore[operator]
                lo_s, lo_v, lo_t = step, v, t
            if v > hi_v:  # type: ignore[operator]
                hi_s, hi_v, hi_t = step, v, t
        if block >= 0:
            out.append((run_id, key, block, lo_s, lo_v, lo_t, hi_s, hi_v, hi_t))
    return out


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


def _insert_unnest(conn: Connection, *, run_id: int, series: list[SeriesIn]) -> int:
    keys: list[str] = []
    steps: list[int] = []
    values: list[float | None] = []
    times: list[float] = []
    for s in series:
        keys += [s.key] * len(s.steps)
        steps += s.steps
        values += s.values
        times += s.times
    params = {"run_id": run_id, "keys": keys, "steps": steps, "values": values, "times": times}
    return int(conn.execute(_UNNEST_INSERT, params).rowcount)


# SQLite: the driver's executemany of one prepared statement, inside the transaction. Measured per
# 1,000-point batch (bench/backend_profile.py): 21-30 ms through SQLAlchemy's bulk INSERT ...
# RETURNING against 2-3 ms here. sqlite3 sums the changes of every execution in its rowcount, and
# a row skipped by ON CONFLICT DO NOTHING is no change: rowcount = new rows.
_SQLITE_INSERT = (
    "INSERT INTO metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, key, step) DO NOTHING"
)


def list_keys(session: Session, *, run_id: int) -> list[str]:
    return list(session.scalars(select(Latest.key).where(Latest.run_id == run_id).order_by(Latest.key)))


def point_counts(session: Session, *, run_id: int, keys: list[str]) -> dict[str, int]:
    """How many points each key has (keys without points are absent): one query over the primary
    key's range per key, counted inside the database (no row comes back to Python)."""
    ph = _placeholder(session)
    sql = (
        f"SELECT key, count(*) FROM metrics WHERE run_id = {ph} AND key IN ({', '.join([ph] * len(keys))}) GROUP BY key"
    )
    rows = _fetch_capped(session, sql, [run_id, *keys], None)
    return {k: int(n) for k, n in rows or ()}


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
    if keys is not None and len(keys) == 1:
        return _query_one_series(session, run_id=run_id, key=keys[0], since_step=since_step, max_rows=max_rows)
    sql = f"SELECT key, step, value, time FROM metrics WHERE run_id = {ph}"
    params: list[Any] = [run_id]
    if keys is not None:
        sql += " AND key IN (" + ", ".join([ph] * len(keys)) + ")"
        params += keys
    if since_step is not None:
        sql += f" AND step > {ph}"
        params.append(since_step)
    sql += " ORDER BY key, step"
    rows = _fetch_capped(session, sql, params, max_rows)
    if rows is None:
        return None
    out: dict[str, tuple[list[int], list[float], list[float]]] = {k: ([], [], []) for k in keys or []}
    nan = math.nan
    for key, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        part = list(group)
        values = [r[2] for r in part]
        vals = [nan if v is None else v for v in values] if None in values else values
        out[key] = ([r[1] for r in part], vals, [r[3] for r in part])
    return out


def _fetch_capped(session: Session, sql: str, params: list[Any], max_rows: int | None) -> Sequence[Any] | None:
    """Rows of `sql` through the driver's cursor; None when there are more than `max_rows` (the SQL
    asked for one more row than the cap, so the overflow is seen without reading everything)."""
    if max_rows is not None:
        sql += f" LIMIT {int(max_rows) + 1}"
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return None if max_rows is not None and len(rows) > max_rows else rows


def _query_one_series(
    session: Session, *, run_id: int, key: str, since_step: int | None, max_rows: int | None
) -> dict[str, tuple[list[int], list[float], list[float]]] | None:
    """query_series of one key (the run page's per-chart read): no key column to fetch and group."""
    ph = _placeholder(session)
    sql = f"SELECT step, value, time FROM metrics WHERE run_id = {ph} AND key = {ph}"
    params: list[Any] = [run_id, key]
    if since_step is not None:
        sql += f" AND step > {ph}"
        params.append(since_step)
    sql += " ORDER BY step"
    rows = _fetch_capped(session, sql, params, max_rows)
    if rows is None:
        return None
    values = [r[1] for r in rows]
    if None in values:
        values = [math.nan if v is None else v for v in values]
    return {key: ([r[0] for r in rows], values, [r[2] for r in rows])}


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


def _placeholder(session: Session | Connection) -> str:
    return "?" if _dialect(session) == "sqlite" else "%s"  # sqlite3 / psycopg paramstyle
