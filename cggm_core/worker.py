"""Worker agent: claim a queued job from the backend, train it, stream metrics, heartbeat, finish.

    claim ─► resolve config ─► Trainer(sink=HttpSink, should_stop=heartbeat said stop | SIGTERM)
          ─► finish(finished | stopped, summary)   or   finish(failed, error + traceback tail)

HTTP only (httpx); nothing here imports the backend. Several workers can serve one backend: the
claim is atomic on the server.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from .config import resolve
from .http_sink import HttpSink
from .trainer import Trainer, json_safe, pick_device

log = logging.getLogger("cggm_core.worker")

TRACEBACK_TAIL_CHARS = 4000


@dataclass
class WorkerOptions:
    server: str
    device: str = "auto"
    name: str = ""
    token: str | None = None
    once: bool = False
    heartbeat_s: float = 2.0
    poll_s: float = 1.0
    out_dir: Path | None = None  # keep config/metrics/checkpoint per run under out_dir/run-<id>
    spool_dir: Path | None = None
    progress: bool = True
    # How long to keep retrying `finish` while the backend is unreachable.
    finish_retry_s: float = 300.0


class BackendClient:
    """The worker's side of the protocol (claim, heartbeat, finish), over one httpx client."""

    def __init__(self, server: str, token: str | None, timeout_s: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self.http = httpx.Client(base_url=self.server, timeout=timeout_s, headers=headers)

    def claim(self, worker: str) -> dict[str, Any] | None:
        r = self.http.post("/api/workers/claim", json={"worker": worker})
        if r.status_code == 204:
            return None
        r.raise_for_status()
        run: dict[str, Any] = r.json()
        return run

    def heartbeat(self, run_id: int) -> bool:
        """True when the run should stop. 404/409 (deleted, no longer ours) also mean stop."""
        r = self.http.post(f"/api/runs/{run_id}/heartbeat")
        if r.status_code in (404, 409):
            return True
        r.raise_for_status()
        return bool(r.json()["stop"])

    def finish(
        self, run_id: int, status: str, summary: dict[str, Any] | None, error: str | None, retry_s: float
    ) -> None:
        body = {"status": status, "summary": summary, "error": error}
        deadline = time.monotonic() + retry_s
        delay = 0.2
        while True:
            try:
                r = self.http.post(f"/api/runs/{run_id}/finish", json=body)
                if r.status_code < 500:
                    if r.status_code >= 400:
                        log.error("run %s: finish refused: HTTP %s %s", run_id, r.status_code, r.text[:300])
                    return
                problem = f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}"
            if time.monotonic() >= deadline:
                log.error("run %s: could not report its end (%s); giving up", run_id, problem)
                return
            log.warning("run %s: backend unreachable while finishing (%s); retrying", run_id, problem)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def close(self) -> None:
        self.http.close()


class HeartbeatThread(threading.Thread):
    """Beats every interval_s; sets `stop` when the server says so. An unreachable backend is not
    a reason to stop training (the sink spools); the server declares the run lost if it lasts."""

    def __init__(self, client: BackendClient, run_id: int, interval_s: float, stop: threading.Event) -> None:
        super().__init__(name=f"cggm-heartbeat-{run_id}", daemon=True)
        self.client, self.run_id, self.interval_s, self.stop = client, run_id, interval_s, stop
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                if self.client.heartbeat(self.run_id):
                    log.info("run %s: the server asked to stop", self.run_id)
                    self.stop.set()
            except httpx.HTTPError as e:
                log.warning("run %s: heartbeat failed: %s", self.run_id, e)
            self.done.wait(self.interval_s)


class Worker:
    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.name = options.name or f"{socket.gethostname()}-{os.getpid()}"
        self.client = BackendClient(options.server, options.token)
        self.terminating = threading.Event()
        self.device = str(pick_device(options.device))

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if self.terminating.is_set() and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: leave now
            log.info("signal %s: stopping the current run and exiting", signal.Signals(signum).name)
            self.terminating.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def serve(self) -> int:
        """Claim and run jobs until terminated (or after one job with `once`)."""
        log.info("worker %s on %s, serving %s", self.name, self.device, self.options.server)
        waiting_logged = False
        while not self.terminating.is_set():
            try:
                run = self.client.claim(self.name)
            except httpx.HTTPError as e:
                if not waiting_logged:
                    log.warning("cannot claim from %s (%s); retrying", self.options.server, e)
                    waiting_logged = True
                self.terminating.wait(self.options.poll_s)
                continue
            waiting_logged = False
            if run is None:
                self.terminating.wait(self.options.poll_s)
                continue
            self.run_job(run)
            if self.options.once:
                break
        self.client.close()
        return 0

    def run_job(self, run: dict[str, Any]) -> str:
        run_id = int(run["id"])
        opts = self.options
        log.info("run %s: claimed (%s)", run_id, run.get("name"))
        stop = threading.Event()
        spool_dir = opts.spool_dir or (opts.out_dir / "spool" if opts.out_dir else None)
        sink = HttpSink(
            opts.server,
            run_id,
            token=opts.token,
            spool_path=spool_dir / f"run-{run_id}.jsonl" if spool_dir else None,
            close_timeout_s=opts.finish_retry_s,
        )
        beat = HeartbeatThread(self.client, run_id, opts.heartbeat_s, stop)
        beat.start()
        summary: dict[str, Any] | None = None
        error: str | None = None
        try:
            job = resolve(run["config"])
            out = opts.out_dir / f"run-{run_id}" if opts.out_dir else None
            trainer = Trainer(
                job,
                out,
                self.device,
                sink=sink,
                progress=opts.progress,
                should_stop=lambda: stop.is_set() or self.terminating.is_set(),
            )
            trainer.setup()
            result = trainer.fit()  # closes the sink: every point delivered (or left in the spool)
            status = result.status
            summary = {**result.summary, "logged_points": result.logged_points}
        except Exception as e:
            status = "failed"
            tail = traceback.format_exc()[-TRACEBACK_TAIL_CHARS:]
            error = f"{type(e).__name__}: {e}\n\n{tail}"
            log.error("run %s failed: %s: %s", run_id, type(e).__name__, e)
        finally:
            sink.close()
            beat.done.set()
        delivery = {
            "accepted": sink.accepted,
            "duplicates": sink.duplicates,
            "rejected": sink.rejected,
            "spooled": sink.spooled,
            "undelivered": sink.pending_spool(),
        }
        summary = json_safe({**(summary or {}), "delivery": delivery})
        self.client.finish(run_id, status, summary, error, retry_s=opts.finish_retry_s)
        beat.join(timeout=opts.heartbeat_s + 15.0)
        log.info("run %s: %s (%d points delivered)", run_id, status, sink.accepted + sink.duplicates)
        return status


def run_worker(options: WorkerOptions) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the worker's own
    worker = Worker(options)
    if worker.device == "cpu" and "CGGM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)  # measured: 2 threads are no faster on small models and collapse under load
    worker.install_signal_handlers()
    return worker.serve()
