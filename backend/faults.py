"""What a database error means for a client: retry later, or stop and tell a person.

Only real contention (SQLite's locked/busy, PostgreSQL's lock, deadlock and serialisation
failures) and a lost connection to the PostgreSQL server are *transient*: the same request can
succeed in a moment, so the answer is 503 with Retry-After, and clients spool and retry.
Everything else (a read-only file, missing permissions, a full disk, a damaged or missing schema)
is *permanent*: retrying cannot help, so the answer is 500 with the reason, and start-up refuses
to serve at all. Clients retry a 5xx a bounded number of times; a 503 says "soon", a 500 says
"not without a person".
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

# PostgreSQL SQLSTATEs that clear up by themselves (class 08: connection; 40001/40P01: serialisation
# failure, deadlock; 55P03: lock not available; 57P01-03: the server is shutting down or starting;
# 53300: too many connections).
_PG_TRANSIENT = ("08", "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300")
_PG_PERMANENT_REASON = {
    "25006": "the database is read-only (a read-only transaction or a standby server)",
    "42501": "the database user lacks a privilege it needs",
    "53100": "the database server's disk is full",
    "42P01": "a table is missing: the schema is not this application's",
}
_PERMISSIONS_FIX = (
    "make the file and its folder readable and writable by the user running the server (SQLite writes "
    "-wal and -shm files beside it), or point --db at another path"
)
_OTHER_FILE_FIX = "point --db at a SQLite database or at a new path (move this file away if it is damaged)"
# SQLite result codes (Python 3.11's sqlite_errorname): what each means here, and the fix.
_SQLITE_REASON = {
    "SQLITE_READONLY": ("the database file (or its folder) is read-only for this user", _PERMISSIONS_FIX),
    "SQLITE_CANTOPEN": ("the database file cannot be opened (missing folder or permissions)", _PERMISSIONS_FIX),
    "SQLITE_PERM": ("permission denied on the database file", _PERMISSIONS_FIX),
    "SQLITE_FULL": ("the disk holding the database is full", "free disk space"),
    "SQLITE_IOERR": ("the disk returned an I/O error", "check the disk and the file system"),
    "SQLITE_CORRUPT": ("the database file is damaged", _OTHER_FILE_FIX),
    "SQLITE_NOTADB": ("the file is not a SQLite database", _OTHER_FILE_FIX),
}


@dataclass(frozen=True)
class Fault:
    transient: bool
    reason: str  # one line, for the answer's detail and the log
    fix: str | None = None  # what a person should do, when it is known


def classify(exc: BaseException) -> Fault:
    """A database error → transient (503, retry) or permanent (500), with a one-line reason."""
    orig: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    message = _first_line(str(orig))
    name = getattr(orig, "sqlite_errorname", None)
    if isinstance(name, str):
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return Fault(True, f"the database is busy ({message})")
        if name == "SQLITE_READONLY_DBMOVED":
            return Fault(
                False,
                "the database file was moved or deleted while the server runs",
                "put it back, or restart the server to start a new one at that path",
            )
        for prefix, (reason, fix) in _SQLITE_REASON.items():
            if name.startswith(prefix):
                return Fault(False, f"{reason} ({message})", fix)
        if "no such table" in message:
            return Fault(False, f"a table is missing: the schema is not this application's ({message})")
        return Fault(False, message)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is None and isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Fault(True, f"the connection to the database was lost ({message})")
    if isinstance(sqlstate, str):
        if sqlstate.startswith(_PG_TRANSIENT):
            return Fault(True, f"the database is busy or restarting ({message})")
        known = _PG_PERMANENT_REASON.get(sqlstate)
        return Fault(False, f"{known} ({message})" if known else message)
    if _looks_like_connection_failure(orig):
        return Fault(True, f"the database server cannot be reached ({message})")
    return Fault(False, message)


def _looks_like_connection_failure(orig: BaseException) -> bool:
    # psycopg raises OperationalError without a SQLSTATE when it cannot connect at all.
    module = type(orig).__module__
    return module.startswith("psycopg") and type(orig).__name__ == "OperationalError"


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown database error"
    return line if len(line) <= 300 else line[:300] + "…"
