"""Worker agent: claim a queued job from the backend, train it, stream metrics, heartbeat, finish.

    claim ─► RemoteRun (sink, heartbeats) ─► resolve config ─► Trainer(sink, should_stop = the
          backend said stop | SIGTERM) ─► finish(finished | stopped, summary)  or  fail(error + traceback tail)

The run's life on the backend is cggm_core.remote's (the same code as `cggm train --server`).
HTTP only (httpx); nothing here imports the backend.

Slots (`--gpus 0,1,2,3 --gpus-per-job K`, or `--procs-per-job K` on the CPU): each slot of K GPUs
(K processes) claims and trains its own jobs, several at once on disjoint GPUs. A slot's job is a
process group (cggm_core/group.py) of K ranks of `cggm train` with CUDA_VISIBLE_DEVICES set to the
slot's GPUs: rank 0 streams to the claimed run, heartbeats and ends it; the worker heartbeats too
(a Stop in the dashboard, or SIGTERM, is passed to rank 0, which broadcasts it to every rank), and
when a rank fails or is killed it kills the others and fails the run with that rank's error.
Without slots a job trains in this process, as it always did. Several workers can serve one backend: the
claim is atomic on the server. Each claim carries the worker's capabilities (`capabilities`: its
datasets and models, plugins included, and its devices), so that the backend hands it only jobs
it can run, and says of a job that no connected worker can run why it waits.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from . import __version__, plugins
from .config import resolve
from .data import DATASETS
from .models import MODELS
from .remote import DEFAULT_RETRY_S, BackendClient, HeartbeatThread, RemoteRun, sync_in_background
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
    gpus: list[int] | None = None  # --gpus: the GPUs this worker owns, shared out in slots of procs_per_job
    procs_per_job: int = 1  # --gpus-per-job / --procs-per-job: the ranks of each job


@dataclass(frozen=True)
class Slot:
    """Where one job at a time runs: K ranks, on these GPUs (None: on the worker's device, e.g. the CPU)."""

    index: int
    procs: int
    gpus: tuple[int, ...] | None = field(default=None)

    @property
    def label(self) -> str:
        return f"gpu{','.join(map(str, self.gpus))}" if self.gpus is not None else f"slot{self.index}"


def make_slots(gpus: list[int] | None, procs_per_job: int) -> list[Slot]:
    """The worker's slots: len(gpus)/K slots of K GPUs; K processes on one slot without GPUs; none
    (train in this process, as before) with neither."""
    if procs_per_job < 1:
        raise ValueError(f"--gpus-per-job / --procs-per-job must be >= 1; got {procs_per_job}")
    if gpus is None:
        return [Slot(0, procs_per_job)] if procs_per_job > 1 else []
    if not gpus or len(set(gpus)) != len(gpus) or any(g < 0 for g in gpus):
        raise ValueError(f"--gpus {','.join(map(str, gpus))}: expected distinct GPU indices >= 0, e.g. 0,1,2,3")
    if len(gpus) % procs_per_job:
        raise ValueError(
            f"--gpus {','.join(map(str, gpus))} cannot be shared out in slots of {procs_per_job} GPUs "
            f"({len(gpus)} is not a multiple of {procs_per_job})"
        )
    k = procs_per_job
    return [Slot(i, k, tuple(gpus[i * k : (i + 1) * k])) for i in range(len(gpus) // k)]


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
        self.slots = make_slots(options.gpus, options.procs_per_job)
        # A slot's ranks see only its GPUs: cuda:LOCAL_RANK of them.
        self.device = "cuda" if options.gpus is not None else str(pick_device(options.device))
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
        if self.slots:
            return self.serve_slots()
        self.claim_loop(self.client, self.name, self.run_job)
        self.client.close()
        return 0

    def serve_slots(self) -> int:
        """One thread per slot, each claiming and training its own jobs."""
        threads = []
        for slot in self.slots:
            log.info("slot %s: %d process(es) per job", slot.label, slot.procs)
            thread = threading.Thread(target=self.slot_loop, args=(slot,), name=f"cggm-slot-{slot.index}")
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        self.client.close()
        return 0

    def slot_loop(self, slot: Slot) -> None:
        client = BackendClient(self.options.server, self.options.token)  # one per thread
        try:
            name = f"{self.name}/{slot.label}" if len(self.slots) > 1 else self.name
            self.claim_loop(client, name, lambda run: self.run_group_job(run, slot, client))
        finally:
            client.close()

    def claim_loop(self, client: BackendClient, name: str, run: Any) -> None:
        waiting_logged = False
        while not self.terminating.is_set():
            try:
                claimed = client.claim(name, self.capabilities)
            except httpx.HTTPError as e:
                if not waiting_logged:
                    log.warning("cannot claim from %s (%s); retrying", self.options.server, e)
                    waiting_logged = True
                self.terminating.wait(self.options.poll_s)
                continue
            waiting_logged = False
            if claimed is None:
                self.terminating.wait(self.options.poll_s)
                continue
            run(claimed)
            if self.options.once:
                break

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

    def run_group_job(self, run: dict[str, Any], slot: Slot, client: BackendClient) -> str:
        """A claimed job as a process group of `slot.procs` ranks; returns how it ended."""
        from .group import ENV_HEARTBEAT_S, ENV_RUN_ID, ProcessGroupJob, train_argv

        run_id = int(run["id"])
        opts = self.options
        log.info("run %s: claimed (%s) for %s, %d rank(s)", run_id, run.get("name"), slot.label, slot.procs)
        stop = threading.Event()
        beat = HeartbeatThread(client, run_id, opts.heartbeat_s, stop)  # until the last rank is gone
        beat.start()
        folder = Path(tempfile.mkdtemp(prefix=f"cggm-run-{run_id}-"))
        try:
            try:
                resolve(run["config"])  # a job that cannot run fails here, with the reason, before any rank starts
            except Exception as e:
                client.finish(run_id, "failed", None, f"{type(e).__name__}: {e}", retry_s=opts.finish_retry_s)
                log.error("run %s failed: %s: %s", run_id, type(e).__name__, e)
                return "failed"
            config_path = folder / "config.json"
            config_path.write_text(json.dumps(run["config"]))
            out = opts.out_dir / f"run-{run_id}" if opts.out_dir else folder / "out"
            args = ["--config", str(config_path), "--server", opts.server, "--out", str(out)]
            args += [
                "--retry-s",
                str(opts.finish_retry_s),
                "--device",
                "cuda" if slot.gpus is not None else self.device,
            ]
            if not opts.progress:
                args.append("--no-progress")
            env = dict(os.environ)
            env[ENV_RUN_ID] = str(run_id)
            env[ENV_HEARTBEAT_S] = str(opts.heartbeat_s)
            if opts.token:
                env["CGGM_TOKEN"] = opts.token
            if opts.spool_dir is not None:
                env["CGGM_SPOOL_DIR"] = str(opts.spool_dir)
            group = ProcessGroupJob(train_argv(args), slot.procs, devices=slot.gpus, env=env, work_dir=folder / "group")
            group.start()
            try:
                outcome = group.wait(should_stop=lambda: stop.is_set() or self.terminating.is_set())
            except BaseException:
                group.kill()
                raise
            log.info("run %s: ranks exited with codes %s", run_id, outcome.exit_codes)
            if outcome.ok:
                return "stopped" if outcome.stopped else "finished"
            log.error("run %s failed: %s", run_id, (outcome.error or "").splitlines()[0])
            client.finish(run_id, "failed", None, outcome.error, retry_s=opts.finish_retry_s)
            return "failed"
        finally:
            beat.done.set()
            beat.join(timeout=15.0)
            shutil.rmtree(folder, ignore_errors=True)


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
