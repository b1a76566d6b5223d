"""Metrics: batch ingest, series queries (incremental, downsampled, streamed), keys, latest values."""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Iterator
from typing import Annotated, Any, cast

import numpy as np
import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import WithJsonSchema

from cggm_core.tracking import encode_value

from ..db import Database
from ..deps import DbDep, RawBody, ReadSession, RunId, SettingsDep, WriteAuth
from ..errors import Invalid
from ..read_cache import SeriesCache
from ..read_pool import Pieces, ReadPool, ReadRequest
from ..schemas.common import COMMON_RESPONSES, CONFLICT, INVALID, MAX_STEP, NOT_FOUND, WRITE, text_problem
from ..schemas.metrics import IngestResult, KeysPublic, MetricsBatch, MetricsPublic, parse_ingest
from ..store import metrics as metric_store
from ..store import runs as run_store

router = APIRouter(prefix="/api/runs", tags=["metrics"], responses={**COMMON_RESPONSES, **INVALID, **NOT_FOUND})

_BATCH_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MetricsBatch"}}},
    }
}

# Reads: up to settings.read_chunk_points are read in one query and answered in one piece; a longer
# read is streamed key by key, that many points per query, so that a 2M-point read holds a few MB.
# Encoded bytes gathered before the answer starts, per chunk point (errors up to there still get
# their own status; a point is ~40 bytes of JSON): 50k points -> 3.2 MB.
EAGER_BYTES_PER_CHUNK_POINT = 64
MAX_KEYS_PER_READ = 1000
# One value of `keys`: no control character, and something besides commas and spaces.
_KEY_CHAR = "[^\\u0000-\\u001f\\u007f-\\u009f]"
KEYS_PARAM_PATTERN = f"^{_KEY_CHAR}*[^\\s,\\u0000-\\u001f\\u007f-\\u009f]{_KEY_CHAR}*$"


@router.post(
    "/{run_id}/metrics",
    dependencies=[WriteAuth],
    openapi_extra=_BATCH_SCHEMA,
    responses={**WRITE, **CONFLICT},
    response_model=IngestResult,
)
def ingest_metrics(run_id: RunId, request: Request, body: RawBody, db: DbDep, settings: SettingsDep) -> Response:
    """Store a batch; idempotent on (run, key, step). Two shapes, alone or together:

    - rows: `{"points": [{"key", "step", "value", "time"?}, ...]}`
    - columns: `{"series": [{"key", "steps": [...], "values": [...], "times"?: [...]}, ...]}`, one
      key per entry and steps, values and times of equal length (422 naming the field otherwise);
      cheaper to encode and to parse. A missing `times` (or a null in it) means "received now".

    Both are stored alike. NaN and ±Inf travel as the strings "NaN", "Infinity", "-Infinity" and
    are stored as such. 413 above `max_batch` points in all; 409 when the run no longer takes
    metrics. A key is refused (422) unless a query can send it back: no control characters,
    commas or surrounding whitespace.
    """
    series, total = parse_ingest(body, settings.max_batch)  # validate before taking the write lock
    pool: ReadPool | None = request.app.state.read_pool
    if pool is not None:
        pool.note_write()  # full reads go to a helper process while batches arrive
    with db.write_connection() as conn:
        run_store.require_accepts_metrics(conn, run_id=run_id)
        accepted, duplicates = metric_store.ingest_series(conn, run_id=run_id, series=series, total=total)
    # The answer's bytes directly: its two ints need no response-model validation (~40 µs a request).
    return Response(b'{"accepted":%d,"duplicates":%d}' % (accepted, duplicates), media_type="application/json")


@router.get("/{run_id}/metrics", response_model=MetricsPublic)
def get_metrics(
    run_id: RunId,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    keys: Annotated[
        list[Annotated[str, WithJsonSchema({"type": "string", "pattern": KEYS_PARAM_PATTERN})]] | None,
        Query(
            description="keys to read: repeat the parameter (keys=a&keys=b, each taken verbatim), or one "
            "comma-separated value (keys=a,b); all keys when omitted",
            max_length=MAX_KEYS_PER_READ,
        ),
    ] = None,
    since_step: Annotated[
        int | None, Query(ge=-1, le=MAX_STEP, description="only steps strictly greater (incremental reads)")
    ] = None,
    max_points: Annotated[
        int | None, Query(ge=4, le=1_000_000, description="downsample each series to at most this many points")
    ] = None,
) -> Response:
    """Series per key: {"series": {key: {"steps": [...], "values": [...], "times": [...]}}}.

    Downsampling keeps each bucket's min and max and always the first and last point. A long
    full-resolution read is streamed (same JSON), so its size does not set the server's memory.
    """
    key_list = _requested_keys(keys)
    with db.read() as session:
        created_at = run_store.get_run(session, run_id=run_id).created_at
    chunk = settings.read_chunk_points
    cache: SeriesCache | None = request.app.state.series_cache
    pool: ReadPool | None = request.app.state.read_pool
    parts: Iterator[bytes] | None = None
    if cache is not None and key_list is not None and since_step is None and max_points is None:
        parts = _cached_series_json(
            db, cache, run_id=run_id, created_at=created_at, keys=key_list, chunk=chunk, pool=pool
        )
    if parts is None:
        parts = _series_json(
            db, run_id=run_id, keys=key_list, since_step=since_step, max_points=max_points, chunk=chunk, pool=pool
        )
    eager: list[bytes] = []
    size = 0
    for part in parts:  # read and encode in this request until the answer is known to be large
        eager.append(part)
        size += len(part)
        if size > chunk * EAGER_BYTES_PER_CHUNK_POINT:
            return StreamingResponse(_coalesced(itertools.chain(eager, parts)), media_type="application/json")
    return Response(b"".join(eager), media_type="application/json")


def _coalesced(parts: Iterator[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """Pieces joined into ~1 MB sends: each send is a thread hop and an HTTP chunk."""
    buffer: list[bytes] = []
    held = 0
    for part in parts:
        buffer.append(part)
        held += len(part)
        if held >= size:
            yield b"".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield b"".join(buffer)


def _requested_keys(keys: list[str] | None) -> list[str] | None:
    if keys is None:
        return None
    if len(keys) == 1:
        # One value: the comma-separated form (keys are refused at ingest if they hold a comma).
        names = [k for k in (s.strip() for s in keys[0].split(",")) if k]
        if not names:
            raise Invalid(["query", "keys"], "expected one or more keys (keys=a&keys=b, or keys=a,b)")
    else:
        names = keys  # repeated parameters: each verbatim
    for name in names:
        problem = text_problem(name) if name.replace(",", "").strip() else "has nothing but commas or spaces"
        if problem:
            raise Invalid(["query", "keys"], f"key {name[:80]!r} {problem}")
    if len(names) > MAX_KEYS_PER_READ:
        raise Invalid(["query", "keys"], f"{len(names)} keys; at most {MAX_KEYS_PER_READ} per read")
    return list(dict.fromkeys(names))  # a key asked twice is answered once


def read_pieces(
    db: Database, *, run_id: int, keys: list[str] | None, max_rows: int, since_step: int | None = None
) -> Pieces | None:
    """Each key's points and encoded piece of a one-query read, keys in the answer's order; None
    when there are more than `max_rows` points (the read is then streamed). Read helpers run it too."""
    with db.read() as session:
        got = metric_store.query_series(session, run_id=run_id, keys=keys, since_step=since_step, max_rows=max_rows)
    if got is None:
        return None
    return {key: (len(columns[0]), _full_piece(key, columns)) for key, columns in got.items()}


def run_read(db: Database, req: ReadRequest) -> Pieces | None:
    """What `req` asks for, read from `db`: here, or in a read helper with its own engine."""
    if req.max_points is not None:
        return downsampled_pieces(
            db, run_id=req.run_id, keys=req.keys or [], since_step=req.since_step, max_points=req.max_points
        )
    return read_pieces(db, run_id=req.run_id, keys=req.keys, max_rows=req.max_rows, since_step=req.since_step)


def _read(db: Database, pool: ReadPool | None, req: ReadRequest) -> Pieces | None:
    """run_read in a read helper while batches arrive (backend/read_pool.py), else in this process."""

    def here() -> Pieces | None:
        return run_read(db, req)

    return here() if pool is None else pool.read(req, here)


# A downsampled read goes to a read helper when its answer is at most this many points (keys x
# max_points): the helper sends it whole, where the server streams it key by key.
HELPER_MAX_DOWNSAMPLED_POINTS = 200_000


def downsampled_pieces(
    db: Database, *, run_id: int, keys: list[str], since_step: int | None, max_points: int
) -> Pieces:
    """Each key downsampled to at most max_points (its points and encoded piece), one short session
    per key. Read helpers run it too."""
    out: Pieces = {}
    for key in keys:
        with db.read() as session:
            steps, values, times = metric_store.query_downsampled(
                session, run_id=run_id, key=key, since_step=since_step, max_points=max_points
            )
        out[key] = (len(steps), _series_piece(key, steps, values, times))
    return out


def _series_json(
    db: Database,
    *,
    run_id: int,
    keys: list[str] | None,
    since_step: int | None,
    max_points: int | None,
    chunk: int,
    pool: ReadPool | None = None,
) -> Iterator[bytes]:
    """The answer's JSON in pieces; each database read is its own short session."""
    yield b'{"series":{'
    sep = b""
    if max_points is None:
        # An incremental read (since_step: a live page's tick) is small: the hop would cost more.
        small = _read(db, pool if since_step is None else None, ReadRequest(run_id, keys, chunk, since_step))
        if small is not None:
            for _, piece in small.values():
                yield sep + piece
                sep = b","
        else:
            for key in _names(db, run_id, keys):
                yield sep
                sep = b","
                yield from _stream_one(db, run_id=run_id, key=key, since_step=since_step, chunk=chunk)
    else:
        names = _names(db, run_id, keys)
        if pool is not None and len(names) * max_points <= HELPER_MAX_DOWNSAMPLED_POINTS:
            got = _read(db, pool, ReadRequest(run_id, names, since_step=since_step, max_points=max_points))
            pieces = (piece for _, piece in (got or {}).values())
        else:  # key by key, as read: the answer may be long
            pieces = (
                piece
                for key in names
                for _, piece in downsampled_pieces(
                    db, run_id=run_id, keys=[key], since_step=since_step, max_points=max_points
                ).values()
            )
        for piece in pieces:
            yield sep + piece
            sep = b","
    yield b"}}"


def _cached_series_json(
    db: Database,
    cache: SeriesCache,
    *,
    run_id: int,
    created_at: float,
    keys: list[str],
    chunk: int,
    pool: ReadPool | None = None,
) -> Iterator[bytes] | None:
    """A full read of the named keys, each from the cache when its point count is unchanged
    (backend/read_cache.py); None when the read is too long for one piece (then it is streamed)."""
    with db.read() as session:
        counts = metric_store.point_counts(session, run_id=run_id, keys=keys)
    if sum(counts.values()) > chunk:
        return None
    pieces: dict[str, bytes] = {}
    for key in keys:
        hit = cache.get((run_id, created_at, key), counts.get(key, 0))
        if hit is not None:
            pieces[key] = hit
    missing = [k for k in keys if k not in pieces]
    if missing:
        got = _read(db, pool, ReadRequest(run_id, missing, max_rows=chunk))
        if got is None:  # points came in since they were counted, and now there are too many
            return None
        for key, (n, piece) in got.items():
            pieces[key] = piece
            if n == counts.get(key, 0):  # else points came in between: not kept
                cache.put((run_id, created_at, key), n, piece)
    return iter((b'{"series":{', b",".join(pieces[k] for k in keys), b"}}"))


def _names(db: Database, run_id: int, keys: list[str] | None) -> list[str]:
    if keys is not None:
        return keys
    with db.read() as session:
        return metric_store.list_keys(session, run_id=run_id)


def _stream_one(db: Database, *, run_id: int, key: str, since_step: int | None, chunk: int) -> Iterator[bytes]:
    """One series, `chunk` points per query: steps are sent as read; values and times wait in
    compact arrays (16 bytes a point) because the JSON is by column."""
    yield orjson.dumps(key) + b':{"steps":['
    values, times = array("d"), array("d")
    after = -1 if since_step is None else since_step
    sep = b""
    while True:
        with db.read() as session:
            steps, vals, ts = metric_store.series_chunk(session, run_id=run_id, key=key, after_step=after, limit=chunk)
        if not steps:
            break
        yield sep + orjson.dumps(steps)[1:-1]
        sep = b","
        # NULL stands for NaN; most chunks have none, and then the list goes in as it is.
        values.extend([math.nan if v is None else v for v in vals] if None in vals else cast("list[float]", vals))
        times.extend(ts)
        after = steps[-1]
        if len(steps) < chunk:
            break
    yield b'],"values":['
    yield from _numbers_in_pieces(np.frombuffer(values, dtype=np.float64), chunk)
    yield b'],"times":['
    yield from _numbers_in_pieces(np.frombuffer(times, dtype=np.float64), chunk)
    yield b"]}"


def _numbers_in_pieces(a: np.ndarray, chunk: int) -> Iterator[bytes]:
    for i in range(0, len(a), chunk):
        yield (b"," if i else b"") + _numbers(a[i : i + chunk])


def _numbers(a: np.ndarray) -> bytes:
    """Comma-separated JSON numbers; non-finite as the tracking convention's strings."""
    if a.size == 0:
        return b""
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        return orjson.dumps([encode_value(v) for v in a.tolist()])[1:-1]
    return orjson.dumps(a, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]


def _full_piece(key: str, columns: tuple[list[int], list[float], list[float]]) -> bytes:
    """One key's piece of a one-query read (query_series' columns: steps, values, times)."""
    steps, values, times = columns
    return _series_piece(key, np.asarray(steps, dtype=np.int64), values, times)


def _series_piece(key: str, steps: np.ndarray, values: Any, times: Any) -> bytes:
    return b"".join(
        (
            orjson.dumps(key),
            b':{"steps":[',
            _numbers(steps),
            b'],"values":[',
            _numbers(np.asarray(values, dtype=np.float64)),
            b'],"times":[',
            _numbers(np.asarray(times, dtype=np.float64)),
            b"]}",
        )
    )


@router.get("/{run_id}/keys")
def get_keys(run_id: RunId, session: ReadSession) -> KeysPublic:
    run_store.get_run(session, run_id=run_id)
    return KeysPublic(keys=metric_store.list_keys(session, run_id=run_id))


@router.get("/{run_id}/latest")
def get_latest(run_id: RunId, session: ReadSession) -> dict[str, dict[str, Any]]:
    """The last value of every key: {key: {step, value, time}} (for run tables and the dominance strip)."""
    run_store.get_run(session, run_id=run_id)
    latest = metric_store.latest_values(session, run_id=run_id)
    return {k: {"step": s, "value": encode_value(v), "time": t} for k, (s, v, t) in latest.items()}


# Referenced from openapi_extra above, so that /docs shows the ingest body's shape.
__all__ = ["MetricsBatch", "router"]
