"""Database faults on real files and servers: permanent ones are said plainly, only contention is "retry".

Start-up: a read-only database file, a folder the server may not write, a path under a regular
file, a schema revision this version does not know, a PostgreSQL that refuses writes or cannot be
reached: `cggm serve` exits non-zero with one line naming the database and the fix, no traceback.
While serving: a write that fails for good is a 500 that says so (not a 503 that clients retry
forever), /api/health turns 503 with the reason until a write works again, and a database locked by
another process is a 503 with Retry-After.

Read-only files are made with `chattr +i` when running as root (root ignores permission bits; the
immutable flag stops root too, on files already open as well), and with chmod otherwise.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from backend.db import Database

from .conftest import REPO, ServerProcess, _pg_url_or_skip, free_port, new_running_run, stored_count


class ReadOnly:
    """Makes paths unwritable for this process, and undoes it (immutable flag as root, chmod otherwise)."""

    def __init__(self) -> None:
        self.done: list[tuple[Path, int]] = []

    def __call__(self, *paths: Path) -> None:
        for path in paths:
            if os.geteuid() == 0:
                r = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
                if r.returncode != 0:
                    why = f"chattr +i failed ({r.stderr.strip()}): cannot make a file read-only for root here"
                    if os.environ.get("CI") == "true":
                        pytest.fail(why)
                    pytest.skip(why)
                self.done.append((path, -1))
            else:
                self.done.append((path, path.stat().st_mode))
                path.chmod(0o555 if path.is_dir() else 0o444)

    def undo(self) -> None:
        for path, mode in reversed(self.done):
            if mode == -1:
                subprocess.run(["chattr", "-i", str(path)], check=True)
            else:
                path.chmod(mode)
        self.done.clear()


@pytest.fixture
def read_only() -> Iterator[ReadOnly]:
    ro = ReadOnly()
    yield ro
    ro.undo()


def serve_expecting_refusal(db_url: str, timeout_s: float = 60.0) -> tuple[int, str]:
    """Run `cggm serve`; it must exit by itself. Returns (exit code, stderr). Fails if it starts serving."""
    port = free_port()
    cmd = [sys.executable, "-m", "cggm_core", "serve", "--port", str(port), "--db", db_url, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1.0).status_code == 200:
                    pytest.fail(f"the server started serving {db_url} and says it is healthy")
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`cggm serve --db {db_url}` neither served nor exited within {timeout_s:g} s")
            time.sleep(0.2)
        _, stderr = proc.communicate(timeout=10)
        return proc.returncode, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def assert_one_clear_line(rc: int, stderr: str, *needles: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert rc != 0, stderr
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("cggm: error: database "), lines[0]
    assert "fix:" in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def migrated_sqlite(path: Path) -> str:
    url = f"sqlite:///{path}"
    db = Database(url)
    db.migrate()
    db.dispose()
    return url


def test_startup_refuses_a_read_only_database_file(tmp_path: Path, read_only: ReadOnly) -> None:
    url = migrated_sqlite(tmp_path / "cggm.db")
    read_only(tmp_path / "cggm.db")
    rc, err = serve_expecting_refusal(url)
    assert_one_clear_line(rc, err, str(tmp_path / "cggm.db"), "read-only", "writable")


def test_startup_refuses_a_folder_it_may_not_write(tmp_path: Path, read_only: ReadOnly) -> None:
    (tmp_path / "locked").mkdir()
    read_only(tmp_path / "locked")
    rc, err = serve_expecting_refusal(f"sqlite:///{tmp_path / 'locked' / 'cggm.db'}")
    assert_one_clear_line(rc, err, str(tmp_path / "locked" / "cggm.db"), "cannot be opened", "folder")


def test_startup_refuses_a_path_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a folder")
    rc, err = serve_expecting_refusal(f"sqlite:///{tmp_path / 'notes.txt' / 'sub' / 'cggm.db'}")
    assert_one_clear_line(rc, err, str(tmp_path / "notes.txt"), "is a file, not a folder")


def test_startup_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "cggm.db").write_bytes(b"these are not the pages you are looking for" * 100)
    rc, err = serve_expecting_refusal(f"sqlite:///{tmp_path / 'cggm.db'}")
    assert_one_clear_line(rc, err, str(tmp_path / "cggm.db"), "not a SQLite database")


def test_startup_refuses_an_unknown_schema_revision(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path / "cggm.db")
    with sqlite3.connect(tmp_path / "cggm.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    rc, err = serve_expecting_refusal(url)
    assert_one_clear_line(rc, err, str(tmp_path / "cggm.db"), "'0999'", "upgrade cggm-monitor")


def test_startup_refuses_postgresql_that_cannot_be_reached() -> None:
    with socket_that_refuses() as port:
        rc, err = serve_expecting_refusal(f"postgresql+psycopg://cggm:s3cret-pw@127.0.0.1:{port}/nowhere")
    assert_one_clear_line(rc, err, f"127.0.0.1:{port}", "cannot be reached", "PostgreSQL is running")
    assert "s3cret-pw" not in err


def test_startup_refuses_postgresql_that_refuses_writes() -> None:
    base = _pg_url_or_skip()
    schema = f"cggm_ro_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        # Every transaction of this session is read-only, as on a standby or for a read-only role.
        options = f"-csearch_path%3D{schema}%20-cdefault_transaction_read_only%3Don"
        rc, err = serve_expecting_refusal(f"{base}{'&' if '?' in base else '?'}options={options}")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
    assert_one_clear_line(rc, err, "read-only", "may write")


@contextlib.contextmanager
def socket_that_refuses() -> Iterator[int]:
    """A port on 127.0.0.1 where nothing listens (bound, never listening: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# -- while serving --------------------------------------------------------------------------------------------
@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    server = ServerProcess(f"sqlite:///{tmp_path / 'cggm.db'}", tmp_path).start()
    yield server, tmp_path / "cggm.db"
    server.stop()


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_a_write_fault_is_a_clear_500_and_health_says_so_until_writes_work(
    sqlite_server: tuple[ServerProcess, Path], read_only: ReadOnly
) -> None:
    server, db_file = sqlite_server
    with server.client() as api:
        run_id = new_running_run(api)
        ok = api.post(f"/api/runs/{run_id}/metrics", json={"points": [{"key": "a", "step": 0, "value": 1.0}]})
        assert ok.status_code == 200
        assert api.get("/api/health").json() == {"status": "ok", "database": "sqlite", "writable": True, "detail": None}
        # The disk refuses writes to the open database (as a file system gone read-only would).
        read_only(*(p for p in (db_file, db_file.with_name("cggm.db-wal")) if p.exists()))
        for step in (1, 2):
            r = api.post(f"/api/runs/{run_id}/metrics", json={"points": [{"key": "a", "step": step, "value": 1.0}]})
            assert r.status_code == 500, r.text
            assert "not temporary" in r.json()["detail"] and "I/O error" in r.json()["detail"], r.text
            assert "retry-after" not in r.headers
        health = api.get("/api/health")
        assert health.status_code == 503, health.text
        assert health.json()["status"] == "unwritable" and not health.json()["writable"]
        assert "I/O error" in health.json()["detail"]
        assert api.get(f"/api/runs/{run_id}").status_code == 200  # reads still work
        read_only.undo()
        assert api.get("/api/health").status_code == 200  # the probe reached the disk and it works again
        r = api.post(f"/api/runs/{run_id}/metrics", json={"points": [{"key": "a", "step": 3, "value": 1.0}]})
        assert r.json() == {"accepted": 1, "duplicates": 0}
        assert stored_count(api, run_id) == 2


def test_a_database_locked_by_another_process_is_503_with_retry_after(
    sqlite_server: tuple[ServerProcess, Path],
) -> None:
    server, db_file = sqlite_server
    with server.client() as api:
        run_id = new_running_run(api)
        locked, release = threading.Event(), threading.Event()

        def hold_the_write_lock() -> None:
            conn = sqlite3.connect(db_file, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")  # holds SQLite's one write lock past the server's 5 s busy timeout
            locked.set()
            release.wait(60)
            conn.execute("ROLLBACK")
            conn.close()

        holder = threading.Thread(target=hold_the_write_lock)
        holder.start()
        try:
            assert locked.wait(10)
            r = api.post(f"/api/runs/{run_id}/metrics", json={"points": [{"key": "a", "step": 0, "value": 1.0}]})
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "1" and "retry" in r.json()["detail"]
            health = api.get("/api/health")
            assert health.status_code == 503 and health.json()["status"] == "busy", health.text
        finally:
            release.set()
            holder.join(30)
        r = api.post(f"/api/runs/{run_id}/metrics", json={"points": [{"key": "a", "step": 0, "value": 1.0}]})
        assert r.json() == {"accepted": 1, "duplicates": 0}
        assert api.get("/api/health").status_code == 200


# -- the last line: errors the database itself raises for a bad value map to 4xx ---------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'h.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


def test_database_data_and_integrity_errors_are_4xx(any_db_url: str) -> None:
    """The edge checks keep these from the real routes; if one slips through, it is still the client's value."""
    import asyncio

    from fastapi import FastAPI

    from backend.errors import install_handlers

    db = Database(any_db_url)
    db.migrate()
    app = FastAPI()
    install_handlers(app)

    @app.post("/duplicate")
    def duplicate() -> None:  # two rows with one (run_id, key): the primary key of `latest` refuses
        with db.write() as session:
            run_id = session.execute(
                sa.text(
                    "INSERT INTO runs (name, status, external, config, tags, notes, created_at) "
                    "VALUES ('d', 'running', :t, '{}', '[]', '', 0) RETURNING id"
                ),
                {"t": True},
            ).scalar_one()
            for _ in range(2):
                session.execute(
                    sa.text("INSERT INTO latest (run_id, key, step, value, time) VALUES (:r, 'k', 0, 0, 0)"),
                    {"r": run_id},
                )

    @app.post("/bad-value")
    def bad_value() -> None:  # PostgreSQL cannot store NUL in text (SQLite can: it has no such error)
        with db.write() as session:
            session.execute(sa.text("SELECT CAST(:v AS text)"), {"v": "a\x00b"})

    async def call(path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            return await client.post(path)

    try:
        r = asyncio.run(call("/duplicate"))
        assert r.status_code == 409 and "conflicts with stored data" in r.json()["detail"], r.text
        if not db.is_sqlite:
            r = asyncio.run(call("/bad-value"))
            assert r.status_code == 422 and "the database refused a value" in r.text, r.text
    finally:
        db.dispose()
