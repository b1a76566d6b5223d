"""Dependencies as Annotated aliases, in one place: settings, database sessions, auth, raw body."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from .db import Database
from .schemas.common import MAX_ID
from .settings import Settings

# Every {run_id}: bounded by what both databases store (INTEGER ids), so an overflowing id is a 422.
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="run id")]


# The small dependencies are coroutines: FastAPI runs a plain `def` dependency in the threadpool,
# one thread hop each (~50 µs), which on the ingest path was three hops per request.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]


def read_session(db: DbDep) -> Iterator[Session]:
    with db.read() as session:
        yield session


ReadSession = Annotated[Session, Depends(read_session)]

_bearer = HTTPBearer(auto_error=False, description="required on writes when the server has a token")


async def require_token(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    if settings.token is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), settings.token.encode()):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


WriteAuth = Depends(require_token)


async def read_body_limited(request: Request, settings: SettingsDep) -> bytes:
    """The raw request body, refused with 413 past settings.max_body_bytes (before reading it all)."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared} bytes is above the limit of {limit}; send smaller batches")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body is above the limit of {limit} bytes; send smaller batches")
        chunks.append(chunk)
    return b"".join(chunks)


RawBody = Annotated[bytes, Depends(read_body_limited)]
