"""Declaring silent runs lost: on reads and claims, and from a background task."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from .db import Database
from .settings import Settings
from .store import runs as run_store

log = logging.getLogger("backend")


def sweep_lost(db: Database, settings: Settings) -> int:
    """Mark runs lost whose heartbeat is older than the timeout. Writes only when there are some."""
    with db.read() as session:
        candidates = run_store.find_lost_runs(session, timeout_s=settings.heartbeat_timeout_s)
    if not candidates:
        return 0
    with db.write() as session:
        return run_store.mark_lost(session, run_ids=candidates, timeout_s=settings.heartbeat_timeout_s)


async def sweep_lost_forever(db: Database, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.lost_check_interval_s)
        try:
            await run_in_threadpool(sweep_lost, db, settings)
        except Exception:  # the database may be briefly unavailable; the next sweep retries
            log.exception("lost-run sweep failed")
