"""Run events: short log lines (status changes, worker messages, errors)."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Event


def add_event(session: Session, *, run_id: int, message: str, level: str = "info", at: float | None = None) -> None:
    session.add(Event(run_id=run_id, time=time.time() if at is None else at, level=level, message=message))


def list_events(session: Session, *, run_id: int, after_id: int = 0, limit: int = 1000) -> list[Event]:
    query = select(Event).where(Event.run_id == run_id, Event.id > after_id).order_by(Event.id).limit(limit)
    return list(session.scalars(query))
