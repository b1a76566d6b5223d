"""A small HTTP client for the backend (DESIGN §7). The dashboard's only way to reach data.

Errors are turned into two kinds the pages know how to show: `BackendDown` (no answer: the
banner) and `ApiError` (an answer with an error status: shown inline, with the backend's message).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import httpx

from .decode import Series, decode_value, parse_series

log = logging.getLogger("dashboard")


class BackendDown(Exception):
    """The backend did not answer (refused, timed out, 5xx from a proxy)."""


class ApiError(Exception):
    """The backend answered with an error status; `message` is its `detail`, made readable."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def format_detail(detail: Any) -> str:
    """FastAPI's {"detail": ...}: a string, or a list of {loc, msg} → "config: unknown setting 'x'"."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for e in detail:
            if isinstance(e, dict):
                loc = [str(p) for p in e.get("loc", []) if p != "body"]
                msg = str(e.get("msg", e))
                parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
            else:
                parts.append(str(e))
        return "; ".join(parts)
    return str(detail)


class ApiClient:
    def __init__(self, base_url: str, timeout_s: float = 5.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers)
        self._repeated_keys: bool | None = None  # does GET …/metrics take `keys=a&keys=b`? (asked once)

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise BackendDown(f"backend at {self.base_url} is not answering: {e.__class__.__name__}") from None
        if r.status_code in (502, 503, 504):
            raise BackendDown(f"backend at {self.base_url} answered {r.status_code}")
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ApiError(r.status_code, format_detail(detail))
        if r.status_code == 204 or not r.content:
            return None
        return r.json()

    # ---- meta
    def health(self) -> dict[str, Any]:
        return self._request("GET", "/api/health")

    def catalog(self) -> dict[str, Any]:
        return self._request("GET", "/api/catalog")

    # ---- runs
    def list_runs(self, limit: int = 500) -> list[dict[str, Any]]:
        doc = self._request("GET", "/api/runs", params={"limit": limit})
        return doc["data"] if isinstance(doc, dict) else list(doc)

    def get_run(self, run_id: int) -> dict[str, Any]:
        return self._request("GET", f"/api/runs/{run_id}")

    def create_run(self, config: dict[str, Any], name: str | None = None, tags: list[str] | None = None) -> dict:
        body: dict[str, Any] = {"config": config, "tags": tags or []}
        if name:
            body["name"] = name
        return self._request("POST", "/api/runs", json=body)

    def update_run(
        self, run_id: int, *, name: str | None = None, tags: list[str] | None = None, notes: str | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in (("name", name), ("tags", tags), ("notes", notes)) if v is not None}
        return self._request("PATCH", f"/api/runs/{run_id}", json=body)

    def stop_run(self, run_id: int) -> dict[str, Any]:
        return self._request("POST", f"/api/runs/{run_id}/stop")

    def delete_run(self, run_id: int) -> None:
        self._request("DELETE", f"/api/runs/{run_id}")

    def events(self, run_id: int, after_id: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        try:
            doc = self._request("GET", f"/api/runs/{run_id}/events", params={"after_id": after_id, "limit": limit})
        except ApiError as e:
            if e.status in (404, 405):  # a backend without events: no log tail
                return []
            raise
        return doc.get("data", []) if isinstance(doc, dict) else []

    # ---- metrics
    def latest(self, run_id: int) -> dict[str, float]:
        """The last value of every key (non-finite decoded), e.g. a running run's numbers so far."""
        doc = self._request("GET", f"/api/runs/{run_id}/latest") or {}
        return {k: decode_value(v.get("value")) for k, v in doc.items() if isinstance(v, dict)}

    def keys(self, run_id: int) -> list[str]:
        doc = self._request("GET", f"/api/runs/{run_id}/keys")
        return list(doc["keys"] if isinstance(doc, dict) else doc)

    def metrics(
        self,
        run_id: int,
        keys: Iterable[str] | None = None,
        since_step: int | None = None,
        max_points: int | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Series]:
        """`timeout_s` overrides the client's (short, live-tick) timeout, e.g. for a full render."""
        params: list[tuple[str, Any]] = []
        if keys is not None:
            key_list = list(keys)
            if not key_list:
                return {}
            params += self._keys_params(key_list)
            if not params:
                return {}
        if since_step is not None:
            params.append(("since_step", since_step))
        if max_points is not None:
            params.append(("max_points", max_points))
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        return parse_series(self._request("GET", f"/api/runs/{run_id}/metrics", params=params, **extra))

    def _keys_params(self, keys: list[str]) -> list[tuple[str, str]]:
        """Repeated `keys=` where the backend takes them (a key may hold a comma); else one comma list.

        A backend that reads `keys` as one comma-separated string keeps only the last of repeated
        parameters, so the form is chosen from its OpenAPI schema (an array or not), asked once.
        Keys it cannot fetch that way (holding a comma) are left out, with a warning.
        """
        if self._repeated_keys is None:
            self._repeated_keys = self._backend_takes_repeated_keys()
        if self._repeated_keys:
            return [("keys", k) for k in keys]
        fetchable = [k for k in keys if "," not in k and k == k.strip()]
        if len(fetchable) < len(keys):
            log.warning(
                "this backend cannot fetch keys with a comma or surrounding spaces: %s",
                sorted(set(keys) - set(fetchable)),
            )
        return [("keys", ",".join(fetchable))] if fetchable else []

    def _backend_takes_repeated_keys(self) -> bool:
        try:
            doc = self._request("GET", "/openapi.json")
            params = doc["paths"]["/api/runs/{run_id}/metrics"]["get"]["parameters"]
            schema = next(p for p in params if p.get("name") == "keys")["schema"]
        except (ApiError, KeyError, StopIteration, TypeError):
            return False
        options = [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]
        return any(isinstance(o, dict) and o.get("type") == "array" for o in options)


_client: ApiClient | None = None


def configure(base_url: str, token: str | None = None) -> ApiClient:
    """Set the process's client (one dashboard process talks to one backend)."""
    global _client
    if _client is not None:
        _client.close()
    _client = ApiClient(base_url, token=token)
    return _client


def client() -> ApiClient:
    if _client is None:
        raise RuntimeError("dashboard.api.configure(url) has not been called; use dashboard.app.create_app")
    return _client
