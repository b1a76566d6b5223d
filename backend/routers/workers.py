"""Worker protocol: claim the oldest queued job, heartbeat (→ stop?), finish."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response

from ..deps import DbDep, RunId, SettingsDep, WriteAuth
from ..lifecycle import sweep_lost
from ..schemas.common import COMMON_RESPONSES, CONFLICT, INVALID, NOT_FOUND, WRITE
from ..schemas.runs import ClaimRequest, HeartbeatPublic, RunFinish, RunPublic
from ..store import runs as run_store

router = APIRouter(prefix="/api", tags=["workers"], responses={**COMMON_RESPONSES, **INVALID, **WRITE})


@router.post(
    "/workers/claim",
    dependencies=[WriteAuth],
    responses={200: {"model": RunPublic}, 204: {"description": "no queued run"}},
    response_model=None,
)
def claim(
    db: DbDep, settings: SettingsDep, body: Annotated[ClaimRequest | None, Body()] = None
) -> RunPublic | Response:
    """Atomically take the oldest queued run: it becomes running on this worker. 204 when none is queued."""
    sweep_lost(db, settings)
    worker = body.worker if body is not None else "worker"
    with db.write() as session:
        run = run_store.claim_next(session, worker=worker)
        if run is None:
            return Response(status_code=204)
        return RunPublic.model_validate(run)


@router.post("/runs/{run_id}/heartbeat", dependencies=[WriteAuth], responses={**NOT_FOUND, **CONFLICT})
def heartbeat(run_id: RunId, db: DbDep) -> HeartbeatPublic:
    """The worker is alive. `stop` is true when the run should stop (stop requested, or no longer active)."""
    with db.write() as session:
        run = run_store.heartbeat(session, run_id=run_id)
        return HeartbeatPublic(stop=run.status not in ("running",), status=run.status)  # type: ignore[arg-type]


@router.post("/runs/{run_id}/finish", dependencies=[WriteAuth], responses={**NOT_FOUND, **CONFLICT})
def finish(run_id: RunId, body: RunFinish, db: DbDep) -> RunPublic:
    """End a running, stopping or lost run as finished, failed or stopped, with its summary or error."""
    with db.write() as session:
        run = run_store.finish_run(session, run_id=run_id, status=body.status, summary=body.summary, error=body.error)
        return RunPublic.model_validate(run)
