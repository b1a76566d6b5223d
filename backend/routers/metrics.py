"""Metrics: batch ingest, series queries (incremental, downsampled), keys, latest values."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Query, Response

from cggm_core.tracking import encode_value

from ..deps import DbDep, RawBody, ReadSession, SettingsDep, WriteAuth
from ..downsample import minmax_indices
from ..errors import Invalid
from ..schemas.metrics import IngestResult, KeysPublic, MetricsBatch, MetricsPublic, parse_batch
from ..store import metrics as metric_store
from ..store import runs as run_store

router = APIRouter(prefix="/api/runs", tags=["metrics"])

_BATCH_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MetricsBatch"}}},
    }
}


@router.post("/{run_id}/metrics", dependencies=[WriteAuth], openapi_extra=_BATCH_SCHEMA)
def ingest_metrics(run_id: int, body: RawBody, db: DbDep, settings: SettingsDep) -> IngestResult:
    """Store a batch {points: [{key, step, value, time?}]}; idempotent on (run, key, step).

    NaN and ±Inf travel as the strings "NaN", "Infinity", "-Infinity" and are stored as such.
    413 above `max_batch` points; 409 when the run no longer takes metrics.
    """
    points = parse_batch(body, settings.max_batch)  # validate before taking the write lock
    with db.write() as session:
        run_store.require_accepts_metrics(session, run_id=run_id)
        accepted, duplicates = metric_store.ingest_points(session, run_id=run_id, points=points)
    return IngestResult(accepted=accepted, duplicates=duplicates)


@router.get("/{run_id}/metrics", response_model=MetricsPublic)
def get_metrics(
    run_id: int,
    session: ReadSession,
    keys: Annotated[str | None, Query(description="comma-separated keys; all keys when omitted")] = None,
    since_step: Annotated[
        int | None, Query(ge=-1, description="only steps strictly greater (incremental reads)")
    ] = None,
    max_points: Annotated[
        int | None, Query(ge=4, le=1_000_000, description="downsample each series to at most this many points")
    ] = None,
) -> Response:
    """Series per key: {"series": {key: {"steps": [...], "values": [...], "times": [...]}}}.

    Downsampling keeps each bucket's min and max and always the first and last point.
    """
    run_store.get_run(session, run_id=run_id)
    key_list = None
    if keys is not None:
        key_list = [k for k in (s.strip() for s in keys.split(",")) if k]
        if not key_list:
            raise Invalid(["query", "keys"], "expected one or more comma-separated keys")
    if max_points is not None and since_step is None:  # long series come from the rollup
        raw = metric_store.query_downsampled(session, run_id=run_id, keys=key_list, max_points=max_points)
    else:
        raw = metric_store.query_series(session, run_id=run_id, keys=key_list, since_step=since_step)
    series: dict[str, Any] = {}
    for key, (steps, values, times) in raw.items():
        if max_points is not None and len(steps) > max_points:
            idx = minmax_indices(np.asarray(values, dtype=np.float64), max_points)
            steps = [steps[i] for i in idx]
            values = [values[i] for i in idx]
            times = [times[i] for i in idx]
        series[key] = {"steps": steps, "values": [encode_value(v) for v in values], "times": times}
    # orjson straight to bytes: series can hold hundreds of thousands of numbers.
    return Response(orjson.dumps({"series": series}), media_type="application/json")


@router.get("/{run_id}/keys")
def get_keys(run_id: int, session: ReadSession) -> KeysPublic:
    run_store.get_run(session, run_id=run_id)
    return KeysPublic(keys=metric_store.list_keys(session, run_id=run_id))


@router.get("/{run_id}/latest")
def get_latest(run_id: int, session: ReadSession) -> dict[str, dict[str, Any]]:
    """The last value of every key: {key: {step, value, time}} (for run tables and the dominance strip)."""
    run_store.get_run(session, run_id=run_id)
    latest = metric_store.latest_values(session, run_id=run_id)
    return {k: {"step": s, "value": encode_value(v), "time": t} for k, (s, v, t) in latest.items()}


# Referenced from openapi_extra above, so that /docs shows the ingest body's shape.
__all__ = ["MetricsBatch", "router"]
