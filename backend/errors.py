"""Domain errors raised by the store and how each maps to an HTTP answer.

The store never speaks HTTP; routers let these propagate and `install_handlers` turns them into
{"detail": ...} with the right code. Validation errors keep FastAPI's list-of-fields shape.

What a client may do with each answer (HttpSink and the worker follow this):
- 4xx: the request itself is wrong (422 names the field; 413 too large; 404/409 the run's state);
  sending it again cannot succeed. 401 (token), 408 and 429 are the exceptions worth a retry.
- 503 with Retry-After: transient (the database is busy or restarting); retry, the data is safe.
- 500: permanent (read-only or full disk, damaged database, ...); `detail` says so and why. A
  client may retry a bounded number of times, then set the data aside; a person must act.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .faults import classify
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

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer when json.loads fails for a reason other than syntax (an integer
            # of more than 4,300 digits, nesting past the recursion limit): still a bad body.
            msg = "body is not JSON this server accepts (an integer of thousands of digits, or nesting too deep)"
            return JSONResponse({"detail": [{"type": "json_invalid", "loc": ["body"], "msg": msg}]}, status_code=422)
        if exc.status_code == 405:
            # Starlette names only the methods of the first route on this path; list them all.
            allowed = _methods_on_path(req)
            if allowed:
                exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
        return await http_exception_handler(req, exc)

    @app.exception_handler(DataError)
    def _data_error(_req: Request, exc: DataError) -> JSONResponse:
        # The edge checks should have caught it; the database is the last line, and it is still a
        # bad value (out of range, too long, NUL), not a server fault.
        log.warning("database refused a value: %s", exc.orig)
        msg = f"the database refused a value: {str(exc.orig).strip().splitlines()[0][:300]}"
        return JSONResponse({"detail": [{"type": "value_error", "loc": ["body"], "msg": msg}]}, status_code=422)

    @app.exception_handler(IntegrityError)
    def _integrity_error(_req: Request, exc: IntegrityError) -> JSONResponse:
        # e.g. metrics for a run deleted by another request in between: a conflict with stored data.
        log.warning("integrity error: %s", exc.orig)
        msg = f"conflicts with stored data: {str(exc.orig).strip().splitlines()[0][:300]}"
        return JSONResponse({"detail": msg}, status_code=409)

    @app.exception_handler(DBAPIError)
    def _db_fault(_req: Request, exc: DBAPIError) -> JSONResponse:
        fault = classify(exc)
        if fault.transient:
            log.warning("database busy: %s", fault.reason)
            return JSONResponse(
                {"detail": f"database temporarily unavailable: {fault.reason}; retry"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        log.error("database fault: %s", fault.reason)
        fix = f" ({fault.fix})" if fault.fix else ""
        detail = f"database fault, not temporary: {fault.reason}; the server's operator must fix it{fix}, retrying will not help"
        return JSONResponse({"detail": detail}, status_code=500)


def _methods_on_path(req: Request) -> list[str]:
    """The methods the OpenAPI document lists for the path this request was for."""
    parts = req.url.path.rstrip("/").split("/")
    methods: set[str] = set()
    for template, operations in req.app.openapi().get("paths", {}).items():
        pattern = template.rstrip("/").split("/")
        if len(pattern) == len(parts) and all(
            p == s or (p.startswith("{") and p.endswith("}") and s) for p, s in zip(pattern, parts, strict=True)
        ):
            methods.update(m.upper() for m in operations)
    return sorted(methods)
