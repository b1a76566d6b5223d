"""Worker protocol: claim the oldest queued job the worker can run, heartbeat (→ stop?), finish;
and the workers the backend has heard from."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Body, Response

from ..deps import DbDep, ReadSession, RunId, SettingsDep, WriteAuth
from ..lifecycle import sweep_lost
from ..schemas.common import COMMON_RESPONSES, CONFLICT, INVALID, NOT_FOUND, WRITE
from ..schemas.runs import ClaimRequest, HeartbeatPublic, RunFinish, RunPublic
from ..schemas.workers import WorkerCapabilities, WorkerPublic, WorkersPublic
from ..store import runs as run_store
from ..store import workers as worker_store

router = APIRouter(prefix="/api", tags=["workers"], responses={**COMMON_RESPONSES, **INVALID})


@router.post(
    "/workers/claim",
    dependencies=[WriteAuth],
    responses={**WRITE, 200: {"model": RunPublic}, 204: {"description": "no queued run this worker can run"}},
    response_model=None,
)
def claim(
    db: DbDep, settings: SettingsDep, body: Annotated[ClaimRequest | None, Body()] = None
) -> RunPublic | Response:
    """Atomically take the oldest queued run whose dataset and model this worker has: it becomes
    running on this worker. 204 when there is none. A claim without `capabilities` (a worker of an
    older version) can take runs of the built-in datasets and models. Every claim records the
    worker as seen (GET /api/workers)."""
    sweep_lost(db, settings)
    worker = body.worker if body is not None else "worker"
    reported = body.capabilities if body is not None else None
    capabilities = reported.model_dump() if reported is not None else None
    can = worker_store.can_run(capabilities)
    with db.write() as session:
        worker_store.seen(session, name=worker, capabilities=capabilities, now=time.time())
        run = run_store.claim_next(session, worker=worker, datasets=can.datasets, models=can.models)
        if run is None:
            return Response(status_code=204)
        return RunPublic.model_validate(run)


@router.get("/workers")
def list_workers(session: ReadSession, settings: SettingsDep) -> WorkersPublic:
    """Workers the backend has heard from, the most recently seen first: what each can run, its
    devices, whether it is connected (seen within the heartbeat timeout) and what it trains now."""
    workers = worker_store.list_workers(session)
    running = worker_store.running_runs(session, names=[w.name for w in workers])
    cutoff = time.time() - settings.heartbeat_timeout_s
    data = []
    for w in workers:
        can = worker_store.can_run(w.capabilities)
        data.append(
            WorkerPublic(
                name=w.name,
                connected=w.last_seen_at >= cutoff,
                first_seen_at=w.first_seen_at,
                last_seen_at=w.last_seen_at,
                capabilities=WorkerCapabilities.model_validate(w.capabilities) if w.capabilities is not None else None,
                datasets=sorted(can.datasets),
                models=sorted(can.models),
                running=running[w.name],
            )
        )
    return WorkersPublic(data=data, count=len(data))


@router.post("/runs/{run_id}/heartbeat", dependencies=[WriteAuth], responses={**WRITE, **NOT_FOUND, **CONFLICT})
def heartbeat(run_id: RunId, db: DbDep) -> HeartbeatPublic:
    """The worker is alive. `stop` is true when the run should stop (stop requested, or no longer active)."""
    with db.write() as session:
        run = run_store.heartbeat(session, run_id=run_id)
        if run.worker is not None and not run.external:
            worker_store.touch(session, name=run.worker, now=time.time())  # a busy worker is still connected
        return HeartbeatPublic(stop=run.status not in ("running",), status=run.status)  # type: ignore[arg-type]


@router.post("/runs/{run_id}/finish", dependencies=[WriteAuth], responses={**WRITE, **NOT_FOUND, **CONFLICT})
def finish(run_id: RunId, body: RunFinish, db: DbDep) -> RunPublic:
    """End a running, stopping or lost run as finished, failed or stopped, with its summary or error."""
    with db.write() as session:
        run = run_store.finish_run(session, run_id=run_id, status=body.status, summary=body.summary, error=body.error)
        return RunPublic.model_validate(run)
