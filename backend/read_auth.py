"""Optional read protection: with `token_reads` (`cggm serve --token-reads`, CGGM_TOKEN_READS=1)
every request needs the bearer token, reads included.

Without it only writes need the token (`require_token` in deps.py) and every read is open to
whoever reaches the port: run configs, names, notes, errors with their tracebacks, metrics. The
workers, HttpSink and the dashboard already send their token on every request, so turning this on
needs no change on their side. Left open: /api/health (health checks of containers and `cggm up`,
which learn nothing from it) and the API docs (/docs, /openapi.json: the schema is public).

A plain ASGI middleware rather than a dependency on every read route: routes added later are
covered without anyone remembering, and it costs nothing when off (it is not installed).
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .settings import Settings

OPEN_PATHS = frozenset({"/api/health", "/openapi.json", "/docs"})
OPEN_PREFIXES = ("/docs/",)  # Swagger UI's files and its OAuth2 redirect page


class ReadTokenMiddleware:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"detail": "missing or wrong bearer token: this server requires it on reads too (token_reads)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and secrets.compare_digest(given.strip(), self.token)
        return False


def install_read_auth(app: FastAPI, settings: Settings) -> None:
    """Require the token on reads when settings.token_reads is set (a no-op otherwise)."""
    if not settings.token_reads:
        return
    if not settings.token:
        raise ValueError("token_reads needs a token: set CGGM_TOKEN (or --token)")
    app.add_middleware(ReadTokenMiddleware, token=settings.token)
