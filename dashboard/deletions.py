"""Deletes that can be undone: a confirmed delete waits `UNDO_S` seconds before it reaches the backend.

The backend's DELETE is final (metrics, events, the run), so the undo lives here: the runs are
hidden from the table at once and deleted when the window closes, unless Undo cancels it. The
wait runs in this process, so closing the page does not cancel a confirmed delete; a dashboard
restart inside the window does (nothing is deleted: the safe side).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("dashboard")

UNDO_S = float(os.environ.get("CGGM_DASHBOARD_UNDO_S", "10"))  # the tests shorten it


@dataclass
class Pending:
    token: str
    run_ids: tuple[int, ...]
    timer: threading.Timer | None = None
    done: bool = False
    errors: list[str] = field(default_factory=list)


class Deletions:
    def __init__(self, delete: Callable[[int], None], undo_s: float = UNDO_S) -> None:
        self._delete = delete
        self.undo_s = undo_s
        self._pending: dict[str, Pending] = {}
        self._lock = threading.Lock()
        self.failures: list[str] = []  # shown once by the runs page, then cleared

    def schedule(self, run_ids: list[int]) -> Pending:
        p = Pending(secrets.token_urlsafe(6), tuple(run_ids))
        p.timer = threading.Timer(self.undo_s, self._run, args=(p.token,))
        p.timer.daemon = True
        with self._lock:
            self._pending[p.token] = p
        p.timer.start()
        return p

    def undo(self, token: str) -> bool:
        """Cancel a delete still inside its window; False if it is gone already."""
        with self._lock:
            p = self._pending.pop(token, None)
        if p is None or p.done:
            return False
        assert p.timer is not None
        p.timer.cancel()
        return True

    def hidden(self) -> set[int]:
        """Runs whose delete is pending: the table leaves them out."""
        with self._lock:
            return {i for p in self._pending.values() for i in p.run_ids}

    def take_failures(self) -> list[str]:
        with self._lock:
            out, self.failures = self.failures, []
        return out

    def _run(self, token: str) -> None:
        with self._lock:
            p = self._pending.get(token)
            if p is None:
                return
            p.done = True
        for run_id in p.run_ids:
            try:
                self._delete(run_id)
            except Exception as e:
                msg = f"run {run_id} was not deleted: {getattr(e, 'message', e)}"
                log.warning(msg)
                with self._lock:
                    self.failures.append(msg)
        with self._lock:
            self._pending.pop(token, None)

    def flush(self) -> None:
        """Run every pending delete now (tests, shutdown)."""
        with self._lock:
            tokens = list(self._pending)
        for t in tokens:
            p = self._pending.get(t)
            if p is not None and p.timer is not None:
                p.timer.cancel()
            self._run(t)
