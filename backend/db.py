"""Engine, sessions and migrations: one code path for SQLite (default) and PostgreSQL (by URL).

SQLite hazards handled here (measured in NOTES.md): without WAL and a busy timeout, four writer
processes see "database is locked" on 83% of attempts. So every connection gets WAL,
synchronous=NORMAL and busy_timeout=5000; write transactions start with BEGIN IMMEDIATE (a
deferred transaction that reads and then writes can fail at once, without waiting, when another
writer got in between); and inside one process, write transactions are serialised by a lock so
that threads queue in Python instead of spinning in SQLite's busy handler.

Start-up (`Database.open_for_serving`) refuses a database it cannot write, with one line that names
the path and the fix (`DatabaseUnusable`): a read-only file, a folder it may not write, a path
under a regular file, a schema revision this version does not know, a server it cannot reach.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cggm_core.settings import SettingError

from .faults import classify

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Execution option that marks a connection's transaction as a write (BEGIN IMMEDIATE on SQLite).
_WRITE_OPTION = "cggm_write"


class DatabaseUnusable(SettingError):
    """The configured database cannot be served: the message is one line naming it and the fix.

    A SettingError, because the fix is a setting (`--db`, CGGM_DB_URL, CGGM_DB_DIR) or the
    thing it points at; `cggm serve` prints it as one line and exits non-zero.
    """


class Database:
    """An engine, a session factory, and the write discipline for that engine's dialect."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            db_path = self.url.database
            if db_path and db_path != ":memory:" and not self.url.query.get("uri"):
                _make_folder(Path(db_path))
            self.engine: Engine = create_engine(
                self.url, connect_args={"check_same_thread": False}, pool_size=10, max_overflow=30
            )
            _install_sqlite_events(self.engine)
        else:
            self.engine = create_engine(self.url, pool_size=10, max_overflow=30, pool_pre_ping=True)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time anyway; queueing here is cheaper than its busy handler.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self.write_fault: str | None = None  # the last write's permanent fault, until a write works

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transactional scope: commit on success, roll back on any error."""
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        with lock, self.sessions() as session:
            try:
                session.connection(execution_options={_WRITE_OPTION: True})
                yield session
                session.commit()
            except BaseException as e:
                session.rollback()
                self._note_write_fault(e)
                raise
            self.write_fault = None

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """`write` without the ORM: a Core connection in one transaction (BEGIN IMMEDIATE on SQLite),
        committed on success, rolled back on any error. For the ingest path, where a Session's
        set-up and commit bookkeeping are a measurable part of a 1,000-point request."""
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        with lock, self.engine.connect().execution_options(**{_WRITE_OPTION: True}) as conn:
            try:
                conn.begin()
                yield conn
                conn.commit()
            except BaseException as e:
                conn.rollback()
                self._note_write_fault(e)
                raise
            self.write_fault = None

    def _note_write_fault(self, e: BaseException) -> None:
        # A permanent fault seen by a real write (a disk I/O error, say) is what /api/health reports
        # until a write works again: a rolled-back probe does not reach the disk, so cannot see it.
        if isinstance(e, DBAPIError) and not isinstance(e, (DataError, IntegrityError)):
            fault = classify(e)
            if not fault.transient:
                self.write_fault = fault.reason

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (no-op when it is there already)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        with lock, self.engine.connect().execution_options(**{_WRITE_OPTION: True}) as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()

    def probe_write(self, *, commit: bool = False) -> None:
        """A real write: raises the database's own error when writes do not work.

        Updating alembic_version's row to itself needs write access to the file (SQLite) or the
        UPDATE privilege and a read-write server (PostgreSQL), and changes nothing. Rolled back by
        default; `commit` takes it to the disk too (how health checks that a fault has cleared).
        """
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        with lock, self.engine.connect().execution_options(**{_WRITE_OPTION: True}) as conn:
            try:
                conn.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
                if commit:
                    conn.commit()
                else:
                    conn.rollback()
            except BaseException as e:
                self._note_write_fault(e)
                raise
        self.write_fault = None

    @property
    def where(self) -> str:
        """The database for messages: the SQLite path, or the URL without its password."""
        if self.is_sqlite:
            return str(self.url.database)
        return self.url.render_as_string(hide_password=True)

    def open_for_serving(self) -> None:
        """Migrate to the newest revision and check that writes work; DatabaseUnusable otherwise."""
        try:
            self.migrate()
            self.probe_write()
        except CommandError as e:
            raise DatabaseUnusable(
                f"database {self.where}: {_first_line(e)}: its schema was written by another (newer?) version "
                "of cggm-monitor; fix: upgrade cggm-monitor, or point --db at another database"
            ) from None
        except DBAPIError as e:
            fault = classify(e)
            fix = fault.fix or (
                "point --db at a writable SQLite path"
                if self.is_sqlite
                else "check that PostgreSQL is running, that the URL is right and that its user may write"
            )
            raise DatabaseUnusable(f"database {self.where}: {fault.reason}; fix: {fix}") from None

    def dispose(self) -> None:
        self.engine.dispose()


def _make_folder(db_path: Path) -> None:
    """Create the SQLite file's folder; DatabaseUnusable naming what is in the way when it cannot be."""
    folder = db_path.parent
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise DatabaseUnusable(
            f"database {db_path}: {blocker} is a file, not a folder; fix: choose another path (--db sqlite:///PATH)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatabaseUnusable(
            f"database {db_path}: cannot create its folder {folder} ({e.strerror}); "
            "fix: create it, make its parent writable by this user, or choose another path (--db sqlite:///PATH)"
        ) from None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _install_sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
