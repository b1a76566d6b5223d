"""Domain errors raised by the store and how each maps to an HTTP answer.

The store never speaks HTTP; routers let these propagate and `install_handlers` turns them into
{"detail": ...} with the right code. Validation errors keep FastAPI's list-of-fields shape.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from .schemas.common import json_safe
from .schemas.metrics import BatchError

log = logging.getLogger("backend")


class StoreError(Exception):
    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(StoreError):
    status_code = 404


class Conflict(StoreError):
    """The run's status does not allow this (metrics after finish, stopping a finished run...)."""

    status_code = 409


class Invalid(StoreError):
    """A field's value is not allowed; `loc` names the field."""

    status_code = 422

    def __init__(self, loc: list[str | int], detail: str) -> None:
        super().__init__(detail)
        self.loc = loc


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(Invalid)
    def _invalid(_req: Request, exc: Invalid) -> JSONResponse:
        return JSONResponse({"detail": [{"type": "value_error", "loc": exc.loc, "msg": exc.detail}]}, status_code=422)

    @app.exception_handler(StoreError)
    def _store(_req: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(BatchError)
    def _batch(_req: Request, exc: BatchError) -> JSONResponse:
        return JSONResponse({"detail": exc.errors}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default handler echoes the input, which may hold NaN floats that strict JSON
        # cannot encode (a 500); make the echo safe, drop the noisy pydantic URL.
        errors = []
        for e in exc.errors():
            entry = {k: v for k, v in e.items() if k in ("type", "loc", "msg", "input")}
            if "input" in entry:
                text = repr(entry["input"])
                entry["input"] = text if len(text) <= 200 else text[:200] + "…"
            errors.append(json_safe(entry))
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(OperationalError)
    def _db_unavailable(_req: Request, exc: OperationalError) -> JSONResponse:
        # A locked or unreachable database is a temporary condition: clients retry on 503.
        log.warning("database unavailable: %s", exc)
        return JSONResponse({"detail": "database temporarily unavailable; retry"}, status_code=503)
