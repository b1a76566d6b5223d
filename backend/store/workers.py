"""Workers the backend has heard from: what each can run, when it was last seen, and why a queued
run waits when no connected worker can run it.

A worker is seen when it claims (every poll while it is idle) and when it heartbeats a run it
trains, so "connected" = seen within the heartbeat timeout, the same silence after which its run
would be declared lost. Names identify workers: two workers started with the same --name share
one row (the default name, <host>-<pid>, is unique). Rows unseen for FORGET_AFTER_S are deleted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cggm_core import plugins

from ..models import ACTIVE_STATUSES, Run, Worker

FORGET_AFTER_S = 7 * 86_400.0  # a worker silent for a week is gone (default names change with every start)
_PRUNE_EVERY_S = 3_600.0
_last_prune = 0.0
_prune_lock = threading.Lock()
MAX_NAMED = 3  # workers named in a waiting reason


@dataclass(frozen=True)
class CanRun:
    """The dataset and model names whose jobs a worker is handed."""

    datasets: frozenset[str]
    models: frozenset[str]

    def runs(self, dataset: str | None, model: str | None) -> bool:
        # A run without a model (stored before runs had one) runs its dataset's default model.
        return dataset in self.datasets and (model is None or model in self.models)


def builtins() -> CanRun:
    """What a worker that reports nothing (an older version) is taken to run: this version's built-ins."""
    return CanRun(plugins.builtin_names("dataset"), plugins.builtin_names("model"))


def can_run(capabilities: dict[str, Any] | None) -> CanRun:
    if capabilities is None:
        return builtins()
    return CanRun(frozenset(capabilities.get("datasets") or ()), frozenset(capabilities.get("models") or ()))


def seen(session: Session, *, name: str, capabilities: dict[str, Any] | None, now: float) -> None:
    """Record a claim: the worker's capabilities as it sent them, and the time (one upsert)."""
    values = {"name": name, "capabilities": capabilities, "first_seen_at": now, "last_seen_at": now}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Worker).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Worker.name],
        set_={"capabilities": stmt.excluded.capabilities, "last_seen_at": stmt.excluded.last_seen_at},
    )
    session.execute(stmt)
    _prune_now_and_then(session, now)


def touch(session: Session, *, name: str, now: float) -> None:
    """A heartbeat of a run this worker trains: it is still there (its capabilities are unchanged)."""
    session.execute(update(Worker).where(Worker.name == name, Worker.last_seen_at < now).values(last_seen_at=now))


def _prune_now_and_then(session: Session, now: float) -> None:
    global _last_prune
    with _prune_lock:
        if now - _last_prune < _PRUNE_EVERY_S:
            return
        _last_prune = now
    session.execute(delete(Worker).where(Worker.last_seen_at < now - FORGET_AFTER_S))


def list_workers(session: Session) -> list[Worker]:
    """Every worker remembered, the most recently seen first."""
    return list(session.scalars(select(Worker).order_by(Worker.last_seen_at.desc(), Worker.name)))


def running_runs(session: Session, *, names: Iterable[str]) -> dict[str, list[int]]:
    """Ids of the active runs each of these workers trains."""
    wanted = list(names)
    out: dict[str, list[int]] = {n: [] for n in wanted}
    if not wanted:
        return out
    rows = session.execute(
        select(Run.worker, Run.id).where(Run.status.in_(ACTIVE_STATUSES), Run.worker.in_(wanted)).order_by(Run.id)
    )
    for worker, run_id in rows:
        out[str(worker)].append(run_id)
    return out


def connected(session: Session, *, window_s: float, now: float | None = None) -> list[Worker]:
    cutoff = (time.time() if now is None else now) - window_s
    return list(session.scalars(select(Worker).where(Worker.last_seen_at >= cutoff).order_by(Worker.name)))


def waiting_reasons(session: Session, runs: Sequence[Run], *, window_s: float) -> dict[int, str]:
    """Run id → why it waits, for each queued run that no connected worker can run."""
    queued = [r for r in runs if r.status == "queued"]
    if not queued:
        return {}
    workers = connected(session, window_s=window_s)
    reasons = {}
    for run in queued:
        reason = waiting_reason(run.dataset, run.model, workers, window_s=window_s)
        if reason is not None:
            reasons[run.id] = reason
    return reasons


def waiting_reason(dataset: str | None, model: str | None, workers: Sequence[Worker], *, window_s: float) -> str | None:
    """Why no connected worker can run a job of this dataset and model, and what to do; None when one can."""
    if not workers:
        return (
            f"no worker is connected (none seen in the last {window_s:g} s); "
            "start one: cggm worker --server <this backend's URL>"
        )
    abilities = [can_run(w.capabilities) for w in workers]
    if any(a.runs(dataset, model) for a in abilities):
        return None
    names = [w.name for w in workers]
    who = ", ".join(names[:MAX_NAMED]) + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")
    connected_text = f"connected: {who}"
    if not any(dataset in a.datasets for a in abilities):
        return f"no connected worker has dataset {dataset!r}; {_fix('dataset', dataset)} ({connected_text})"
    if model is not None and not any(model in a.models for a in abilities):
        return f"no connected worker has model {model!r}; {_fix('model', model)} ({connected_text})"
    return (
        f"no connected worker has both dataset {dataset!r} and model {model!r}; install them on the same "
        f"worker ({connected_text})"
    )


def _fix(kind: plugins.Kind, name: str | None) -> str:
    info = plugins.origin(kind, name) if name is not None else None
    if info is not None and info.package:
        return f"install the plugin package {info.package!r} on a worker"
    if info is not None:
        return f"install the plugin that provides it (entry point '{info.entry_point}') on a worker"
    if name is not None and name in plugins.builtin_names(kind):
        return "its workers are of an older version: upgrade one"
    return "install the plugin that provides it on a worker"
