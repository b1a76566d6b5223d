"""Full series reads in a helper process while metrics stream in (issue 13, reads).

A full read of a series is a fetch of its rows and their encoding: ~11 ms of CPU for 20,000
points. In the server process, under ingest, the sqlite3 driver lets the GIL go and takes it
back for every row it steps, and every ingest thread does the same for every row it inserts, so
the read's rows wait for the GIL one by one. Measured on 2 cores while 4 writers streamed
(bench/backend_read_helpers.py, BENCHMARKS §3.0e): a cold 20,000-point read took p50 36-41 /
p95 63-67 ms in the server and 28-29 / 38-42 ms through a helper.

So while metrics are being written (an ingest request in the last BUSY_S seconds), two kinds of
read run in `settings.read_processes` helper processes, each with its own engine on the same
database (SQLite in WAL mode lets other processes read while the server writes): full reads that
fit one piece (at most settings.read_chunk_points points in all; longer ones are streamed in the
server, chunk by chunk), and downsampled reads (the run page's: every key at most max_points,
up to HELPER_MAX_DOWNSAMPLED_POINTS in all, in backend/routers/metrics.py). A helper returns each
key's point count and encoded piece, the bytes the server would have built, so the answers and
the read cache are the same either way. With no ingest going on a read stays in the
server, which saves the hop, and a read that finds every helper busy is the server's too rather
than wait in line behind another. On PostgreSQL the helper made reads under ingest slower (same bench),
probably because psycopg receives a result without giving the GIL back row by row, so there is
little to win and the hop still costs; there it is off unless asked for.

The helpers start when the first batch arrives, in the background; reads run in the server until
they are up. Faults cost nothing but speed: a helper that dies or cannot start (BrokenProcessPool,
OSError), or a read that fails in it, is answered by the server as before, and a broken pool is
started again at the next batch. The helpers stop with the server, and leave by themselves when
it is killed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Pieces = dict[str, tuple[int, bytes]]  # key -> (its points, its encoded piece)

BUSY_S = 2.0  # reads go to a helper while the last batch is younger than this
ORPHAN_CHECK_S = 0.5  # how often a helper looks whether its server is still there

_child_db: Any = None


def _start_child(url: str, server_pid: int) -> None:
    global _child_db
    import signal

    from .db import Database

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops its helpers

    # A server killed outright (SIGKILL, OOM) cannot stop its helpers, and a helper holds both ends
    # of its task pipe, so it would never see the end of it: it leaves when it is orphaned.
    # The server's pid comes with the start: it may have been killed while this helper started.
    def watch() -> None:
        while os.getppid() == server_pid:
            time.sleep(ORPHAN_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="cggm-read-helper-orphan-watch", daemon=True).start()

    _child_db = Database(url)


def _ping() -> int:
    return os.getpid()


@dataclass(frozen=True)
class ReadRequest:
    """A read: the series (after since_step when given; at most max_rows points in all, else the
    answer is None and the server streams it), or, with max_points, each key downsampled (the run
    page's read). routers.metrics.run_read carries it out, in a helper or in the server."""

    run_id: int
    keys: list[str] | None
    max_rows: int = 0
    since_step: int | None = None
    max_points: int | None = None


def _read_in_child(req: ReadRequest) -> Pieces | None:
    from .routers.metrics import run_read

    return run_read(_child_db, req)


def reachable_from_another_process(url: str) -> bool:
    """False for an in-memory SQLite database: a helper would open an empty one of its own."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return True
    name = u.database or ""
    return name not in ("", ":memory:") and "mode=memory" not in name and u.query.get("mode") != "memory"


class ReadPool:
    def __init__(self, url: str, processes: int, busy_s: float = BUSY_S) -> None:
        self.url = url
        self.processes = processes
        self.busy_s = busy_s
        self._pool: ProcessPoolExecutor | None = None
        self._ready = False
        self._lock = threading.Lock()
        self._closed = False
        self._starting = threading.Event()  # a start is under way (in its own thread)
        self._last_write = -1e18
        self._in_flight = 0
        self.served = 0  # reads a helper answered
        self.overflows = 0  # reads the server did itself because every helper was busy
        self.fallbacks = 0  # reads the server did itself because a helper failed

    def note_write(self) -> None:
        """An ingest request arrived: reads go to the helpers for the next busy_s seconds (started now if needed)."""
        self._last_write = time.monotonic()
        if self._pool is None and not self._closed and not self._starting.is_set():
            # Spawning takes ~11 ms (measured): not in the ingest request that happens to be first.
            self._starting.set()
            threading.Thread(target=self._start, name="cggm-read-helper-start", daemon=True).start()

    def _start(self) -> None:
        try:
            self._spawn()
        finally:
            self._starting.clear()

    def _spawn(self) -> None:
        with self._lock:
            if self._closed or self._pool is not None:
                return
            pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_child,
                initargs=(self.url, os.getpid()),
            )
            self._pool, self._ready = pool, False
        try:
            warm = [pool.submit(_ping) for _ in range(self.processes)]
        except (BrokenProcessPool, OSError, RuntimeError) as e:
            log.warning("read helpers could not start (%s); reads stay in the server", e)
            self._discard(pool)
            return

        def up(_f: Future[int]) -> None:
            if all(f.done() and not f.cancelled() and f.exception() is None for f in warm):
                with self._lock:
                    if self._pool is pool:
                        self._ready = True

        for f in warm:
            f.add_done_callback(up)

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool, self._ready = None, False
        pool.shutdown(wait=False, cancel_futures=True)

    def read(self, req: ReadRequest, in_process: Callable[[], Pieces | None]) -> Pieces | None:
        """The pieces from a helper while ingest is going on and the helpers are up; else `in_process()`."""
        pool = self._pool
        if pool is None or not self._ready or time.monotonic() - self._last_write > self.busy_s:
            return in_process()
        with self._lock:
            if self._in_flight >= self.processes:  # every helper busy: here, rather than wait in line
                self.overflows += 1
                busy = True
            else:
                self._in_flight += 1
                busy = False
        if busy:
            return in_process()
        failed = False
        try:
            got = pool.submit(_read_in_child, req).result()
        except (BrokenProcessPool, OSError, RuntimeError) as e:
            # RuntimeError: the pool was shut down under this read (the server stopping, or discarded)
            log.warning("read helper failed (%s); reading in the server", e)
            failed = True
            self._discard(pool)
        except Exception as e:  # e.g. a database error: the server's own read reports it
            log.warning("read helper failed (%s: %s); reading in the server", type(e).__name__, e)
            failed = True
        finally:
            with self._lock:
                self._in_flight -= 1
        if failed:
            self.fallbacks += 1
            return in_process()
        self.served += 1
        return got

    def helper_pids(self) -> list[int]:
        pool = self._pool
        procs = getattr(pool, "_processes", None) or {}
        return sorted(procs)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool, self._ready = self._pool, None, False
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
