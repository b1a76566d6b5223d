"""A small real HTTP server in a thread that stands between a client and a real backend.

It forwards every request to the backend and answers with the backend's answer, except where its
`fault` callable decides otherwise for a request: answer a given status itself (a 500 for chosen
batches), or drop the connection without answering (the backend is down, as the client sees it).
Every metrics POST is recorded with the number of points it carried and what it was answered.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

DROP = "drop"  # close the connection without an answer
# fault(method, path, body) -> None (forward), an HTTP status to answer with, (status, JSON body), or DROP
Fault = Callable[[str, str, bytes], "int | str | tuple[int, bytes] | None"]
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "keep-alive", "accept-encoding"}


@dataclass
class Posted:
    path: str
    points: int
    keys: list[str]  # one per point
    answer: int | str  # the status the client got, or DROP
    shape: str = "rows"  # "rows" ({"points": ...}), "columns" ({"series": ...}), or "" (neither)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.fault: Fault = lambda _method, _path, _body: None
        self.posted: list[Posted] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=self.upstream, timeout=30.0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                decision = proxy.fault(self.command, self.path, body)
                if self.command == "POST" and self.path.endswith("/metrics"):
                    proxy._record(self.path, body, decision)
                if decision == DROP:
                    self.close_connection = True
                    return  # no status line: the client sees the connection closed
                if isinstance(decision, int):
                    self._answer(decision, json.dumps({"detail": "injected fault"}).encode())
                    return
                if isinstance(decision, tuple):
                    self._answer(*decision)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                r = proxy._http.request(self.command, self.path, content=body, headers=headers)
                if self.command == "POST" and self.path.endswith("/metrics"):
                    proxy._set_last_answer(r.status_code)
                self._answer(r.status_code, r.content, r.headers.get("content-type", "application/json"))

            def _answer(self, status: int, content: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _record(self, path: str, body: bytes, decision: int | str | tuple[int, bytes] | None) -> None:
        keys: list[str] = []
        shape = ""
        try:
            doc = json.loads(body)
            if "points" in doc:
                keys += [p.get("key") for p in doc["points"]]
                shape = "rows"
            if "series" in doc:
                keys += [s.get("key") for s in doc["series"] for _ in s.get("steps", [])]
                shape = "columns" if not shape else "both"
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        answer = decision[0] if isinstance(decision, tuple) else decision
        entry = Posted(path, len(keys), keys, answer if answer is not None else 0, shape)
        with self._lock:
            self.posted.append(entry)

    def _set_last_answer(self, status: int) -> None:
        with self._lock:
            for entry in reversed(self.posted):
                if entry.answer == 0:
                    entry.answer = status
                    break

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
