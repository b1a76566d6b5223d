"""A size limit on every request body: 413 with a clear message before the body is parsed.

The metrics ingest reads its own body with its own, larger limit (`deps.read_body_limited`);
every other write (run configs, notes, summaries, events, claims) goes through this middleware,
which buffers at most `limit` bytes and replays them to the app. Without it, one 200 MB config
was stored and every later listing of runs returned it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_INGEST = re.compile(r"^/api/runs/[^/]+/metrics/?$")
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class BodySizeLimit:
    """Refuse (413) a request whose body is larger than `limit` bytes; the ingest path is exempt."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and _INGEST.match(scope["path"]):
            await self.app(scope, receive, send)  # its own limit, read without a second copy
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send, f"body of {declared} bytes is above this endpoint's limit of {self.limit} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send, f"body is above this endpoint's limit of {self.limit} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, why: str) -> None:
        detail: dict[str, Any] = {"detail": f"{why}; send less (a smaller config, summary, notes or fewer events)"}
        payload = orjson.dumps(detail)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
