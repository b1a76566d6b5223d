"""Engine, sessions and migrations: one code path for SQLite (default) and PostgreSQL (by URL).

SQLite hazards handled here (measured in NOTES.md): without WAL and a busy timeout, four writer
processes see "database is locked" on 83% of attempts. So every connection gets WAL,
synchronous=NORMAL and busy_timeout=5000; write transactions start with BEGIN IMMEDIATE (a
deferred transaction that reads and then writes can fail at once, without waiting, when another
writer got in between); and inside one process, write transactions are serialised by a lock so
that threads queue in Python instead of spinning in SQLite's busy handler.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Execution option that marks a connection's transaction as a write (BEGIN IMMEDIATE on SQLite).
_WRITE_OPTION = "cggm_write"


class Database:
    """An engine, a session factory, and the write discipline for that engine's dialect."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            db_path = self.url.database
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                self.url, connect_args={"check_same_thread": False}, pool_size=10, max_overflow=30
            )
            _install_sqlite_events(self.engine)
        else:
            self.engine = create_engine(self.url, pool_size=10, max_overflow=30, pool_pre_ping=True)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time anyway; queueing here is cheaper than its busy handler.
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transactional scope: commit on success, roll back on any error."""
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        with lock, self.sessions() as session:
            session.connection(execution_options={_WRITE_OPTION: True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (no-op when it is there already)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        with lock, self.engine.connect().execution_options(**{_WRITE_OPTION: True}) as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()

    def dispose(self) -> None:
        self.engine.dispose()


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
