"""The training side of a run's life on the backend, in one place (DESIGN §8).

    RemoteRun.create(server, config)   a new external run: a user's own loop, `cggm train --server`
    RemoteRun(client, run_id)          a job a worker claimed (BackendClient.claim)
      .sink           HttpSink: batched, spooled while the backend is down, never loses a point
      .should_stop()  the backend asked to stop (Stop in the dashboard), as the heartbeats report it
      .finish(status, summary) / .fail(exc)  — or use the run as a context manager

Ending a run: the sink is closed first (every point delivered, or left in the run's named spool),
then `finish` is posted; both retry while the backend is unreachable, for `retry_s` together
(minutes by default). When points are left in the spool, or the backend never answers, the end is
written beside the spool instead (`run-<id>.finish.json`) and `cggm sync` reports it once the
points are in: a finished run would refuse them. Heartbeats go on until then, so a run whose
process dies becomes `lost` on the backend, and one that comes back is `running` again.

HTTP only (httpx); nothing here imports torch or the backend.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from .http_sink import DeliveryReport, HttpSink
from .spool import SpoolBusy, find_finish_records, find_spools, finish_record_path, remove_orphan_locks
from .tracking import json_safe

log = logging.getLogger("cggm_core.remote")

TRACEBACK_TAIL_CHARS = 4000
DEFAULT_RETRY_S = 300.0  # how long the end of a run keeps trying while the backend is unreachable


class BackendError(Exception):
    """The backend cannot be reached, or refused a request; the message says which and why."""


class BackendClient:
    """The HTTP side of the run protocol (create, claim, heartbeat, finish), over one httpx client."""

    def __init__(self, server: str, token: str | None = None, timeout_s: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.server, timeout=timeout_s, headers=headers)
        self.legacy_claims = False  # the backend does not take capabilities in claims (an older version)

    def create_run(
        self, config: dict[str, Any], *, name: str | None = None, tags: list[str] | None = None
    ) -> dict[str, Any]:
        """A new external run (running at once); raises BackendError."""
        body = {"config": json_safe(config), "external": True, "name": name, "tags": tags or []}
        try:
            r = self.http.post("/api/runs", json=body)
        except httpx.HTTPError as e:
            raise BackendError(f"cannot reach {self.server} ({type(e).__name__}: {e})") from None
        if r.status_code != 201:
            raise BackendError(f"the backend refused the run: HTTP {r.status_code} {r.text[:300]}")
        run: dict[str, Any] = r.json()
        return run

    def claim(self, worker: str, capabilities: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The oldest queued run this worker can run (None: none). With `capabilities` (what it can
        run: cggm_core.worker.capabilities) the backend hands it only runs whose dataset and model it
        has. A backend of an older version refuses the field (422): the claim is then sent without
        it, from then on, as that backend expects, with one warning."""
        body: dict[str, Any] = {"worker": worker}
        if capabilities is not None and not self.legacy_claims:
            body["capabilities"] = capabilities
        r = self.http.post("/api/workers/claim", json=body)
        if r.status_code == 422 and "capabilities" in body and _refuses_field(r, "capabilities"):
            self.legacy_claims = True
            log.warning(
                "the backend at %s is of an older version that does not take worker capabilities: claiming without "
                "them, so it may hand this worker jobs whose dataset or model it does not have",
                self.server,
            )
            return self.claim(worker)
        if r.status_code == 204:
            return None
        r.raise_for_status()
        run: dict[str, Any] = r.json()
        return run

    def heartbeat(self, run_id: int) -> bool:
        """True when the run should stop. 404/409 (deleted, no longer active) also mean stop."""
        r = self.http.post(f"/api/runs/{run_id}/heartbeat")
        if r.status_code in (404, 409):
            return True
        r.raise_for_status()
        return bool(r.json()["stop"])

    def finish(
        self, run_id: int, status: str, summary: dict[str, Any] | None, error: str | None, retry_s: float
    ) -> bool:
        """Report the run's end. True once the backend answered (a refusal is logged: nothing to
        retry); False when it stayed unreachable (or answered 5xx) for retry_s."""
        body = {"status": status, "summary": summary, "error": error}
        deadline = time.monotonic() + retry_s
        delay = 0.2
        while True:
            try:
                r = self.http.post(f"/api/runs/{run_id}/finish", json=body)
                if r.status_code < 500:
                    if r.status_code >= 400:
                        log.error("run %s: finish refused: HTTP %s %s", run_id, r.status_code, r.text[:300])
                    return True
                problem = f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}"
            if time.monotonic() + delay > deadline:
                log.error("run %s: could not report its end (%s)", run_id, problem)
                return False
            log.warning("run %s: backend unreachable while finishing (%s); retrying", run_id, problem)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def healthy(self) -> bool:
        try:
            return self.http.get("/api/health").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.http.close()


def _refuses_field(r: httpx.Response, field: str) -> bool:
    """A 422 whose errors name the body field `field` (FastAPI's `loc`: ["body", field, ...])."""
    try:
        detail = r.json().get("detail")
    except ValueError:
        return False
    return isinstance(detail, list) and any(
        isinstance(d, dict) and list(d.get("loc") or [])[:2] == ["body", field] for d in detail
    )


class HeartbeatThread(threading.Thread):
    """Beats every interval_s (the first at once); sets `stop` when the backend says so. An
    unreachable backend is not a reason to stop training (the sink spools); if it lasts, the
    backend declares the run lost, and the next beat that reaches it makes it running again."""

    def __init__(self, client: BackendClient, run_id: int, interval_s: float, stop: threading.Event) -> None:
        super().__init__(name=f"cggm-heartbeat-{run_id}", daemon=True)
        self.client, self.run_id, self.interval_s, self.stop = client, run_id, interval_s, stop
        self.done = threading.Event()

    def run(self) -> None:
        failing = False
        while not self.done.is_set():
            try:
                if self.client.heartbeat(self.run_id) and not self.stop.is_set():
                    log.info("run %s: the server asked to stop", self.run_id)
                    self.stop.set()
                failing = False
            except Exception as e:  # unreachable, a 5xx, an odd answer: the next beat tries again
                if not failing:  # one line per outage, not one per beat
                    log.warning("run %s: heartbeat failed: %s: %s", self.run_id, type(e).__name__, e)
                failing = True
            self.done.wait(self.interval_s)


class RemoteRun:
    """One run on the backend, from the side that trains it: its sink, its heartbeats, its end."""

    def __init__(
        self,
        client: BackendClient,
        run_id: int,
        *,
        heartbeat_s: float = 2.0,
        retry_s: float = DEFAULT_RETRY_S,
        spool_dir: str | Path | None = None,
        also_stop: Callable[[], bool] | None = None,
        owns_client: bool = False,
        sink_options: dict[str, Any] | None = None,
    ) -> None:
        """`retry_s`: how long closing the sink and posting the end keep trying, together, while
        the backend is unreachable. `also_stop`: another reason to stop (a worker's SIGTERM)."""
        self.client = client
        self.run_id = run_id
        self.retry_s = retry_s
        self._also_stop = also_stop
        self._owns_client = owns_client
        self.sink = HttpSink(
            client.server,
            run_id,
            token=client.token,
            spool_dir=spool_dir,
            close_timeout_s=retry_s,
            **(sink_options or {}),
        )
        self._stop = threading.Event()
        self._beat = HeartbeatThread(client, run_id, heartbeat_s, self._stop)
        self._beat.start()
        self.status: str | None = None  # set once the run has ended
        self.report: DeliveryReport | None = None

    @classmethod
    def create(
        cls,
        server: str,
        config: dict[str, Any],
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        token: str | None = None,
        **options: Any,
    ) -> RemoteRun:
        """Open a new external run and start streaming to it; raises BackendError."""
        client = BackendClient(server, token)
        try:
            run = client.create_run(config, name=name, tags=tags)
            # One beat before anything else: from now on the backend declares the run lost if
            # this process dies (an external run that never beat is never declared lost).
            with contextlib.suppress(httpx.HTTPError):
                client.heartbeat(int(run["id"]))
        except BaseException:
            client.close()
            raise
        return cls(client, int(run["id"]), owns_client=True, **options)

    @property
    def url(self) -> str:
        return f"{self.client.server}/api/runs/{self.run_id}"

    def should_stop(self) -> bool:
        """The backend asked this run to stop (or `also_stop` says so): end the loop, then finish."""
        return self._stop.is_set() or (self._also_stop is not None and self._also_stop())

    # -- the end ---------------------------------------------------------------------------------
    def finish(
        self, status: str | None = None, summary: dict[str, Any] | None = None, error: str | None = None
    ) -> DeliveryReport:
        """Deliver every point, then report the end: `status` defaults to stopped when a stop was
        asked, else finished. The summary gets the sink's `delivery` report. Idempotent."""
        if self.status is not None and self.report is not None:
            return self.report
        if status is None:
            status = "stopped" if self.should_stop() else "finished"
        try:
            report = self.sink.close()
            summary = json_safe({**(summary or {}), "delivery": report.as_dict()})
            started = self.sink.close_started_at or time.monotonic()
            left_s = max(10.0, started + self.retry_s - time.monotonic())
            if report.left_in_spool:
                # A finished run takes no more metrics: the end waits until `cggm sync` delivers them.
                told = False
                log.warning(
                    "run %s: %d points are still in %s; the run's end (%s) is kept beside it and reported by "
                    "`cggm sync --server %s` once they are delivered",
                    self.run_id,
                    report.left_in_spool,
                    report.spool_path,
                    status,
                    self.client.server,
                )
            else:
                told = self.client.finish(self.run_id, status, summary, error, retry_s=left_s)
            if not told:
                self._keep_finish_record(status, summary, error)
        finally:
            self._beat.done.set()
            self._beat.join(timeout=15.0)  # a beat in flight, before its client may be closed
            if self._owns_client:
                self.client.close()
        self.status, self.report = status, report
        return report

    def abandon(self) -> DeliveryReport:
        """Deliver the points and stop heartbeating, but report no end: whoever watches this process
        (the parent of a process group, cggm_core/group.py) reports it, with the root cause."""
        try:
            report = self.sink.close()
        finally:
            self._beat.done.set()
            self._beat.join(timeout=15.0)
            if self._owns_client:
                self.client.close()
        self.status, self.report = "abandoned", report
        return report

    def fail(self, exc: BaseException) -> DeliveryReport:
        """End the run as failed with the error and the tail of its traceback (a Ctrl-C: stopped)."""
        tail = "".join(traceback.format_exception(exc))[-TRACEBACK_TAIL_CHARS:]
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        return self.finish(status, None, f"{type(exc).__name__}: {exc}\n\n{tail}")

    def __enter__(self) -> RemoteRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.finish()
        else:
            self.fail(exc)

    def _keep_finish_record(self, status: str, summary: Any, error: str | None) -> None:
        path = finish_record_path(self.sink.spool_path)
        record = {"run_id": self.run_id, "status": status, "summary": summary, "error": error, "time": time.time()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(record, allow_nan=False))
            os.replace(tmp, path)
        except OSError as e:
            log.error("run %s: its end (%s) could not be kept in %s (%s)", self.run_id, status, path, e)
            return
        log.warning("run %s: its end (%s) is kept in %s for `cggm sync`", self.run_id, status, path)


# -- cggm sync: what earlier processes left for a server --------------------------------------------------
@dataclass(frozen=True)
class SyncResult:
    run_id: int
    path: str
    report: DeliveryReport | None  # what became of a spool's points (None for a finish record)
    ended: str | None = None  # the run end reported from a finish record (None: not reported)
    busy: bool = False  # a live process holds the spool: skipped


def sync_spools(
    server: str, token: str | None = None, spool_dir: str | Path | None = None, retry_s: float = 60.0
) -> list[SyncResult]:
    """Resend every spool left for `server` (skipping those a live process holds), then report
    the run ends kept beside them whose points are all in."""
    results: list[SyncResult] = []
    for run_id, path in find_spools(server, spool_dir):
        try:
            sink = HttpSink(
                server, run_id, token=token, spool_path=path, exclusive=True, close_timeout_s=retry_s, log_report=False
            )
        except SpoolBusy:
            results.append(SyncResult(run_id, str(path), None, busy=True))
            continue
        results.append(SyncResult(run_id, str(path), sink.close()))
    remove_orphan_locks(server, spool_dir)
    pending_runs = {run_id for run_id, _ in find_spools(server, spool_dir)}
    records = [(run_id, path) for run_id, path in find_finish_records(server, spool_dir) if run_id not in pending_runs]
    if records:
        client = BackendClient(server, token)
        try:
            for run_id, path in records:
                ended = _send_finish_record(client, run_id, path, retry_s)
                results.append(SyncResult(run_id, str(path), None, ended))
        finally:
            client.close()
    return results


def _send_finish_record(client: BackendClient, run_id: int, path: Path, retry_s: float) -> str | None:
    try:
        record = json.loads(path.read_text())
        status = str(record["status"])
    except (OSError, ValueError, KeyError) as e:
        log.error("run %s: cannot read the kept end %s (%s); left in place", run_id, path, e)
        return None
    if not client.finish(run_id, status, record.get("summary"), record.get("error"), retry_s=retry_s):
        return None
    path.unlink(missing_ok=True)
    return status


def sync_in_background(server: str, token: str | None = None, spool_dir: str | Path | None = None) -> None:
    """What a worker or `cggm train --server` does at start: resend what earlier processes left
    for this server, without holding anything up."""

    def run() -> None:
        try:
            for r in sync_spools(server, token, spool_dir):
                if r.report is not None and (r.report.delivered or r.report.left_in_spool):
                    log.info("resent a spool left by an earlier process: %s", r.report.line())
        except Exception:  # a background courtesy: never let it take the process down
            log.exception("resending old spools for %s failed", server)

    threading.Thread(target=run, name="cggm-spool-sync", daemon=True).start()
