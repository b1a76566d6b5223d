"""Runs and their life cycle.

    queued ─claim─► running ─finish─► finished | failed | stopped
      │               │  ▲
      │ stop          │  └─ heartbeat (revives a 'lost' run whose worker comes back)
      ▼               ├─stop─► stopping ─finish─► ...
    stopped           └─ no heartbeat for heartbeat_timeout_s ─► lost

External runs (a user's script logging through the client) start as running, with no worker.
Once one heartbeats (cggm_core.remote.RemoteRun does, from its start) it is declared lost like a
worker's run when the beats stop, and running again when they resume; one that never heartbeats
(a script posting metrics by hand) is never declared lost.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, update
from sqlalchemy.orm import Session

from ..errors import Conflict, NotFound
from ..models import ACTIVE_STATUSES, Event, Latest, Metric, MetricBlock, Run
from .events import add_event

# A run takes metrics while something may still be logging to it. 'lost' is included: a worker
# cut off from the backend keeps training and resends its spooled points when it is back.
ACCEPTS_METRICS = ("running", "stopping", "lost")


def create_run(
    session: Session,
    *,
    config: dict[str, Any],
    name: str | None,
    tags: list[str],
    notes: str,
    external: bool,
) -> Run:
    now = time.time()
    dataset, method, model = config.get("dataset"), config.get("method"), config.get("model")
    run = Run(
        name=name or "",
        status="running" if external else "queued",
        external=external,
        config=config,
        dataset=str(dataset) if dataset is not None else None,
        method=str(method) if method is not None else None,
        # An external run's config is kept as given: its `model` may be anything, and fills the column only as a name.
        model=model if isinstance(model, str) and 0 < len(model) <= 100 else None,
        tags=tags,
        notes=notes,
        created_at=now,
        started_at=now if external else None,
    )
    session.add(run)
    session.flush()
    if not name:
        run.name = f"{run.dataset or 'run'}-{run.method or 'external'}-{run.id}"
    add_event(session, run_id=run.id, message="created (external)" if external else "queued", at=now)
    return run


def get_run(session: Session, *, run_id: int, for_update: bool = False) -> Run:
    query = select(Run).where(Run.id == run_id)
    if for_update:
        query = query.with_for_update()
    run = session.scalars(query).first()
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def list_runs(
    session: Session,
    *,
    statuses: list[str] | None,
    method: str | None,
    dataset: str | None,
    offset: int,
    limit: int,
) -> tuple[list[Run], int]:
    query = select(Run)
    if statuses:
        query = query.where(Run.status.in_(statuses))
    if method:
        query = query.where(Run.method == method)
    if dataset:
        query = query.where(Run.dataset == dataset)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    runs = session.scalars(query.order_by(Run.id.desc()).offset(offset).limit(limit))
    return list(runs), total


def update_run(session: Session, *, run_id: int, name: str | None, tags: list[str] | None, notes: str | None) -> Run:
    run = get_run(session, run_id=run_id, for_update=True)
    if name is not None:
        run.name = name
    if tags is not None:
        run.tags = tags
    if notes is not None:
        run.notes = notes
    return run


def delete_run(session: Session, *, run_id: int) -> None:
    get_run(session, run_id=run_id, for_update=True)
    # Explicit deletes: do not rely on ON DELETE CASCADE (SQLite enforces it only with a pragma).
    for table in (Metric, MetricBlock, Latest, Event):
        session.execute(delete(table).where(table.run_id == run_id))
    session.execute(delete(Run).where(Run.id == run_id))


def request_stop(session: Session, *, run_id: int) -> Run:
    run = get_run(session, run_id=run_id, for_update=True)
    now = time.time()
    if run.status in ("queued", "lost") or (run.external and run.heartbeat_at is None):
        # Nobody is training it, or nobody listens (an external run that never heartbeats): stopped now.
        run.status, run.ended_at = "stopped", now
    elif run.status == "running":
        run.status = "stopping"
    elif run.status == "stopping":
        return run
    else:
        raise Conflict(f"run {run_id} is {run.status}; only queued, running or lost runs can be stopped")
    add_event(session, run_id=run_id, message=f"stop requested: now {run.status}", at=now)
    return run


def claim_next(session: Session, *, worker: str, datasets: Collection[str], models: Collection[str]) -> Run | None:
    """Atomically take the oldest queued run whose dataset and model the worker has (SKIP LOCKED
    on PostgreSQL; the write lock on SQLite). A run without a model (stored before runs had one)
    runs its dataset's default model, which a worker with the dataset has."""
    query = (
        select(Run)
        .where(
            Run.status == "queued",
            Run.dataset.in_(list(datasets)),
            or_(Run.model.is_(None), Run.model.in_(list(models))),
        )
        .order_by(Run.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    run = session.scalars(query).first()
    if run is None:
        return None
    now = time.time()
    run.status, run.worker, run.started_at, run.heartbeat_at = "running", worker, now, now
    add_event(session, run_id=run.id, message=f"claimed by {worker}", at=now)
    return run


def heartbeat(session: Session, *, run_id: int) -> Run:
    run = get_run(session, run_id=run_id, for_update=True)
    now = time.time()
    if run.status == "queued":
        raise Conflict(f"run {run_id} is queued: claim it before sending heartbeats")
    if run.status in ACTIVE_STATUSES:
        run.heartbeat_at = now
    elif run.status == "lost":
        run.status, run.heartbeat_at = "running", now
        who = "its script" if run.external else "worker"
        add_event(session, run_id=run_id, message=f"{who} is back: running again", level="warning", at=now)
    return run


def finish_run(session: Session, *, run_id: int, status: str, summary: dict[str, Any] | None, error: str | None) -> Run:
    run = get_run(session, run_id=run_id, for_update=True)
    if run.status not in (*ACTIVE_STATUSES, "lost"):
        raise Conflict(f"run {run_id} is {run.status}; only running, stopping or lost runs can finish")
    now = time.time()
    run.status, run.ended_at, run.heartbeat_at = status, now, now
    run.summary, run.error = summary, error
    add_event(
        session, run_id=run_id, message=f"ended: {status}", level="error" if status == "failed" else "info", at=now
    )
    return run


def require_accepts_metrics(session: Session | Connection, *, run_id: int) -> None:
    if isinstance(session, Connection):
        # The ingest path: driver SQL, ~50 µs against ~350 µs for a compiled select (measured in
        # the same process, bench/backend_profile.py's batches), which is per request.
        ph = "?" if session.dialect.name == "sqlite" else "%s"
        status = session.exec_driver_sql(f"SELECT status FROM runs WHERE id = {ph}", (run_id,)).scalar()
    else:
        status = session.scalar(select(Run.status).where(Run.id == run_id))
    if status is None:
        raise NotFound(f"run {run_id} not found")
    if status not in ACCEPTS_METRICS:
        raise Conflict(f"run {run_id} is {status}; metrics are accepted only while it is {', '.join(ACCEPTS_METRICS)}")


def find_lost_runs(session: Session, *, timeout_s: float, now: float | None = None) -> list[int]:
    """Ids of active runs whose heartbeat is older than timeout_s (a read: cheap to call often).
    A run that never heartbeated (heartbeat_at NULL: an external run without heartbeats) is not."""
    cutoff = (time.time() if now is None else now) - timeout_s
    query = select(Run.id).where(Run.status.in_(ACTIVE_STATUSES), Run.heartbeat_at < cutoff)
    return list(session.scalars(query))


def mark_lost(session: Session, *, run_ids: list[int], timeout_s: float) -> int:
    """Mark these runs lost, re-checking the condition inside the write transaction."""
    now = time.time()
    cutoff = now - timeout_s
    result = session.execute(
        update(Run)
        .where(Run.id.in_(run_ids), Run.status.in_(ACTIVE_STATUSES), Run.heartbeat_at < cutoff)
        .values(status="lost")
        .returning(Run.id)
    )
    lost = list(result.scalars())
    for run_id in lost:
        add_event(session, run_id=run_id, message=f"lost: no heartbeat for {timeout_s:g} s", level="warning", at=now)
    return len(lost)
