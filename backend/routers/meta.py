"""Health and catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from cggm_core.config import catalog

from ..deps import ReadSession

router = APIRouter(prefix="/api", tags=["meta"])


@router.get("/health")
def health(session: ReadSession) -> dict[str, Any]:
    session.execute(text("SELECT 1"))
    return {"status": "ok", "database": session.get_bind().dialect.name}


@router.get("/catalog")
def get_catalog() -> dict[str, Any]:
    """Datasets, methods and trainer settings with types, defaults and bounds (builds the New-run form)."""
    return catalog()
