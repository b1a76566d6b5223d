"""Encoded full reads of one series, kept while the series is unchanged (issue 13, reads).

A full read of a series (`GET /api/runs/{id}/metrics?keys=...` without since_step or max_points)
costs the server about 0.7 µs a point of Python work, and under ingest that work waits for the GIL
row by row (the sqlite3 driver lets it go and takes it back for every row it steps): a
20,000-point read that takes ~26 ms alone took 44-130 ms (p50-p95) while 4 writers streamed. The run page and
Compare read whole series of runs that have often finished, again and again (each page load, each
viewer), so the encoded piece of each such series is kept here.

Validity: stored points are never changed (a step sent again keeps its first value) and are
deleted only with their run, so a series whose point count is what it was holds the same points.
Each read therefore counts the points of the keys it asks for (one indexed query, run by the
database without the GIL per row) and uses a kept piece only when the count matches. A run
deleted and a new one given the same id (SQLite may reuse the highest id) differ in created_at,
which is part of the entry's name. Another backend process writing to the same database changes
the count like this one does, so several processes may each keep their own entries.

Bounded by bytes (settings.read_cache_mb; 0 turns it off), least recently used first out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

Ident = tuple[int, float, str]  # run id, the run's created_at, key


class SeriesCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Ident, tuple[int, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, ident: Ident, count: int) -> bytes | None:
        with self._lock:
            entry = self._entries.get(ident)
            if entry is None or entry[0] != count:
                self.misses += 1
                return None
            self._entries.move_to_end(ident)
            self.hits += 1
            return entry[1]

    def put(self, ident: Ident, count: int, piece: bytes) -> None:
        if len(piece) > self.max_bytes // 4:  # one huge series would push everything else out
            return
        with self._lock:
            old = self._entries.pop(ident, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._entries[ident] = (count, piece)
            self._bytes += len(piece)
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)

    @property
    def size_bytes(self) -> int:
        return self._bytes
