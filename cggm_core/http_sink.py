"""HttpSink: the tracking sink that streams metric points to the backend and never loses one.

    log() ─► queue (memory) ─► sender thread ─► POST /api/runs/{id}/metrics
                                  │  the backend is down
                                  ▼
                               spool file ─► resent in chunks when it is back; each chunk's end
                               (per user,    is committed to `<spool>.acked`, so what the backend
                                per server    acknowledged is never sent again, even by a later
                                and run)      process or after the spool was damaged

Training never waits on the network: `log` only appends to a queue (a full queue overflows to the
spool). A batch is posted as the columnar body `{"series": [{key, steps, values, times}]}` (one
series per key; a backend that takes only rows gets the row body `{"points": [...]}`; the queue
and the spool hold one JSON point per line either way). What happens to a batch depends on the
answer:

- 200: delivered (`accepted`, `duplicates`: ingest is idempotent on (run, key, step)).
- 413: split in halves (the server's batch limit is below ours).
- 400/422 naming points (`loc` = body → points → i, or body → series → s [→ field → j]): those
  points are rejected, the rest resent.
  Any other 4xx but 401/408/409/429: the batch is rejected for good. Rejected points are dropped,
  counted and logged once (not once per batch); later points keep flowing.
- 500, 501, 505+, 401, 408, 409, 429 (the backend answers but refuses): the batch is retried with
  backoff for `refused_retry_s` (and at least `refused_attempts` times), then written to the
  dead-letter file beside the spool (`run-<id>.dead.jsonl`, one batch per line with the answer),
  so that later points still flow.
- No answer (connection refused, reset, timeout) or 502/503/504 (a proxy in front of a backend
  that is down; the backend's own 503 means "temporarily unavailable, retry"): the backend is
  down. The batch goes to the spool and is resent later; it is never dead-lettered for it.

The spool is read line by line from the committed offset (a million-point spool is resent in
constant memory); a truncated or corrupt line is skipped and counted. When the spool folder
cannot be written, points wait in a bounded in-memory buffer instead (one warning). `close()`
keeps delivering for `close_timeout_s` (minutes by default), then returns a `DeliveryReport`
and logs one line saying what could not be delivered; what is left stays in the named spool,
which the next HttpSink for the same server and run, or `cggm sync`, resends.

Where spools live and how they are read and written: cggm_core/spool.py (per user, per server,
one file per run; a lock keeps two processes off one spool).

Only httpx and the standard library: a GPU node with `pip install .` can use it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from .spool import Chunk, FileSpool, MemoryBuffer, SpoolBusy, SpoolLock, dead_letter_path, run_spool_paths
from .tracking import Point, point_to_json

log = logging.getLogger("cggm_core.http_sink")

# Answers that mean "the backend answers but will not take this batch now": retried, then dead-lettered.
REFUSED_4XX = (401, 408, 409, 429)
# Answers that mean "nothing is processing requests" (a gateway without its backend, or the
# backend's own "temporarily unavailable"): the same as no answer; the spool's job.
DOWN_5XX = (502, 503, 504)


# -- the report ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeliveryReport:
    """What became of the points logged to one HttpSink (and of its spool's earlier content)."""

    run_id: int
    delivered: int  # stored by the backend
    duplicates: int  # the backend had them already (a batch resent after an unanswered try)
    rejected: int  # refused for good (a 4xx): dropped
    dead_lettered: int  # refused persistently (5xx, 401, 408, 409, 429): in dead_letter_path
    left_in_spool: int  # not delivered yet: in spool_path, resent by the next sink or `cggm sync`
    corrupt_skipped: int  # spool lines that could not be read (a process killed mid-write)
    lost: int  # could not be kept anywhere (spool unwritable and the memory buffer full or gone)
    spooled: int  # went through the spool on their way (the backend was down or slow)
    spool_path: str | None
    dead_letter_path: str | None

    @property
    def complete(self) -> bool:
        """Everything logged reached the backend, or was refused by it for good."""
        return not (self.dead_lettered or self.left_in_spool or self.lost)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        out = f"run {self.run_id}: {self.delivered:,} points delivered ({self.duplicates:,} already stored)"
        if self.rejected:
            out += f", {self.rejected:,} rejected by the backend"
        if self.dead_lettered:
            out += f", {self.dead_lettered:,} dead-lettered in {self.dead_letter_path}"
        if self.left_in_spool:
            out += f", {self.left_in_spool:,} left in {self.spool_path} (resend with `cggm sync`)"
        if self.corrupt_skipped:
            out += f", {self.corrupt_skipped:,} corrupt spool lines skipped"
        if self.lost:
            out += f", {self.lost:,} LOST (no writable spool)"
        if self.complete and not (self.rejected or self.corrupt_skipped):
            out += "; nothing undelivered"
        return out


# -- the request body --------------------------------------------------------------------------------
_POINT_FIELDS = {"key", "step", "value", "time"}


def _columnar_body(lines: list[str]) -> tuple[bytes, list[list[int]]] | None:
    """`{"series": [{key, steps, values, times}]}` of these points (JSON lines, as queued and
    spooled), one series per key, and which line each element came from; None when a line is not
    a plain point (then the row body carries it as it is, and the backend names what is wrong).

    Measured against the row body (bench/backend_ingest_floor.py): the backend parses it ~3x
    faster, and a key is sent once per batch instead of once per point."""
    try:
        decoded = json.loads("[" + ",".join(lines) + "]")
    except ValueError:
        return None
    groups: dict[str, tuple[list[int], list[Any], list[Any], list[Any]]] = {}
    for i, p in enumerate(decoded):
        if type(p) is not dict or not p.keys() <= _POINT_FIELDS or type(p.get("key")) is not str:
            return None
        g = groups.get(p["key"])
        if g is None:
            g = groups[p["key"]] = ([], [], [], [])
        g[0].append(i)
        g[1].append(p.get("step"))
        g[2].append(p.get("value"))
        g[3].append(p.get("time"))
    series = [{"key": k, "steps": g[1], "values": g[2], "times": g[3]} for k, g in groups.items()]
    try:
        body = json.dumps({"series": series}, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a bare NaN in an old spool line: the row body sends it as it was
        return None
    return body.encode("utf-8"), [g[0] for g in groups.values()]


# -- the sink --------------------------------------------------------------------------------------
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
        spool_dir: str | Path | None = None,
        timeout_s: float = 10.0,
        max_backoff_s: float = 5.0,
        close_timeout_s: float = 300.0,
        refused_retry_s: float = 30.0,
        refused_attempts: int = 4,
        max_memory_points: int = 200_000,
        exclusive: bool = False,
        log_report: bool = True,
        columns: bool = True,
    ) -> None:
        """`spool_path` names the spool file; by default it is `run-<id>.jsonl` in the server's
        folder under `spool_dir` (default: the first writable of `spool.spool_roots()`).
        `close_timeout_s`: how long `close` keeps delivering while the backend is down.
        `refused_retry_s`, `refused_attempts`: how long and how often a batch the backend keeps
        refusing is retried before the dead letter. `max_memory_points`: the buffer used when no
        spool can be written. `exclusive`: raise SpoolBusy when another process holds the spool
        (else use a spool of our own beside it). `log_report`: log the report's line at close
        (`cggm sync` prints it instead). `columns`: post the columnar body (one series per key);
        False, or a backend that answers that it takes only rows, posts the row body."""
        if batch_size < 1 or max_queue < batch_size:
            raise ValueError(f"need 1 <= batch_size <= max_queue; got batch_size={batch_size}, max_queue={max_queue}")
        if close_timeout_s < 0 or refused_retry_s < 0 or refused_attempts < 1 or max_memory_points < 0:
            raise ValueError("close_timeout_s and refused_retry_s must be >= 0, refused_attempts >= 1")
        self.server = server.rstrip("/")
        self.url = f"{self.server}/api/runs/{run_id}/metrics"
        self.run_id = run_id
        self.batch_size = batch_size
        self.columns = columns
        self.flush_interval_s = flush_interval_s
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self.close_timeout_s = close_timeout_s
        self.refused_retry_s = refused_retry_s
        self.refused_attempts = refused_attempts
        self.log_report = log_report

        # Counters (read them after flush/close; `close` returns them as a DeliveryReport).
        self.accepted = 0
        self.duplicates = 0
        self.rejected = 0
        self.dead_lettered = 0
        self.corrupt_skipped = 0
        self.spooled = 0
        self.lost = 0
        self.last_error: str | None = None
        self._warned: set[str] = set()
        self._count_lock = threading.Lock()  # for the counters the training thread also moves

        self._memory = MemoryBuffer(max_memory_points)
        self._file: FileSpool | None = None
        self._file_writable = False
        self._lock: SpoolLock | None = None
        candidates = [Path(spool_path)] if spool_path is not None else run_spool_paths(server, run_id, spool_dir)
        self.spool_path: Path = candidates[0]
        self.dead_letter_path = dead_letter_path(candidates[0])
        self._open_spool(candidates, exclusive)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

        self._queue: deque[str] = deque()
        self._in_flight: list[str] = []
        self._cond = threading.Condition()
        self._first_queued_at = 0.0
        self._flush_requests = 0
        self._closing = False
        self._close_deadline = float("inf")
        self.close_started_at: float | None = None  # monotonic; RemoteRun shares the deadline
        self._abort = threading.Event()
        self._report: DeliveryReport | None = None
        self._backoff_s = 0.0
        self._next_retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name=f"cggm-http-sink-{run_id}", daemon=True)
        self._thread.start()

    def _open_spool(self, candidates: list[Path], exclusive: bool) -> None:
        """Own the first spool that can be written to; else points wait in memory (one warning)."""
        problems = []
        for path in candidates:
            try:
                self._lock, path = self._lock_spool(path, exclusive)
                try:
                    self._file = FileSpool(path)
                except OSError:
                    self._lock.release(remove=False)
                    self._lock = None
                    raise
            except OSError as e:
                problems.append(f"{path}: {e}")
                continue
            self.spool_path, self.dead_letter_path = path, dead_letter_path(path)
            self._file_writable = True
            return
        self._warn_once(
            "unwritable",
            "run %s: no spool can be written (%s); points wait in memory (up to %d) while the backend is unreachable",
            self.run_id,
            "; ".join(problems),
            self._memory.max_points,
        )

    @staticmethod
    def _lock_spool(path: Path, exclusive: bool) -> tuple[SpoolLock, Path]:
        """Lock `path`; when another process holds it, a spool of our own beside it (run-12.p<pid>-k)."""
        base = path.name.removesuffix(".jsonl")
        candidate = path
        for k in range(1, 101):
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                return SpoolLock(candidate), candidate
            except FileNotFoundError:  # another sink removed the empty folder just now: again
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                return SpoolLock(candidate), candidate
            except SpoolBusy:
                if exclusive:
                    raise
                candidate = path.with_name(f"{base}.p{os.getpid()}-{k}.jsonl")
        raise SpoolBusy(f"{path} and 100 alternatives beside it are in use")

    # -- the sink interface ----------------------------------------------------------------------
    def log(self, points: Iterable[Point]) -> None:
        lines = list(self._encode(points))
        if not lines:
            return
        overflow: list[str] = []
        with self._cond:
            if self._closing:
                raise RuntimeError("HttpSink is closed")
            if not self._thread.is_alive():
                overflow = lines  # the sender is gone (it logged why): keep the points for a later resend
            else:
                room = self.max_queue - len(self._queue)
                if room < len(lines):
                    lines, overflow = lines[:room], lines[room:]
                if not self._queue:
                    self._first_queued_at = time.monotonic()
                self._queue.extend(lines)
                if len(self._queue) >= self.batch_size:
                    self._cond.notify_all()
        if overflow:
            # The backend is slower than training (or away): keep the points on disk, never block.
            self._backlog_append(overflow)

    def _encode(self, points: Iterable[Point]) -> Iterator[str]:
        for p in points:
            try:
                yield json.dumps(point_to_json(p), allow_nan=False, separators=(",", ":"))
            except (TypeError, ValueError) as e:  # e.g. a non-finite time, a value that is not a number
                with self._count_lock:
                    self.rejected += 1
                self._warn_once("encode", "run %s: point %r cannot be sent (%s); it is dropped", self.run_id, p, e)

    def flush(self) -> None:
        """Wait until everything logged so far is delivered, spooled or refused."""
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

    def close(self) -> DeliveryReport:
        """Deliver what is queued and spooled (for up to close_timeout_s while the backend is down),
        stop the thread, log one line, and say what became of every point. Idempotent."""
        with self._cond:
            if self._report is not None:
                return self._report
            if not self._closing:
                self._closing = True
                self.close_started_at = time.monotonic()
                self._close_deadline = self.close_started_at + self.close_timeout_s
                self._cond.notify_all()
        try:
            # One post can take a few timeouts (connect, write, read); the thread checks the
            # deadline between posts.
            self._thread.join(timeout=self.close_timeout_s + 4 * self.timeout_s + self.max_backoff_s + 5.0)
        except BaseException:  # Ctrl-C while waiting: what is still in memory goes to the spool
            self._abandon()
            raise
        if self._thread.is_alive():
            log.error("run %s: the metrics sender did not stop in time; keeping what it holds", self.run_id)
            self._abandon()
        return self._finish_close()

    def _finish_close(self) -> DeliveryReport:
        with self._cond:
            if self._report is not None:
                return self._report
            self._client.close()
            left = self._file.count_pending() if self._file is not None else 0
            in_memory = len(self._memory.lines)  # gone when this process exits
            if in_memory:
                log.error("run %s: %d points could only be kept in memory and are lost", self.run_id, in_memory)
            if self._lock is not None:
                self._lock.release(remove=not left)
                self._lock = None
                if not left:  # leave no empty server folder behind (fails harmlessly when not empty)
                    with contextlib.suppress(OSError):
                        self.spool_path.parent.rmdir()
            self._report = DeliveryReport(
                run_id=self.run_id,
                delivered=self.accepted,
                duplicates=self.duplicates,
                rejected=self.rejected,
                dead_lettered=self.dead_lettered,
                left_in_spool=left,
                corrupt_skipped=self.corrupt_skipped,
                lost=self.lost + self._memory.dropped + in_memory,
                spooled=self.spooled,
                spool_path=str(self.spool_path) if self._file is not None else None,
                dead_letter_path=str(self.dead_letter_path) if self.dead_lettered else None,
            )
        report = self._report
        if not self.log_report:
            pass
        elif report.complete and not (report.rejected or report.corrupt_skipped):
            log.info("%s", report.line())
        else:
            log.warning("%s", report.line())
        return report

    def _abandon(self) -> None:
        """Stop sending; move the queue (and the batch in flight, which may then arrive twice:
        harmless, ingest is idempotent) to the spool."""
        self._abort.set()
        with self._cond:
            lines = [*self._in_flight, *self._queue]
            self._queue.clear()
            self._cond.notify_all()
        if lines:
            self._backlog_append(lines)

    def pending_spool(self) -> int:
        """Points waiting in the spool file or the memory buffer (not yet delivered)."""
        return (self._file.count_pending() if self._file is not None else 0) + len(self._memory.lines)

    # -- the background thread -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:  # the sender must never die silently; log() then spools directly
            log.exception("run %s: the metrics sender stopped; points logged from now on go to the spool", self.run_id)
            self._abandon()
        finally:
            with self._cond:
                self._in_flight = []
                self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._should_wake():
                    self._cond.wait(timeout=self._wait_s())
                closing = self._closing
                n = min(self.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
                self._in_flight = batch
                if self._queue:
                    self._first_queued_at = time.monotonic()
            try:
                if batch:
                    self._send_live(batch)
                if self._backlog_pending() and time.monotonic() >= self._next_retry_at:
                    self._drain_backlog(time_slice_s=0.5)
            except Exception as e:  # a bug, or a disk error: keep the batch, keep going
                self.last_error = repr(e)
                if "unexpected" in self._warned:
                    log.debug("run %s: unexpected error while sending metrics: %r", self.run_id, e)
                else:
                    self._warned.add("unexpected")
                    log.exception("run %s: unexpected error while sending metrics", self.run_id)
                if batch:
                    self._backlog_append(batch)
                self._schedule_retry()
            finally:
                with self._cond:
                    self._in_flight = []
                    self._cond.notify_all()
            if self._abort.is_set():
                return
            if closing:
                with self._cond:
                    if self._queue:
                        continue
                self._drain_before_exit()
                return

    def _should_wake(self) -> bool:
        if self._closing or self._abort.is_set() or (self._queue and self._flush_requests):
            return True
        if len(self._queue) >= self.batch_size:
            return True
        now = time.monotonic()
        if self._queue and now - self._first_queued_at >= self.flush_interval_s:
            return True
        return now >= self._next_retry_at and self._backlog_pending()

    def _wait_s(self) -> float:
        waits = [self.flush_interval_s]
        if self._backoff_s > 0:
            waits.append(max(0.01, self._next_retry_at - time.monotonic()))
        return min(waits)

    def _send_live(self, batch: list[str]) -> None:
        if self._backlog_pending():
            # Catching up: keep it simple, everything goes through the spool until it drains.
            self._backlog_append(batch)
            return
        if not self._deliver(batch):
            self._backlog_append(batch)
            self._schedule_retry()

    def _drain_backlog(self, time_slice_s: float) -> bool:
        """Send spooled chunks for up to time_slice_s; True when the backlog is empty."""
        end = time.monotonic() + time_slice_s
        while time.monotonic() < end and not self._abort.is_set():
            chunk = self._next_chunk()
            if chunk is None:
                self._backoff_s = 0.0
                return True
            if chunk.lines and not self._deliver(chunk.lines):
                self._schedule_retry()
                return False
            chunk.source.commit(chunk)  # acknowledged (or refused for good): never sent again
            self.corrupt_skipped += chunk.corrupt
            if chunk.corrupt:
                self._warn_once(
                    "corrupt",
                    "run %s: skipped corrupt lines in %s (a process killed mid-write?)",
                    self.run_id,
                    self.spool_path,
                )
        return not self._backlog_pending()

    def _drain_before_exit(self) -> None:
        while self._backlog_pending() and not self._abort.is_set():
            if self._drain_backlog(time_slice_s=1.0):
                return
            left = self._close_deadline - time.monotonic()
            if left <= 0:
                return
            if self._next_retry_at > time.monotonic():
                self._abort.wait(min(left, self._next_retry_at - time.monotonic()))

    def _schedule_retry(self) -> None:
        self._backoff_s = min(self.max_backoff_s, max(0.1, self._backoff_s * 2))
        self._next_retry_at = time.monotonic() + self._backoff_s

    # -- one batch -------------------------------------------------------------------------------
    def _deliver(self, lines: list[str]) -> bool:
        """Post until every point is delivered, rejected or dead-lettered (True), or the backend is
        down (False: the caller keeps them all; some may then arrive twice, which is harmless)."""
        refused_since: float | None = None
        attempts = 0
        backoff = 0.2
        rounds = 0
        while lines:
            body, series_index = self._body(lines)
            try:
                r = self._client.post(self.url, content=body, headers={"Content-Type": "application/json"})
            except httpx.TransportError as e:  # refused, reset, timeout: the backend is down
                self.last_error = f"{type(e).__name__}: {e}"
                return False
            code = r.status_code
            if code == 200:
                self._count_delivered(r, len(lines))
                return True
            if code == 413 and len(lines) > 1:
                half = len(lines) // 2
                return self._deliver(lines[:half]) and self._deliver(lines[half:])
            self.last_error = f"HTTP {code}: {r.text[:300]}"
            if code in DOWN_5XX:
                return False
            if code >= 500 or code in REFUSED_4XX:
                attempts += 1
                now = time.monotonic()
                refused_since = now if refused_since is None else refused_since
                if attempts >= self.refused_attempts and now - refused_since >= self.refused_retry_s:
                    self._dead_letter(lines, code, r.text)
                    return True
                if self._closing and now + backoff > self._close_deadline:
                    return False  # out of time: it stays in the spool, not in the dead letter
                if self._abort.wait(backoff):
                    return False
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            if code == 422 and series_index is not None and self._columns_unknown(r):
                # A backend from before the columnar body: rows from now on, and this batch again.
                self.columns = False
                log.info("run %s: the backend does not take the columnar body; sending rows", self.run_id)
                continue
            # Refused for good. 400/422 may name the bad points: drop those, resend the rest.
            bad = self._named_points(r, len(lines), series_index) if code in (400, 422) and rounds < 50 else set()
            rounds += 1
            if bad and len(bad) < len(lines):
                self._reject([lines[i] for i in sorted(bad)], code, r.text)
                lines = [line for i, line in enumerate(lines) if i not in bad]
                continue
            self._reject(lines, code, r.text)
            return True
        return True

    def _count_delivered(self, r: httpx.Response, n: int) -> None:
        try:
            data = r.json()
            self.accepted += int(data["accepted"])
            self.duplicates += int(data["duplicates"])
        except (ValueError, KeyError, TypeError):  # a 200 without our body (a proxy?): it was taken
            self.accepted += n

    def _body(self, lines: list[str]) -> tuple[bytes, list[list[int]] | None]:
        """The request body for these points, and for the columnar body which line each series
        element came from (to map a 422's `loc` back to points). Columns when the backend takes
        them (`columns`) and every line is a plain point; rows otherwise (the spool stays rows)."""
        if self.columns:
            columnar = _columnar_body(lines)
            if columnar is not None:
                return columnar
        return ('{"points":[' + ",".join(lines) + "]}").encode("utf-8"), None

    @staticmethod
    def _columns_unknown(r: httpx.Response) -> bool:
        """Whether a 422 says the backend knows only the row body (it asks for `points`, or
        calls `series` an unknown field)."""
        try:
            detail = r.json().get("detail")
        except (ValueError, AttributeError):
            return False
        for entry in detail if isinstance(detail, list) else []:
            if not isinstance(entry, dict):
                continue
            loc, kind = entry.get("loc"), entry.get("type")
            if (loc == ["body", "points"] and kind == "missing") or (
                loc == ["body", "series"] and kind == "extra_forbidden"
            ):
                return True
        return False

    @staticmethod
    def _named_points(r: httpx.Response, n: int, series_index: list[list[int]] | None = None) -> set[int]:
        """Indices of the points a 422 names in its `detail`: loc body, points, i, ... for rows;
        body, series, s, [steps|values|times, j] for columns (a series' key or shape: all of it)."""
        try:
            detail = r.json().get("detail")
        except (ValueError, AttributeError):
            return set()
        bad: set[int] = set()
        for entry in detail if isinstance(detail, list) else []:
            loc = entry.get("loc") if isinstance(entry, dict) else None
            if not isinstance(loc, list) or len(loc) < 3:
                continue
            if loc[:2] == ["body", "points"] and series_index is None:
                i = loc[2]
                if type(i) is int and 0 <= i < n:
                    bad.add(i)
            elif loc[:2] == ["body", "series"] and series_index is not None:
                s = loc[2]
                if type(s) is not int or not 0 <= s < len(series_index):
                    continue
                members = series_index[s]
                j = loc[4] if len(loc) >= 5 and loc[3] in ("steps", "values", "times") else None
                if type(j) is int and 0 <= j < len(members):
                    bad.add(members[j])
                else:
                    bad.update(members)
        return bad

    def _reject(self, lines: list[str], code: int, text: str) -> None:
        with self._count_lock:
            self.rejected += len(lines)
        self._warn_once(
            "rejected",
            "run %s: the backend refused %d points for good (HTTP %s: %s); they are dropped, later points are "
            "sent (further refusals are counted in the report at close)",
            self.run_id,
            len(lines),
            code,
            text[:300],
        )

    def _dead_letter(self, lines: list[str], code: int, text: str) -> None:
        head = json.dumps({"status": code, "error": text[:500], "time": time.time()})
        record = head[:-1] + ',"points":[' + ",".join(lines) + "]}\n"
        try:
            self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self.dead_letter_path.open("a", encoding="utf-8") as f:
                f.write(record)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            self.lost += len(lines)
            log.error(
                "run %s: %d points refused by the backend (HTTP %s) could not be written to %s (%s): lost",
                self.run_id,
                len(lines),
                code,
                self.dead_letter_path,
                e,
            )
            return
        self.dead_lettered += len(lines)
        self._warn_once(
            "dead",
            "run %s: the backend kept refusing %d points (HTTP %s: %s); they are in %s, later points are sent",
            self.run_id,
            len(lines),
            code,
            text[:300],
            self.dead_letter_path,
        )

    # -- the backlog: spool file, or memory when it cannot be written ------------------------------
    def _backlog_pending(self) -> bool:
        return (self._file is not None and self._file.pending) or self._memory.pending

    def _backlog_append(self, lines: list[str]) -> None:
        """Never raises: the file when it can be written, else the bounded memory buffer."""
        if self._file is not None and self._file_writable:
            try:
                self._file.append(lines)
                with self._count_lock:
                    self.spooled += len(lines)
                self._arm_retry()
                return
            except OSError as e:
                self._file_writable = False
                self._warn_once(
                    "unwritable",
                    "run %s: cannot write the spool %s (%s); points wait in memory (up to %d) while the backend is "
                    "unreachable",
                    self.run_id,
                    self.spool_path,
                    e,
                    self._memory.max_points,
                )
        dropped = self._memory.append(lines)
        with self._count_lock:
            self.spooled += len(lines) - dropped
        if dropped:
            self._warn_once("memory-full", "run %s: the in-memory buffer is full; points are being lost", self.run_id)
        self._arm_retry()

    def _arm_retry(self) -> None:
        if self._backoff_s == 0:
            self._schedule_retry()

    def _next_chunk(self) -> Chunk | None:
        if self._file is not None and self._file.pending:
            try:
                chunk = self._file.read_chunk(self.batch_size)
            except OSError as e:
                self._warn_once("unreadable", "run %s: cannot read the spool %s (%s)", self.run_id, self.spool_path, e)
                self._file.pending = False  # left in place; reported at close
                chunk = None
            if chunk is not None:
                return chunk
        return self._memory.read_chunk(self.batch_size)

    def _warn_once(self, what: str, msg: str, *args: Any) -> None:
        if what in self._warned:
            log.debug(msg, *args)
            return
        self._warned.add(what)
        log.warning(msg, *args)
