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

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..models import Latest
from ..schemas.metrics import PointIn


def _insert_for(session: Session) -> Any:
    name = session.get_bind().dialect.name
    if name == "sqlite":
        return sqlite.insert
    if name == "postgresql":
        return postgresql.insert
    raise RuntimeError(f"unsupported database dialect {name!r}; use SQLite or PostgreSQL")


def _stored(value: float) -> float | None:
    return None if math.isnan(value) else value  # NULL stands for NaN (SQLite cannot keep a NaN)


def ingest_points(session: Session, *, run_id: int, points: Sequence[PointIn]) -> tuple[int, int]:
    """Store new points, skip known (key, step); update `latest` in the same transaction.

    Returns (accepted, duplicates).
    """
    if not points:
        return 0, 0
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for p in points:
        # A (key, step) repeated inside the batch: the first one wins, like a repeat across batches.
        rows.setdefault(
            (p.key, p.step), {"run_id": run_id, "key": p.key, "step": p.step, "value": _stored(p.value), "time": p.time}
        )
    insert = _insert_for(session)
    if session.get_bind().dialect.name == "postgresql":
        accepted = _insert_unnest(session, run_id=run_id, rows=list(rows.values()))
    else:
        accepted = _insert_sqlite(session, rows=list(rows.values()))

    _update_blocks(session, run_id=run_id, rows=rows.values())

    newest: dict[str, dict[str, Any]] = {}
    for row in rows.values():
        cur = newest.get(row["key"])
        if cur is None or row["step"] > cur["step"]:
            newest[row["key"]] = row
    up = insert(Latest).values(list(newest.values()))
    up = up.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={"step": up.excluded.step, "value": up.excluded.value, "time": up.excluded.time},
        where=Latest.step < up.excluded.step,
    )
    session.execute(up)
    return accepted, len(points) - accepted


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


def _update_blocks(session: Session, *, run_id: int, rows: Any) -> None:
    """Fold this batch's points into the rollup (NaN points, stored as NULL, are left out)."""
    blocks: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        value = r["value"]
        if value is None:
            continue
        b = blocks.get((r["key"], r["step"] // BLOCK_STEPS))
        if b is None:
            blocks[(r["key"], r["step"] // BLOCK_STEPS)] = {
                "run_id": run_id, "key": r["key"], "block": r["step"] // BLOCK_STEPS,
                "min_step": r["step"], "min_value": value, "min_time": r["time"],
                "max_step": r["step"], "max_value": value, "max_time": r["time"],
            }  # fmt: skip
            continue
        if value < b["min_value"]:
            b["min_step"], b["min_value"], b["min_time"] = r["step"], value, r["time"]
        if value > b["max_value"]:
            b["max_step"], b["max_value"], b["max_time"] = r["step"], value, r["time"]
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


def _insert_unnest(session: Session, *, run_id: int, rows: list[dict[str, Any]]) -> int:
    params = {
        "run_id": run_id,
        "keys": [r["key"] for r in rows],
        "steps": [r["step"] for r in rows],
        "values": [r["value"] for r in rows],
        "times": [r["time"] for r in rows],
    }
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


def _insert_sqlite(session: Session, *, rows: list[dict[str, Any]]) -> int:
    dbapi = session.connection().connection  # the pooled sqlite3 connection, in this transaction
    cursor = dbapi.cursor()
    try:
        cursor.executemany(_SQLITE_INSERT, [(r["run_id"], r["key"], r["step"], r["value"], r["time"]) for r in rows])
        return int(cursor.rowcount)
    finally:
        cursor.close()


def list_keys(session: Session, *, run_id: int) -> list[str]:
    return list(session.scalars(select(Latest.key).where(Latest.run_id == run_id).order_by(Latest.key)))


def latest_values(session: Session, *, run_id: int) -> dict[str, tuple[int, float, float]]:
    rows = session.execute(select(Latest.key, Latest.step, Latest.value, Latest.time).where(Latest.run_id == run_id))
    return {k: (s, math.nan if v is None else v, t) for k, s, v, t in rows}


def query_series(
    session: Session, *, run_id: int, keys: list[str] | None, since_step: int | None
) -> dict[str, tuple[list[int], list[float], list[float]]]:
    """Points per key, ordered by step; only steps strictly greater than since_step when given.

    Read through the driver's own cursor and split into columns per key: SQLAlchemy's Row objects
    cost about 3.5 µs a point, 2.5x the driver's fetchall (bench/backend_profile.py).
    """
    ph = "?" if session.get_bind().dialect.name == "sqlite" else "%s"  # sqlite3 / psycopg paramstyle
    sql = f"SELECT key, step, value, time FROM metrics WHERE run_id = {ph}"
    params: list[Any] = [run_id]
    if keys is not None:
        sql += " AND key IN (" + ", ".join([ph] * len(keys)) + ")"
        params += keys
    if since_step is not None:
        sql += f" AND step > {ph}"
        params.append(since_step)
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(sql + " ORDER BY key, step", params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    out: dict[str, tuple[list[int], list[float], list[float]]] = {k: ([], [], []) for k in keys or []}
    nan = math.nan
    for key, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        _, steps, values, times = zip(*group, strict=True)
        vals = [nan if v is None else v for v in values] if None in values else list(values)
        out[key] = (list(steps), vals, list(times))
    return out


def query_downsampled(
    session: Session, *, run_id: int, keys: list[str] | None, max_points: int
) -> dict[str, tuple[list[int], list[float], list[float]]]:
    """Each series reduced to at most `max_points`, keeping bucket extremes and the first and last point.

    Long series are read from the rollup: every block's min and max point, plus the raw first and
    last point (two indexed lookups), then min-max downsampled. The global min and max are always
    among the block extremes, so they survive, as with the raw path. Series with few blocks, and
    series stored before the rollup existed, are read raw.
    """
    names = keys if keys is not None else list_keys(session, run_id=run_id)
    if not names:
        return {}
    ph = "?" if session.get_bind().dialect.name == "sqlite" else "%s"
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(
            "SELECT key, min_step, min_value, min_time, max_step, max_value, max_time FROM metric_blocks "
            f"WHERE run_id = {ph} AND key IN ({', '.join([ph] * len(names))}) ORDER BY key, block",
            [run_id, *names],
        )
        block_rows = cursor.fetchall()
        by_key: dict[str, list[Any]] = {}
        for key, group in itertools.groupby(block_rows, key=operator.itemgetter(0)):
            by_key[key] = list(group)
        out: dict[str, tuple[list[int], list[float], list[float]]] = {}
        raw_keys = [k for k in names if 2 * len(by_key.get(k, ())) < max_points]
        if raw_keys:
            out.update(query_series(session, run_id=run_id, keys=raw_keys, since_step=None))
        for key in names:
            if key in out:
                continue
            ends: list[Any] = []
            for order in ("ASC", "DESC"):
                cursor.execute(
                    f"SELECT step, value, time FROM metrics WHERE run_id = {ph} AND key = {ph} "
                    f"ORDER BY step {order} LIMIT 1",
                    [run_id, key],
                )
                ends.append(cursor.fetchone())
            points = [ends[0]]
            for _, s_lo, v_lo, t_lo, s_hi, v_hi, t_hi in by_key[key]:
                pair = (
                    [(s_lo, v_lo, t_lo), (s_hi, v_hi, t_hi)]
                    if s_lo <= s_hi
                    else [(s_hi, v_hi, t_hi), (s_lo, v_lo, t_lo)]
                )
                for p in pair:
                    if ends[0][0] < p[0] < ends[1][0] and p[0] != points[-1][0]:
                        points.append(p)
            if ends[1][0] != ends[0][0]:
                points.append(ends[1])
            steps, values, times = (list(c) for c in zip(*points, strict=True))
            out[key] = (steps, [math.nan if v is None else v for v in values], times)
    finally:
        cursor.close()
    return out
