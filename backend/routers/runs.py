"""Runs: create (queued job or external run), list, read, rename/tag, stop, delete, events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from cggm_core import plugins
from cggm_core.config import resolve
from cggm_core.settings import SettingError

from ..deps import DbDep, ReadSession, RunId, SettingsDep, WriteAuth
from ..errors import Invalid
from ..lifecycle import sweep_lost
from ..models import RUN_STATUSES, Run
from ..schemas.common import COMMON_RESPONSES, CONFLICT, INVALID, MAX_ID, NOT_FOUND, WRITE, OneLine, json_safe
from ..schemas.runs import EventsCreate, EventsPublic, RunCreate, RunPublic, RunsPublic, RunUpdate
from ..settings import Settings
from ..store import events as event_store
from ..store import runs as run_store
from ..store import workers as worker_store

router = APIRouter(prefix="/api/runs", tags=["runs"], responses={**COMMON_RESPONSES, **INVALID})

DEFAULT_PAGE = 100
_ONE_STATUS = "(?:" + "|".join(RUN_STATUSES) + ")"
STATUS_PATTERN = f"^ *{_ONE_STATUS}? *(?:, *{_ONE_STATUS}? *)*$"


@router.post("", status_code=201, dependencies=[WriteAuth], responses=WRITE)
def create_run(body: RunCreate, db: DbDep, settings: SettingsDep) -> RunPublic:
    """Queue a job (its config validated against the catalog) or open an external run (config kept as given)."""
    config = body.config
    if not body.external:
        try:
            # Store the resolved config: every default made explicit, so the run is reproducible.
            job = resolve(body.config, max_data_bytes=settings.max_job_data_bytes or None)
        except SettingError as e:
            raise Invalid(["body", "config"], str(e)) from None
        except Exception as e:  # a plugin's own check raised: name it rather than answer 500
            culprit = plugins.culprit(body.config)
            if culprit is None:
                raise
            raise Invalid(["body", "config"], f"{culprit} failed on this config: {type(e).__name__}: {e}") from None
        config = json_safe(job.flat())
    with db.write() as session:
        run = run_store.create_run(
            session, config=config, name=body.name, tags=body.tags, notes=body.notes, external=body.external
        )
        return _public(session, [run], settings)[0]


@router.get("")
def list_runs(
    db: DbDep,
    settings: SettingsDep,
    status: Annotated[
        str | None,
        Query(
            description=f"comma-separated statuses, of {', '.join(RUN_STATUSES)}",
            json_schema_extra={"pattern": STATUS_PATTERN},
        ),
    ] = None,
    method: Annotated[OneLine | None, Query(max_length=100)] = None,
    dataset: Annotated[OneLine | None, Query(max_length=100)] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            description=f"runs per page: at most the server's max_page; default {DEFAULT_PAGE} (or max_page if smaller)",
            json_schema_extra={"x-max-page": True},  # app.py writes the server's max_page here
        ),
    ] = None,
) -> RunsPublic:
    """Runs, newest first, filtered by status, method and dataset, one page at a time."""
    statuses = None
    if status:
        statuses = [s.strip() for s in status.split(",") if s.strip()]
        bad = [s for s in statuses if s not in RUN_STATUSES]
        if bad:
            raise Invalid(["query", "status"], f"unknown status {bad[0]!r}; allowed: {', '.join(RUN_STATUSES)}")
    if limit is None:
        limit = min(DEFAULT_PAGE, settings.max_page)
    if limit > settings.max_page:
        raise Invalid(["query", "limit"], f"limit {limit} is above the server's maximum page of {settings.max_page}")
    sweep_lost(db, settings)
    with db.read() as session:
        runs, total = run_store.list_runs(
            session, statuses=statuses, method=method, dataset=dataset, offset=offset, limit=limit
        )
        return RunsPublic(data=_public(session, runs, settings), count=total)


@router.get("/{run_id}", responses=NOT_FOUND)
def get_run(run_id: RunId, db: DbDep, settings: SettingsDep) -> RunPublic:
    sweep_lost(db, settings)
    with db.read() as session:
        return _public(session, [run_store.get_run(session, run_id=run_id)], settings)[0]


def _public(session: Session, runs: Sequence[Run], settings: Settings) -> list[RunPublic]:
    """The runs as the API shows them: a queued run that no connected worker can run says why."""
    reasons = worker_store.waiting_reasons(session, runs, window_s=settings.heartbeat_timeout_s)
    return [RunPublic.model_validate(r).model_copy(update={"waiting_reason": reasons.get(r.id)}) for r in runs]


@router.patch("/{run_id}", dependencies=[WriteAuth], responses={**WRITE, **NOT_FOUND})
def update_run(run_id: RunId, body: RunUpdate, db: DbDep) -> RunPublic:
    with db.write() as session:
        run = run_store.update_run(session, run_id=run_id, name=body.name, tags=body.tags, notes=body.notes)
        return RunPublic.model_validate(run)


@router.post("/{run_id}/stop", dependencies=[WriteAuth], responses={**WRITE, **NOT_FOUND, **CONFLICT})
def stop_run(run_id: RunId, db: DbDep) -> RunPublic:
    """Running → stopping (the worker stops at its next heartbeat); queued or lost → stopped."""
    with db.write() as session:
        return RunPublic.model_validate(run_store.request_stop(session, run_id=run_id))


@router.delete("/{run_id}", status_code=204, dependencies=[WriteAuth], responses={**WRITE, **NOT_FOUND})
def delete_run(run_id: RunId, db: DbDep) -> Response:
    with db.write() as session:
        run_store.delete_run(session, run_id=run_id)
    return Response(status_code=204)


@router.get("/{run_id}/events", responses=NOT_FOUND)
def list_events(
    run_id: RunId,
    session: ReadSession,
    after_id: Annotated[
        int, Query(ge=0, le=MAX_ID, description="only events with a larger id (incremental reads)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> EventsPublic:
    run_store.get_run(session, run_id=run_id)
    events = event_store.list_events(session, run_id=run_id, after_id=after_id, limit=limit)
    return EventsPublic.model_validate({"data": events}, from_attributes=True)


@router.post("/{run_id}/events", status_code=201, dependencies=[WriteAuth], responses={**WRITE, **NOT_FOUND})
def add_events(run_id: RunId, body: EventsCreate, db: DbDep) -> dict[str, int]:
    """Log lines from the worker or the user's script (progress notes, warnings, the error)."""
    with db.write() as session:
        run_store.get_run(session, run_id=run_id)
        for e in body.events:
            event_store.add_event(session, run_id=run_id, message=e.message, level=e.level, at=e.time)
    return {"accepted": len(body.events)}
