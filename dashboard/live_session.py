"""A run page's live session, kept on the server: what the page holds, so a tick sends only what is new.

The page keeps its points in the browser and sends back only `{token, seq}`: the response it
applied last. The server keeps, per response it sent, a `Cursor` (the last step per key, the
events read, the text outputs sent). A tick starts from the cursor of the response the page
acknowledges, so a response Dash dropped (it drops an older response of a callback when a newer
request is in flight) is simply sent again, and nothing is lost or drawn twice. A token or seq the
server does not know (the dashboard restarted) asks the page to render from scratch.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from .progress import Progress

KEEP_CURSORS = 8  # responses a page may be behind before it renders from scratch
MAX_SESSIONS = 256
IDLE_TTL_S = 600.0


@dataclass(frozen=True)
class Cursor:
    last: dict[str, int] = field(default_factory=dict)  # last step the page holds, per key
    events_after: int = 0
    log_lines: int = 0  # lines in the page's log
    sent: dict[str, Any] = field(default_factory=dict)  # text outputs as the page shows them
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)  # panel id → its spec, as the page has it
    dominance: dict[str, Any] | None = None  # the strip's spec as the page has it
    progress: Progress = field(default_factory=Progress)

    def advanced(self, **changes: Any) -> Cursor:
        return replace(self, **changes)


@dataclass
class LiveSession:
    token: str
    run_id: int
    seq: int = 0
    cursors: dict[int, Cursor] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    touched: float = field(default_factory=time.monotonic)

    def base(self, seq: int) -> Cursor | None:
        return self.cursors.get(seq)

    def commit(self, cursor: Cursor) -> int:
        """Remember the cursor a new response leaves the page at; returns that response's seq."""
        self.seq += 1
        self.cursors[self.seq] = cursor
        for old in [s for s in self.cursors if s <= self.seq - KEEP_CURSORS]:
            del self.cursors[old]
        self.touched = time.monotonic()
        return self.seq


class Sessions:
    def __init__(self, max_sessions: int = MAX_SESSIONS, idle_ttl_s: float = IDLE_TTL_S) -> None:
        self._by_token: OrderedDict[str, LiveSession] = OrderedDict()
        self._lock = threading.Lock()
        self.max_sessions = max_sessions
        self.idle_ttl_s = idle_ttl_s

    def start(self, run_id: int, cursor: Cursor) -> LiveSession:
        session = LiveSession(token=secrets.token_urlsafe(9), run_id=run_id, cursors={0: cursor})
        with self._lock:
            self._by_token[session.token] = session
            self._evict()
        return session

    def get(self, token: str | None, run_id: int) -> LiveSession | None:
        if not token:
            return None
        with self._lock:
            session = self._by_token.get(token)
            if session is None or session.run_id != run_id:
                return None
            self._by_token.move_to_end(token)
            session.touched = time.monotonic()
            return session

    def _evict(self) -> None:
        now = time.monotonic()
        for token in [t for t, s in self._by_token.items() if now - s.touched > self.idle_ttl_s]:
            del self._by_token[token]
        while len(self._by_token) > self.max_sessions:
            self._by_token.popitem(last=False)

    def __len__(self) -> int:
        return len(self._by_token)


SESSIONS = Sessions()
