"""Worker agent: claim a queued job from the backend, train it, stream metrics, heartbeat, finish.

    claim ─► RemoteRun (sink, heartbeats) ─► resolve config ─► Trainer(sink, should_stop = the
          backend said stop | SIGTERM) ─► finish(finished | stopped, summary)  or  fail(error + traceback tail)

The run's life on the backend is cggm_core.remote's (the same code as `cggm train --server`).
HTTP only (httpx); nothing here imports the backend. Several workers can serve one backend: the
claim is atomic on the server. Each claim carries the worker's capabilities (`capabilities`: its
datasets and models, plugins included, and its devices), so that the backend hands it only jobs
it can run, and says of a job that no connected worker can run why it waits.
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from . import __version__, plugins
from .config import resolve
from .data import DATASETS
from .models import MODELS
from .remote import DEFAULT_RETRY_S, BackendClient, RemoteRun, sync_in_background
from .trainer import Trainer, pick_device

log = logging.getLogger("cggm_core.worker")


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
    spool_dir: Path | None = None  # default: the per-user spool folder (cggm_core.spool)
    progress: bool = True
    # How long closing a run keeps retrying while the backend is unreachable.
    finish_retry_s: float = DEFAULT_RETRY_S


def capabilities(device: str) -> dict[str, Any]:
    """What this worker can run, as sent with each claim (backend/schemas/workers.py).

    The registries as this process has them: built-ins and the plugins that loaded (a plugin
    that was skipped is not among them, so the backend never hands this worker its jobs).
    """
    return {
        "datasets": sorted(DATASETS),
        "models": sorted(MODELS),
        "device": device,
        "devices": list_devices(),
        "plugins": [p.to_json() for p in plugins.loaded()],
        "versions": {"cggm_monitor": __version__, "torch": _torch_version(), "python": platform.python_version()},
    }


def list_devices() -> list[dict[str, Any]]:
    """Every device torch sees here: the CPU, each CUDA GPU (name, memory), Apple's MPS."""
    import torch

    cpu = platform.processor() or platform.machine()
    devices: list[dict[str, Any]] = [{"name": "cpu", "kind": "cpu", "description": f"{cpu}, {os.cpu_count()} cores"}]
    try:
        for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            props = torch.cuda.get_device_properties(i)
            devices.append(
                {"name": f"cuda:{i}", "kind": "cuda", "description": props.name, "memory_bytes": props.total_memory}
            )
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            devices.append({"name": "mps", "kind": "mps", "description": "Apple Metal"})
    except Exception as e:  # a broken driver must not stop the worker: it still trains on what it picked
        log.warning("cannot list the GPUs (%s: %s); reporting the CPU only", type(e).__name__, e)
    return devices


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


class Worker:
    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.name = options.name or f"{socket.gethostname()}-{os.getpid()}"
        self.client = BackendClient(options.server, options.token)
        self.terminating = threading.Event()
        self.device = str(pick_device(options.device))
        self.capabilities = capabilities(self.device)

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
        extra = [f"{p.kind} {p.name} ({p.package or p.entry_point})" for p in plugins.loaded()]
        if extra:
            log.info("plugins: %s", ", ".join(extra))
        sync_in_background(self.options.server, self.options.token, self.options.spool_dir)
        waiting_logged = False
        while not self.terminating.is_set():
            try:
                run = self.client.claim(self.name, self.capabilities)
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
        remote = RemoteRun(
            self.client,
            run_id,
            heartbeat_s=opts.heartbeat_s,
            retry_s=opts.finish_retry_s,
            spool_dir=opts.spool_dir,
            also_stop=self.terminating.is_set,
        )
        try:
            with remote:  # an exception ends the run as failed, with its traceback's tail
                job = resolve(run["config"])
                out = opts.out_dir / f"run-{run_id}" if opts.out_dir else None
                trainer = Trainer(
                    job, out, self.device, sink=remote.sink, progress=opts.progress, should_stop=remote.should_stop
                )
                trainer.setup()
                result = trainer.fit()  # closes the sink: every point delivered (or left in the spool)
                remote.finish(result.status, {**result.summary, "logged_points": result.logged_points})
        except Exception as e:
            log.error("run %s failed: %s: %s", run_id, type(e).__name__, e)
        report = remote.report
        delivered = report.delivered + report.duplicates if report else 0
        log.info("run %s: %s (%d points delivered)", run_id, remote.status, delivered)
        return remote.status or "failed"


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
