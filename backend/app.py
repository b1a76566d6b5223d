"""FastAPI app factory: `create_app(settings)`; OpenAPI at /docs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

import cggm_core

from .db import Database
from .docs import install_docs
from .errors import install_handlers
from .lifecycle import sweep_lost_forever
from .limits import BodySizeLimit
from .read_auth import install_read_auth
from .read_cache import SeriesCache
from .read_pool import ReadPool, reachable_from_another_process
from .routers import meta, metrics, runs, workers
from .schemas.common import JSON_VALUE_SCHEMA
from .schemas.metrics import MetricsBatch
from .settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.database_url())
    db.open_for_serving()  # migrate, and refuse a database that cannot be written (one clear line)
    url = settings.database_url()
    # Helpers by default on SQLite only: on PostgreSQL they made reads under ingest slower (BENCHMARKS §3.0e).
    processes = settings.read_processes if settings.read_processes is not None else int(db.is_sqlite)
    read_pool = ReadPool(url, processes) if processes and reachable_from_another_process(url) else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(sweep_lost_forever(db, settings))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if read_pool is not None:
                read_pool.close()
            db.dispose()

    app = FastAPI(
        title="CGGM Monitor",
        version=cggm_core.__version__,
        description="Run store, metric ingest and queries, and the job queue for workers.",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, with local assets (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.series_cache = SeriesCache(settings.read_cache_mb << 20) if settings.read_cache_mb else None
    app.state.read_pool = read_pool
    app.add_middleware(BodySizeLimit, limit=settings.max_request_bytes)
    install_handlers(app)
    for module in (meta, runs, metrics, workers):
        app.include_router(module.router)
    _register_schema(app, settings)
    install_docs(app)
    install_read_auth(app, settings)
    return app


def _register_schema(app: FastAPI, settings: Settings) -> None:
    """Finish the OpenAPI document: the raw-parsed ingest body, and the bounds that are settings."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            # MetricsBatch: the ingest endpoint reads its body raw (orjson), so FastAPI never saw it.
            defs = MetricsBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(defs.pop("$defs", {}))
            defs["properties"]["points"]["maxItems"] = settings.max_batch
            components["MetricsBatch"] = defs
            components["JsonValue"] = JSON_VALUE_SCHEMA  # configs and summaries (schemas.common.SafeJson)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    for param in operation.get("parameters", []):
                        _tidy_parameter(param, settings)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _tidy_parameter(param: dict[str, Any], settings: Settings) -> None:
    # An optional query parameter is `X | None` in Python; on the wire it is X or absent, never null.
    schema = param.get("schema", {})
    branches = schema.get("anyOf")
    if param.get("in") == "query" and branches and len(branches) == 2 and {"type": "null"} in branches:
        kept = next(b for b in branches if b != {"type": "null"})
        schema.pop("anyOf")
        schema.update(kept)
    if param.get("in") == "query" and param.get("name") == "limit" and "x-max-page" in schema:
        schema.pop("x-max-page")
        schema["maximum"] = settings.max_page
