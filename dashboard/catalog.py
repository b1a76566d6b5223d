"""The backend's catalog, cached briefly: datasets, methods, settings, and the metric key families."""

from __future__ import annotations

import threading
import time
from typing import Any

from . import api
from .families import Families

MAX_AGE_S = 30.0
_lock = threading.Lock()
_cached: dict[str, Any] = {"at": -1e9, "doc": None, "families": None}


def catalog() -> dict[str, Any]:
    """GET /api/catalog at most every MAX_AGE_S (a failed read is not cached: the next call retries)."""
    with _lock:
        if _cached["doc"] is not None and time.monotonic() - _cached["at"] < MAX_AGE_S:
            return _cached["doc"]
    doc = api.client().catalog()
    with _lock:
        _cached.update(at=time.monotonic(), doc=doc, families=Families(doc))
    return doc


def families() -> Families:
    catalog()
    with _lock:
        fam = _cached["families"]
    assert fam is not None
    return fam
