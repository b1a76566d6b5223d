"""Health and catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from cggm_core.config import catalog

from ..deps import DbDep
from ..faults import classify
from ..schemas.common import BAD_REQUEST, HealthPublic

router = APIRouter(prefix="/api", tags=["meta"], responses=BAD_REQUEST)


@router.get(
    "/health",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "the database is busy, or refuses writes (see detail)"}},
)
def health(db: DbDep) -> Any:
    """200 when the database takes writes (a write is tried and rolled back); 503 with the reason otherwise.

    A read-only store must not look healthy: clients would spool and retry forever against it.
    """
    dialect = db.engine.dialect.name
    try:
        # After a write failed for good, the probe goes to the disk: only a real write shows recovery.
        db.probe_write(commit=db.write_fault is not None)
    except DBAPIError as e:
        fault = classify(e)
        body = HealthPublic(
            status="busy" if fault.transient else "unwritable", database=dialect, writable=False, detail=fault.reason
        )
        headers = {"Retry-After": "1"} if fault.transient else None
        return JSONResponse(body.model_dump(), status_code=503, headers=headers)
    return HealthPublic(status="ok", database=dialect, writable=True, detail=None)


@router.get("/catalog")
def get_catalog() -> dict[str, Any]:
    """Datasets, methods and trainer settings with types, defaults and bounds (builds the New-run form)."""
    return catalog()
