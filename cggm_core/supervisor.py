"""The child processes of `cggm up`: start them, watch them, restart the ones that die (within a
budget), stop them in order.

Each child writes stdout and stderr into one pipe, which a thread copies to `up`'s console and to
`<log_dir>/<name>.log`, keeping the last lines in memory. When a child dies, `up` says which one,
how (its exit code or the signal that killed it) and what it printed last, then restarts it after
a back-off (1 s, 2 s, 4 s, ...) or, once it has died more than `max_restarts` times within
`window_s`, stops everything and exits 1. Every child gets the same policy, for these reasons:

- the backend: its state is in the database, workers spool their points and the dashboard shows a
  "backend down" banner while it is away, so a restart loses nothing. One that cannot come back
  (it dies again before answering, or does not answer within `ready_timeout_s`) uses up the
  budget quickly, and then everything stops: a stack without its backend does nothing useful.
- a worker: its run becomes `lost` on the backend (no heartbeat); the new worker claims the next
  queued job. A worker that crashes over and over (a broken device, say) stops the stack rather
  than hiding behind restarts.
- the dashboard: it holds no state; a restart is all it needs.
"""

from __future__ import annotations

import collections
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

TAIL_LINES = 15
_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 3  # restarts allowed within window_s; the next death stops everything
    window_s: float = 60.0
    first_delay_s: float = 1.0  # back-off before a restart, doubled for each restart in the window
    max_delay_s: float = 8.0


@dataclass
class ChildSpec:
    name: str  # "backend", "worker local-0", "dashboard": what `up` calls it in its messages
    argv: list[str]
    ready_url: str | None = None  # a (re)start is complete when this answers 200
    ready_timeout_s: float = 120.0

    @property
    def file_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name) + ".log"


class StackFailed(Exception):
    """A child could not be kept running; the message says which and why (already explained above it)."""


@dataclass
class Child:
    spec: ChildSpec
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    restarts: collections.deque[float] = field(default_factory=collections.deque)  # monotonic times
    restart_at: float | None = None  # a restart is scheduled for then
    ready_deadline: float | None = None  # started, not yet answering its ready_url
    _pump: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, env: dict[str, str], console: IO[bytes], console_lock: threading.Lock) -> None:
        self.tail.clear()
        log = self.log_path.open("ab")
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.spec.argv)}\n".encode())
        log.flush()
        # Own session: a Ctrl-C in the terminal reaches only `up`, which then stops the children in
        # order (workers first, so that they can report their runs as stopped).
        self.proc = subprocess.Popen(
            self.spec.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self._pump = threading.Thread(
            target=self._copy_output,
            args=(self.proc.stdout, log, console, console_lock),
            name=f"cggm-up-{self.spec.file_name}",
            daemon=True,
        )
        self._pump.start()
        self.ready_deadline = time.monotonic() + self.spec.ready_timeout_s if self.spec.ready_url else None

    def _copy_output(self, pipe: IO[bytes], log: IO[bytes], console: IO[bytes], lock: threading.Lock) -> None:
        partial = b""
        to_console = True
        with pipe, log:
            while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
                log.write(chunk)
                log.flush()
                if to_console:
                    try:
                        with lock:
                            console.write(chunk)
                            console.flush()
                    except (OSError, ValueError):  # the console went away (`cggm up | head`): keep
                        to_console = False  # draining the pipe, or the child blocks on a full one
                *lines, partial = re.split(rb"[\r\n]", partial + chunk)
                for line in lines:
                    text = _ANSI.sub(b"", line).decode(errors="replace").rstrip()
                    if text:
                        self.tail.append(text)
        if partial.strip():
            self.tail.append(_ANSI.sub(b"", partial).decode(errors="replace").rstrip())

    def wait_output(self, timeout_s: float = 3.0) -> None:
        """Let the copier read what the dead child left in the pipe (its last lines)."""
        if self._pump is not None:
            self._pump.join(timeout_s)

    def how_it_ended(self) -> str:
        assert self.proc is not None and self.proc.returncode is not None
        code = self.proc.returncode
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by {name}"
        return f"exited with code {code}"

    def stop(self) -> None:
        """SIGTERM (the start of a graceful stop); `reap` waits and kills."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def reap(self, grace_s: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.wait_output(1.0)


class Supervisor:
    def __init__(
        self,
        log_dir: Path,
        env: dict[str, str],
        policy: RestartPolicy,
        say: Callable[[str], None],
        console: IO[bytes],
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.env = env
        self.policy = policy
        self._say = say
        self.console = console
        self.console_lock = threading.Lock()  # our lines and the children's output, not mid-line
        self.children: list[Child] = []

    def say(self, message: str) -> None:
        with self.console_lock:
            self._say(message)

    def add(self, spec: ChildSpec) -> Child:
        child = Child(spec, self.log_dir / spec.file_name)
        self.children.append(child)
        return child

    def start(self, child: Child) -> None:
        child.start(self.env, self.console, self.console_lock)
        self.say(f"started {child.name} (pid {child.pid}; log {child.log_path})")

    def start_and_wait_ready(self, child: Child) -> None:
        """First start: a child that does not come up is a setup problem, not a crash to retry."""
        self.start(child)
        while child.ready_deadline is not None:
            if not child.alive():
                child.wait_output()
                self._explain(child)
                raise StackFailed(f"{child.name} {child.how_it_ended()} before answering at {child.spec.ready_url}")
            if self._answers(child):
                child.ready_deadline = None
            elif time.monotonic() > child.ready_deadline:
                child.proc.kill()  # type: ignore[union-attr]
                child.reap(5.0)
                raise StackFailed(
                    f"{child.name} did not answer at {child.spec.ready_url} within {child.spec.ready_timeout_s:g} s"
                )
            else:
                time.sleep(0.2)

    def watch(self, tick_s: float = 0.2) -> None:
        """Until a child exhausts its restart budget (raises StackFailed); Ctrl-C raises KeyboardInterrupt."""
        while True:
            for child in self.children:
                self._check(child)
            time.sleep(tick_s)

    def _check(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restart_at = None
                self.start(child)
            return
        if child.alive():
            if child.ready_deadline is None:
                return
            if self._answers(child):
                child.ready_deadline = None
                self.say(f"{child.name} answers at {child.spec.ready_url}")
            elif now > child.ready_deadline:
                self.say(
                    f"{child.name} (pid {child.pid}) did not answer at {child.spec.ready_url} within "
                    f"{child.spec.ready_timeout_s:g} s: killing it"
                )
                child.proc.kill()  # type: ignore[union-attr]
                child.reap(5.0)
                self._died(child, now)
            return
        self._died(child, now)

    def _died(self, child: Child, now: float) -> None:
        child.wait_output()
        child.ready_deadline = None
        self._explain(child)
        policy = self.policy
        while child.restarts and now - child.restarts[0] > policy.window_s:
            child.restarts.popleft()
        if len(child.restarts) >= policy.max_restarts:
            within = (
                f"{len(child.restarts)} restart(s) within {policy.window_s:g} s"
                if policy.max_restarts
                else "no restarts allowed (--max-restarts 0)"
            )
            raise StackFailed(f"{child.name} {child.how_it_ended()} after {within}: stopping everything")
        delay = min(policy.first_delay_s * 2 ** len(child.restarts), policy.max_delay_s)
        child.restarts.append(now)
        child.restart_at = now + delay
        self.say(
            f"restarting {child.name} in {delay:g} s (restart {len(child.restarts)} of at most "
            f"{policy.max_restarts} within {policy.window_s:g} s)"
        )

    def _explain(self, child: Child) -> None:
        lines = "".join(f"\n    | {line}" for line in child.tail) or "\n    | (it printed nothing)"
        self.say(f"{child.name} (pid {child.pid}) {child.how_it_ended()}; its last lines ({child.log_path}):{lines}")

    def _answers(self, child: Child) -> bool:
        assert child.spec.ready_url is not None
        try:
            return httpx.get(child.spec.ready_url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop_all(self, order: list[tuple[list[Child], float]]) -> None:
        """Stop groups in order (each: SIGTERM to all, then wait up to its grace, then SIGKILL).
        A second Ctrl-C while waiting kills what is left at once."""
        try:
            for group, grace_s in order:
                for child in group:
                    child.stop()
                for child in group:
                    child.reap(grace_s)
        except KeyboardInterrupt:
            for child in self.children:
                if child.alive():
                    child.proc.kill()  # type: ignore[union-attr]
            raise
        finally:
            for child in self.children:
                child.restart_at = None
