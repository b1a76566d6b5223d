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
from .read_auth import install_read_auth
from .routers import meta, metrics, runs, workers
from .schemas.metrics import MetricsBatch
from .settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.database_url())
    db.migrate()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(sweep_lost_forever(db, settings))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
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
    install_handlers(app)
    for module in (meta, runs, metrics, workers):
        app.include_router(module.router)
    _register_schema(app)
    install_docs(app)
    install_read_auth(app, settings)
    return app


def _register_schema(app: FastAPI) -> None:
    """Add MetricsBatch to the OpenAPI components: the ingest endpoint reads its body raw (orjson)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            defs = MetricsBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(defs.pop("$defs", {}))
            components["MetricsBatch"] = defs
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
