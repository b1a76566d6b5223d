"""Helpers shared by the backend benchmarks: a real `cggm serve` subprocess, RSS of a process tree.

Everything listens on 127.0.0.1 only, on a free port, with a fresh SQLite file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> float:
    """Poll `url` until it answers 200; returns the monotonic time it did. Raises on timeout or exit."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before answering {url}")
            try:
                if client.get(url).status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f} s")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    startup_s: float  # spawn to the first 200 on /api/health

    def stop(self) -> None:
        stop_process(self.proc)


def start_cggm(
    db_path: Path,
    timeout_s: float = 60.0,
    log_path: Path | None = None,
    db_url: str | None = None,
    extra: tuple[str, ...] = (),
    root: Path = ROOT,
) -> Server:
    """`cggm serve` on 127.0.0.1:<free port> with a SQLite file (or `db_url`); waits for the first
    200 on /api/health. `extra`: more `cggm serve` arguments; `root`: the checkout whose code
    serves (default this one)."""
    port = free_port()
    cmd = [sys.executable, "-m", "cggm_core", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--db", db_url or f"sqlite:///{db_path}", "--log-level", "warning", *extra]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (handed to the child)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=out, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        t1 = wait_http_ok(f"{url}/api/health", proc, timeout_s)
    except BaseException:
        stop_process(proc)
        raise
    return Server(proc, url, t1 - t0)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM the child's process group (it was started in its own session), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return out
    for task in tasks:
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants (via /proc/<pid>/task/*/children)."""
    seen, todo = [], [pid]
    while todo and len(seen) < 1000:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += _children(p)
    return seen


def rss_mb(pid: int) -> tuple[float, int]:
    """Summed VmRSS (MB) of pid and its descendants, and how many processes that is."""
    total_kb, n = 0, 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    n += 1
                    break
        except OSError:
            pass
    return total_kb / 1024, n


def create_external_run(client: httpx.Client, url: str, name: str) -> int:
    r = client.post(f"{url}/api/runs", json={"name": name, "config": {"bench": name}, "external": True})
    r.raise_for_status()
    return int(r.json()["id"])


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def machine_state() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start"
