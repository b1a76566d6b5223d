"""HttpSink: the tracking sink that streams metric points to the backend.

Training never waits on the network: `log` appends to an in-memory queue; a background thread
posts batches to `POST /api/runs/{id}/metrics`. When the backend is unreachable (connection
refused, timeout, 5xx), batches go to a local JSON-lines spool file and are resent, with
exponential backoff, when it answers again. Resending is safe because ingest is idempotent on
(run, key, step). A full queue also overflows to the spool rather than blocking training.

`flush()` returns once everything logged so far is delivered or spooled; `close()` flushes, then
keeps trying to deliver the spool for up to `close_timeout_s` before giving up (the file stays, and
a new HttpSink with the same `spool_path` resends it on start).

Only httpx and the standard library: a GPU node with `pip install .` can use it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from .tracking import Point, point_to_json

log = logging.getLogger("cggm_core.http_sink")


class _Transient(Exception):
    """The backend did not take the batch now (unreachable, 5xx, 429); worth retrying later."""


class HttpSink:
    def __init__(
        self,
        server: str,
        run_id: int,
        token: str | None = None,
        batch_size: int = 1000,
        flush_interval_s: float = 0.5,
        max_queue: int = 200_000,
        spool_path: str | Path | None = None,
        timeout_s: float = 10.0,
        max_backoff_s: float = 5.0,
        close_timeout_s: float = 30.0,
    ) -> None:
        if batch_size < 1 or max_queue < batch_size:
            raise ValueError(f"need 1 <= batch_size <= max_queue; got batch_size={batch_size}, max_queue={max_queue}")
        self.url = f"{server.rstrip('/')}/api/runs/{run_id}/metrics"
        self.run_id = run_id
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_queue = max_queue
        self.max_backoff_s = max_backoff_s
        self.close_timeout_s = close_timeout_s
        if spool_path is None:
            spool_path = Path(tempfile.gettempdir()) / "cggm-spool" / f"run{run_id}-{uuid.uuid4().hex[:8]}.jsonl"
        self.spool_path = Path(spool_path)
        self._sending_path = self.spool_path.with_name(self.spool_path.name + ".sending")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

        # Counters (read them after flush/close): points the server stored, already had, refused.
        self.accepted = 0
        self.duplicates = 0
        self.rejected = 0
        self.spooled = 0
        self.last_error: str | None = None

        self._queue: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._first_queued_at = 0.0
        self._flush_requests = 0
        self._closing = False
        self._closed = False
        self._spool_lock = threading.Lock()
        self._backoff_s = 0.0
        self._next_retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name=f"cggm-http-sink-{run_id}", daemon=True)
        self._thread.start()

    # -- the sink interface ----------------------------------------------------------------------
    def log(self, points: Iterable[Point]) -> None:
        rows = [point_to_json(p) for p in points]
        if not rows:
            return
        overflow: list[dict[str, Any]] = []
        with self._cond:
            if self._closed:
                raise RuntimeError("HttpSink is closed")
            room = self.max_queue - len(self._queue)
            if room < len(rows):
                rows, overflow = rows[:room], rows[room:]
            if not self._queue:
                self._first_queued_at = time.monotonic()
            self._queue.extend(rows)
            if len(self._queue) >= self.batch_size:
                self._cond.notify_all()
        if overflow:
            # The backend is slower than training (or away): keep the points on disk, never block.
            self._spool(overflow)

    def flush(self) -> None:
        """Wait until everything logged so far is delivered or spooled."""
        self.wait_flushed(None)

    def wait_flushed(self, timeout_s: float | None) -> bool:
        """`flush` with a time limit: False when it ran out (or the sending thread is gone)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            self._flush_requests += 1
            self._cond.notify_all()
            try:
                while self._queue or self._in_flight:
                    if not self._thread.is_alive():
                        return False
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(timeout=0.5 if left is None else min(left, 0.5))
            finally:
                self._flush_requests -= 1
        return True

    def close(self) -> None:
        """Flush, try to deliver the spool (up to close_timeout_s), stop the thread. Idempotent."""
        with self._cond:
            if self._closed:
                return
        self.flush()
        with self._cond:
            self._closing = True
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=self.close_timeout_s + 5.0)
        self._client.close()
        if self.pending_spool():
            log.warning(
                "run %s: %d points could not be delivered; they stay in %s and are resent by a new HttpSink "
                "with the same spool_path",
                self.run_id,
                self.pending_spool(),
                self.spool_path,
            )

    def pending_spool(self) -> int:
        """Points waiting in the spool files (not yet delivered)."""
        n = 0
        with self._spool_lock:
            for path in (self._sending_path, self.spool_path):
                if path.exists():
                    with path.open("rb") as f:
                        n += sum(1 for line in f if line.strip())
        return n

    # -- the background thread -------------------------------------------------------------------
    def _run(self) -> None:
        self._resend_spool()  # a spool left by an earlier process for this run
        while True:
            with self._cond:
                while not self._should_wake():
                    self._cond.wait(timeout=self._wait_s())
                closing = self._closing
                n = min(self.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
                self._in_flight = n
                if self._queue:
                    self._first_queued_at = time.monotonic()
            try:
                if batch:
                    self._deliver_or_spool(batch)
                if self._has_spool() and time.monotonic() >= self._next_retry_at:
                    self._resend_spool()
            except Exception as e:  # never let the thread die silently: the points go to the spool
                log.exception("run %s: unexpected error while sending metrics", self.run_id)
                self.last_error = repr(e)
                if batch:
                    self._spool(batch)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
            if closing:
                with self._cond:
                    if self._queue:
                        continue
                self._drain_spool_before_exit()
                return

    def _should_wake(self) -> bool:
        if self._closing or (self._queue and self._flush_requests):
            return True
        if len(self._queue) >= self.batch_size:
            return True
        now = time.monotonic()
        if self._queue and now - self._first_queued_at >= self.flush_interval_s:
            return True
        return self._backoff_s > 0 and now >= self._next_retry_at and self._has_spool()

    def _wait_s(self) -> float:
        waits = [self.flush_interval_s]
        if self._backoff_s > 0:
            waits.append(max(0.01, self._next_retry_at - time.monotonic()))
        return min(waits)

    def _drain_spool_before_exit(self) -> None:
        deadline = time.monotonic() + self.close_timeout_s
        while self._has_spool() and time.monotonic() < deadline:
            if self._resend_spool():
                return
            time.sleep(min(self._backoff_s, max(0.0, deadline - time.monotonic())))

    def _deliver_or_spool(self, batch: list[dict[str, Any]]) -> None:
        if self._has_spool():
            # Offline: keep the order simple, everything goes through the spool until it drains.
            self._spool(batch)
            return
        try:
            self._post(batch)
        except _Transient as e:
            self.last_error = str(e)
            self._spool(batch)
            self._schedule_retry()

    def _post(self, batch: list[dict[str, Any]]) -> None:
        """Send one batch; raise _Transient if it should be retried later."""
        body = json.dumps({"points": batch}, allow_nan=False).encode()
        try:
            r = self._client.post(self.url, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as e:  # refused, reset, timeout
            raise _Transient(f"{type(e).__name__}: {e}") from None
        if r.status_code == 200:
            data = r.json()
            self.accepted += int(data["accepted"])
            self.duplicates += int(data["duplicates"])
            return
        if r.status_code >= 500 or r.status_code in (408, 429):
            raise _Transient(f"HTTP {r.status_code}: {r.text[:200]}")
        if r.status_code == 413 and len(batch) > 1:  # the server's batch limit is below ours
            half = len(batch) // 2
            self._post(batch[:half])
            self._post(batch[half:])
            return
        # 4xx: the run is unknown or finished, or the points are invalid. Retrying cannot help.
        self.rejected += len(batch)
        self.last_error = f"HTTP {r.status_code}: {r.text[:500]}"
        log.warning("run %s: backend refused %d points: %s", self.run_id, len(batch), self.last_error)

    def _schedule_retry(self) -> None:
        self._backoff_s = min(self.max_backoff_s, max(0.1, self._backoff_s * 2))
        self._next_retry_at = time.monotonic() + self._backoff_s

    # -- the spool ------------------------------------------------------------------------------
    def _has_spool(self) -> bool:
        return self._sending_path.exists() or self.spool_path.exists()

    def _spool(self, rows: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
        with self._spool_lock:
            self.spool_path.parent.mkdir(parents=True, exist_ok=True)
            with self.spool_path.open("a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            self.spooled += len(rows)
        if self._backoff_s == 0:
            self._schedule_retry()

    def _resend_spool(self) -> bool:
        """Send the spool files; True when both are gone. The `.sending` file is the one being
        resent, so that `log` can keep appending to the spool without holding the lock over network."""
        for _ in range(2):  # new points may be spooled while the first pass runs
            with self._spool_lock:
                if not self._sending_path.exists() and self.spool_path.exists():
                    os.replace(self.spool_path, self._sending_path)
                if not self._sending_path.exists():
                    self._backoff_s = 0.0
                    return True
                lines = self._sending_path.read_text(encoding="utf-8").splitlines()
            rows = [json.loads(line) for line in lines if line.strip()]
            try:
                for i in range(0, len(rows), self.batch_size):
                    self._post(rows[i : i + self.batch_size])
            except _Transient as e:
                self.last_error = str(e)
                self._schedule_retry()
                return False
            with self._spool_lock:
                self._sending_path.unlink()
        done = not self._has_spool()
        if done:
            self._backoff_s = 0.0
        return done
