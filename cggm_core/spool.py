"""Spools: where metric points wait on disk while the backend is unreachable.

One folder per user (`default_spool_root()`: $CGGM_SPOOL_DIR, else $XDG_CACHE_HOME/cggm/spool,
else ~/.cache/cggm/spool, else <tmp>/cggm-spool-<uid>), one folder per server in it, one file per
run (`run-<id>.jsonl`, one JSON point per line), so that a later process — the next HttpSink for
the run, `cggm sync` — finds what an earlier one left:

    run-12.jsonl          points not yet acknowledged, appended at the end
    run-12.jsonl.acked    {"offset", "inode"}: where the unacknowledged part starts (atomic rename)
    run-12.jsonl.lock     flock held by the process that owns the spool
    run-12.dead.jsonl     batches the backend kept refusing (one per line, with its answer)
    run-12.finish.json    a run end the backend could not be told (RemoteRun; `cggm sync` sends it)

Reading is streaming (a line at a time from the committed offset), so a million-point spool is
resent in constant memory; a truncated or corrupt line is skipped and counted, never fatal.
"""

from __future__ import annotations

import contextlib
import getpass
import itertools
import json
import logging
import os
import re
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from .tracking import NON_FINITE

try:  # POSIX; on other systems spools are not locked (two processes on one spool only duplicate)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("cggm_core.spool")

MAX_LINE_BYTES = 1 << 20  # a spool line longer than this is corrupt (a point is ~100 bytes)
# run-12.jsonl, or run-12.p4242-1.jsonl when a second process logs to the same run
SPOOL_NAME = re.compile(r"^run-(\d+)(?:\.p\d+-\d+)?\.jsonl$")
FINISH_NAME = re.compile(r"^run-(\d+)(?:\.p\d+-\d+)?\.finish\.json$")


# -- where spools live -------------------------------------------------------------------------------
def spool_roots(spool_dir: str | Path | None = None) -> list[Path]:
    """Where spools may be, in order of preference: a sink takes the first it can write to,
    `cggm sync` looks in all of them. Always per user: a shared `/tmp/cggm-spool` owned by
    someone else once made every spool write fail."""
    if spool_dir is not None:
        return [Path(spool_dir)]
    env = os.environ.get("CGGM_SPOOL_DIR")
    if env:
        return [Path(env)]
    roots = []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        roots.append(Path(xdg) / "cggm" / "spool")
    with contextlib.suppress(RuntimeError, KeyError):  # no home directory
        roots.append(Path.home() / ".cache" / "cggm" / "spool")
    user = str(os.getuid()) if hasattr(os, "getuid") else getpass.getuser()
    roots.append(Path(tempfile.gettempdir()) / f"cggm-spool-{user}")
    return roots


def server_slug(server: str) -> str:
    """A folder name for a server URL: http://127.0.0.1:8000 → 127.0.0.1_8000."""
    url = httpx.URL(server)
    port = url.port or (443 if url.scheme == "https" else 80)
    raw = f"{url.host}_{port}" + (f"_{url.path.strip('/')}" if url.path.strip("/") else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)


def run_spool_paths(server: str, run_id: int, spool_dir: str | Path | None = None) -> list[Path]:
    """The spool of one run under each root: named after the server and the run, so that a
    later process finds it."""
    return [root / server_slug(server) / f"run-{run_id}.jsonl" for root in spool_roots(spool_dir)]


def find_spools(server: str, spool_dir: str | Path | None = None) -> list[tuple[int, Path]]:
    """(run id, spool path) of every spool left for this server, oldest run first."""
    return _find(server, spool_dir, SPOOL_NAME)


def find_finish_records(server: str, spool_dir: str | Path | None = None) -> list[tuple[int, Path]]:
    """(run id, path) of every run end left for this server (the backend never heard it)."""
    return _find(server, spool_dir, FINISH_NAME)


def _find(server: str, spool_dir: str | Path | None, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    found: list[tuple[int, Path]] = []
    for root in spool_roots(spool_dir):
        folder = root / server_slug(server)
        with contextlib.suppress(OSError):
            for path in folder.iterdir():
                m = pattern.match(path.name)
                if m and path.is_file():
                    found.append((int(m.group(1)), path))
    return sorted(found)


def remove_orphan_locks(server: str, spool_dir: str | Path | None = None) -> None:
    """Lock files a killed process left beside no spool, and the folders they leave empty."""
    for root in spool_roots(spool_dir):
        folder = root / server_slug(server)
        with contextlib.suppress(OSError):
            for path in folder.glob("run-*.jsonl.lock"):
                if path.with_name(path.name.removesuffix(".lock")).exists():
                    continue
                with contextlib.suppress(SpoolBusy, OSError):
                    SpoolLock(path.with_name(path.name.removesuffix(".lock"))).release(remove=True)
            folder.rmdir()  # only when empty


def dead_letter_path(spool_path: Path) -> Path:
    return spool_path.with_name(spool_path.name.removesuffix(".jsonl") + ".dead.jsonl")


def finish_record_path(spool_path: Path) -> Path:
    return spool_path.with_name(spool_path.name.removesuffix(".jsonl") + ".finish.json")


class SpoolBusy(Exception):
    """Another process holds this spool (it is still sending it)."""


# -- what waits: a spool file, or a bounded buffer in memory ------------------------------------------
@dataclass
class Chunk:
    lines: list[str]  # JSON points
    end: int  # file: byte offset after the chunk; memory: number of lines
    corrupt: int
    source: FileSpool | MemoryBuffer


def valid_point_line(raw: bytes) -> str | None:
    """The line as text when it holds one well-formed point, else None (corrupt)."""
    try:
        text = raw.decode("utf-8").strip()
        p = json.loads(text)
    except ValueError:  # also UnicodeDecodeError
        return None
    if not isinstance(p, dict) or not isinstance(p.get("key"), str):
        return None
    step, value, t = p.get("step"), p.get("value"), p.get("time")
    if type(step) is not int:
        return None
    if not (type(value) in (int, float) or (isinstance(value, str) and value in NON_FINITE)):
        return None
    if t is not None and type(t) not in (int, float):
        return None
    return text


class FileSpool:
    """Points on disk, one JSON object per line: appended at the end, sent from `offset`.

    `offset` (the first byte not yet acknowledged) is committed to `<spool>.acked` with the file's
    inode after every delivered chunk, by an atomic rename. The spool is deleted once fully sent
    (the offset file first: a crash in between resends, it never skips)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ack_path = path.with_name(path.name + ".acked")
        self.lock = threading.Lock()
        self.offset = self._load_offset()
        self._repair_tail()
        self.pending = self.path.exists() and self.path.stat().st_size > self.offset

    def _load_offset(self) -> int:
        try:
            committed = json.loads(self.ack_path.read_text())
            offset, inode = int(committed["offset"]), int(committed["inode"])
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("%s is unreadable (%s): the spool is resent from its start", self.ack_path, e)
            return 0
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self.ack_path.unlink(missing_ok=True)
            return 0
        if st.st_ino != inode or not 0 <= offset <= st.st_size or not self._at_line_start(offset):
            log.warning("%s does not match %s: the spool is resent from its start", self.ack_path, self.path)
            return 0
        return offset

    def _at_line_start(self, offset: int) -> bool:
        if offset == 0:
            return True
        with self.path.open("rb") as f:
            f.seek(offset - 1)
            return f.read(1) == b"\n"

    def _repair_tail(self) -> None:
        # A process killed mid-write leaves half a line; end it, so that it stays one corrupt
        # line and does not swallow the next point appended.
        with contextlib.suppress(FileNotFoundError), self.path.open("rb+") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def append(self, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        with self.lock, self.path.open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # on disk before the points leave memory
            self.pending = True

    def read_chunk(self, max_lines: int) -> Chunk | None:
        with self.lock:
            try:
                f = self.path.open("rb")
            except FileNotFoundError:
                self.pending, self.offset = False, 0
                return None
            with f:
                f.seek(self.offset)
                lines: list[str] = []
                corrupt = 0
                pos = self.offset
                while len(lines) < max_lines:
                    raw, used = read_line(f)
                    if not used:
                        break
                    pos += used
                    if raw is None or not raw.strip():
                        corrupt += raw is None
                        continue
                    text = valid_point_line(raw)
                    if text is None:
                        corrupt += 1
                    else:
                        lines.append(text)
            if pos == self.offset:  # nothing after the offset: fully sent
                self._remove()
                return None
            return Chunk(lines, pos, corrupt, self)

    def commit(self, chunk: Chunk) -> None:
        with self.lock:
            self.offset = chunk.end
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self.pending, self.offset = False, 0
                return
            if self.offset >= st.st_size:
                self._remove()
                return
            tmp = self.ack_path.with_name(self.ack_path.name + ".tmp")
            try:
                tmp.write_text(json.dumps({"offset": self.offset, "inode": st.st_ino}))
                os.replace(tmp, self.ack_path)
            except OSError as e:  # the offset still holds in memory: only a later process may resend
                log.warning("cannot record the progress of %s in %s (%s)", self.path, self.ack_path, e)

    def _remove(self) -> None:
        self.ack_path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        self.pending, self.offset = False, 0

    def count_pending(self) -> int:
        """Points not yet sent (streamed: constant memory)."""
        n = 0
        with self.lock, contextlib.suppress(FileNotFoundError), self.path.open("rb") as f:
            f.seek(self.offset)
            for raw in f:
                n += bool(raw.strip())
        return n


def read_line(f: IO[bytes]) -> tuple[bytes | None, int]:
    """(line, bytes consumed); line is None when longer than MAX_LINE_BYTES (then skipped whole)."""
    raw = f.readline(MAX_LINE_BYTES)
    if len(raw) < MAX_LINE_BYTES or raw.endswith(b"\n"):
        return raw, len(raw)
    used = len(raw)
    while True:
        part = f.readline(MAX_LINE_BYTES)
        used += len(part)
        if not part or part.endswith(b"\n"):
            return None, used


class MemoryBuffer:
    """Where points wait when no spool file can be written: bounded, the newest dropped when full."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self.lines: deque[str] = deque()
        self.dropped = 0
        self.lock = threading.Lock()

    @property
    def pending(self) -> bool:
        return bool(self.lines)

    def append(self, lines: list[str]) -> int:
        """Keep what fits; returns how many were dropped."""
        with self.lock:
            room = max(0, self.max_points - len(self.lines))
            self.lines.extend(lines[:room])
            dropped = max(0, len(lines) - room)
            self.dropped += dropped
            return dropped

    def read_chunk(self, max_lines: int) -> Chunk | None:
        with self.lock:
            if not self.lines:
                return None
            lines = list(itertools.islice(self.lines, max_lines))
        return Chunk(lines, len(lines), 0, self)

    def commit(self, chunk: Chunk) -> None:
        with self.lock:
            for _ in range(chunk.end):
                self.lines.popleft()


class SpoolLock:
    """An exclusive flock on `<spool>.lock`, held while a sink owns the spool."""

    def __init__(self, spool_path: Path) -> None:
        self.path = spool_path.with_name(spool_path.name + ".lock")
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self.fd)
                raise SpoolBusy(f"{spool_path} is in use by another process") from None

    def release(self, remove: bool) -> None:
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)
