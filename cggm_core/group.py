"""A process group on this machine: start N ranks of one job, watch them, stop or kill them together.

    group = ProcessGroupJob(argv, nprocs=2, devices=[0, 1])   # argv: a `python -m cggm_core train …`
    outcome = group.run(should_stop=remote_said_stop)        # blocks; GroupOutcome(ok, error, …)

What `cggm train --nproc-per-node N` and a worker's GPU slot use. Each rank gets the environment
torchrun gives its ranks (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT;
CUDA_VISIBLE_DEVICES set to the slot's GPUs), so the rank's code is the same under torchrun, plus
CGGM_GROUP_DIR, a folder the parent and its ranks share:

* `stop`: created by the parent to stop the job gracefully: rank 0 sees it at its next step and
  broadcasts the stop to every rank (`rank_should_stop`); rank 0 stops the same way when its
  parent is gone (killed: nobody would watch the ranks any more);
* `error-<rank>.json`: written by a rank that raises (`write_rank_error`), with the time, the error
  and its traceback's tail, so the parent can say which rank failed first and why.

The parent polls its children (every `poll_s`). The first rank that exits with a non-zero code
fails the job: the others get `grace_s` to notice (a collective with a dead peer raises at once
under gloo; every collective is bounded by $CGGM_DIST_TIMEOUT_S anyway), then their process groups
are killed. The error reported is the root cause: a rank killed by a signal that we did not send,
else the earliest error file, else the first non-zero exit code. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_GROUP_DIR = "CGGM_GROUP_DIR"
ENV_RUN_ID = "CGGM_GROUP_RUN_ID"  # rank 0 streams to this existing run (the parent created or claimed it)
ENV_HEARTBEAT_S = "CGGM_GROUP_HEARTBEAT_S"
ENV_PARENT = "CGGM_GROUP_PARENT"  # the watching parent's pid
TRACEBACK_TAIL_CHARS = 4000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_dir() -> Path | None:
    raw = os.environ.get(ENV_GROUP_DIR)
    return Path(raw) if raw else None


def rank_should_stop() -> bool:
    """The parent of this process group asked the job to stop (rank 0 polls this every step)."""
    folder = group_dir()
    if folder is None:
        return False
    parent = os.environ.get(ENV_PARENT)
    return (folder / "stop").exists() or (parent is not None and str(os.getppid()) != parent)


def write_rank_error(exc: BaseException) -> None:
    """Leave this rank's error for the parent (a no-op outside a group the parent watches)."""
    folder = group_dir()
    if folder is None:
        return
    rank = os.environ.get("RANK", "0")
    tail = "".join(traceback.format_exception(exc))[-TRACEBACK_TAIL_CHARS:]
    record = {"rank": int(rank), "time": time.time(), "error": f"{type(exc).__name__}: {exc}", "traceback": tail}
    with contextlib.suppress(OSError):
        tmp = folder / f"error-{rank}.json.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, folder / f"error-{rank}.json")


@dataclass
class GroupOutcome:
    ok: bool
    error: str | None = None  # the root cause, one line, then its traceback's tail when a rank left one
    failed_rank: int | None = None
    stopped: bool = False  # a stop was asked (the ranks then end the run as stopped)
    exit_codes: list[int | None] = field(default_factory=list)


class ProcessGroupJob:
    def __init__(
        self,
        argv: Sequence[str],
        nprocs: int,
        *,
        devices: Sequence[int] | None = None,
        env: dict[str, str] | None = None,
        work_dir: Path | None = None,
        poll_s: float = 0.2,
        grace_s: float = 10.0,
        stdout: Any = None,
        stderr: Any = None,
    ) -> None:
        if nprocs < 1:
            raise ValueError(f"a process group needs at least 1 process; got {nprocs}")
        self.argv = list(argv)
        self.nprocs = nprocs
        self.devices = list(devices) if devices is not None else None
        self.base_env = dict(os.environ if env is None else env)
        self._own_dir = work_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="cggm-group-")) if work_dir is None else work_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.stdout, self.stderr = stdout, stderr
        self.procs: list[subprocess.Popen[bytes]] = []
        self._killed_by_us: set[int] = set()
        self.stop_asked = False

    # -- start -----------------------------------------------------------------------------------
    def rank_env(self, rank: int, port: int) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(self.nprocs),
            LOCAL_WORLD_SIZE=str(self.nprocs),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            PYTHONUNBUFFERED="1",
        )
        env[ENV_GROUP_DIR] = str(self.dir)
        env[ENV_PARENT] = str(os.getpid())
        if self.devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in self.devices)
        return env

    def start(self) -> None:
        port = free_port()
        for rank in range(self.nprocs):
            # Each rank its own session: killing its process group takes its DataLoader workers
            # too, and a Ctrl-C in the terminal reaches the parent only (it stops the job).
            proc = subprocess.Popen(
                self.argv,
                env=self.rank_env(rank, port),
                start_new_session=True,
                stdout=self.stdout,
                stderr=self.stderr,
            )
            self.procs.append(proc)

    # -- control ---------------------------------------------------------------------------------
    def ask_stop(self) -> None:
        """Rank 0 sees it at its next step, every rank stops there and the run ends as stopped."""
        if not self.stop_asked:
            self.stop_asked = True
            (self.dir / "stop").touch()

    def kill(self) -> None:
        for rank, proc in enumerate(self.procs):
            if proc.poll() is None:
                self._killed_by_us.add(rank)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10.0)

    # -- watch -----------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool] | None = None) -> GroupOutcome:
        """Start the ranks and wait for them: all exit 0 → ok; one fails → the rest are killed."""
        self.start()
        try:
            return self.wait(should_stop)
        except BaseException:
            self.kill()
            raise
        finally:
            self.cleanup()

    def wait(self, should_stop: Callable[[], bool] | None = None) -> GroupOutcome:
        first_failure: float | None = None
        while True:
            codes = [p.poll() for p in self.procs]
            if should_stop is not None and not self.stop_asked and should_stop():
                self.ask_stop()
            failed = [c for c in codes if c is not None and c != 0]
            if failed and first_failure is None:
                first_failure = time.monotonic()
            if all(c is not None for c in codes):
                break
            if first_failure is not None and time.monotonic() - first_failure > self.grace_s:
                self.kill()
                codes = [p.poll() for p in self.procs]
                break
            time.sleep(self.poll_s)
        codes = [p.poll() for p in self.procs]
        if all(c == 0 for c in codes):
            return GroupOutcome(True, stopped=self.stop_asked, exit_codes=codes)
        rank, error = self.root_cause(codes)
        return GroupOutcome(False, error, rank, self.stop_asked, codes)

    def root_cause(self, codes: Sequence[int | None]) -> tuple[int, str]:
        for rank, code in enumerate(codes):
            if code is not None and code < 0 and rank not in self._killed_by_us:
                name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
                return rank, f"rank {rank} of {self.nprocs} was killed by {name}"
        records = []
        for path in self.dir.glob("error-*.json"):
            with contextlib.suppress(OSError, ValueError):
                records.append(json.loads(path.read_text()))
        if records:
            first = min(records, key=lambda r: float(r["time"]))
            rank = int(first["rank"])
            return rank, f"rank {rank} of {self.nprocs} failed: {first['error']}\n\n{first['traceback']}"
        for rank, code in enumerate(codes):
            if code not in (0, None) and rank not in self._killed_by_us:
                return rank, f"rank {rank} of {self.nprocs} exited with code {code}"
        return 0, f"the process group ended with exit codes {list(codes)}"

    def cleanup(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def train_argv(args: Sequence[str]) -> list[str]:
    """`python -m cggm_core train <args>` with this interpreter."""
    return [sys.executable, "-m", "cggm_core", "train", *args]
