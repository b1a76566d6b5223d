"""Run schemas: RunCreate, RunUpdate, RunPublic, RunsPublic, and the worker protocol's bodies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..models import RUN_STATUSES
from .common import FreeText, OneLine, SafeJson, text_problem
from .workers import WorkerCapabilities

RunStatus = Literal["queued", "running", "stopping", "finished", "failed", "stopped", "lost"]
assert set(RunStatus.__args__) == set(RUN_STATUSES)  # type: ignore[attr-defined]

Tag = Annotated[OneLine, Field(min_length=1, max_length=100)]
MAX_TEXT = 100_000  # characters of notes, an error, one event message


def _names_are_strings(config: Any) -> Any:
    # `dataset` and `method` fill indexed String(100) columns and the runs table; a list there
    # (PostgreSQL: value too long; SQLite: a name like "['x', 'y']") is a mistake to refuse.
    # Checked before the document's non-finite numbers become strings: 1e400 is not a name.
    if not isinstance(config, dict):
        return config  # the dict validation says what is wrong
    for field in ("dataset", "method"):
        value = config.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not 0 < len(value) <= 100:
            raise ValueError(
                f"{field!r} must be a name of 1 to 100 characters, got {type(value).__name__} {value!r:.80}"
            )
        problem = text_problem(value)
        if problem:
            raise ValueError(f"{field!r} {problem}")
    return config


RunConfig = Annotated[SafeJson, BeforeValidator(_names_are_strings)]


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: a JSON false is not a number

    name: OneLine | None = Field(None, max_length=200, description="display name; default '<dataset>-<method>-<id>'")
    config: RunConfig = Field(
        description="flat job config: dataset, method and any setting by name (see /api/catalog); "
        "validated unless external"
    )
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    notes: FreeText = Field("", max_length=MAX_TEXT)
    external: bool = Field(
        False, description="a run logged by the user's own script: starts as running, config kept as given"
    )


class RunUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: a JSON false is not a number

    name: OneLine | None = Field(None, max_length=200)
    tags: list[Tag] | None = Field(None, max_length=50)
    notes: FreeText | None = Field(None, max_length=MAX_TEXT)


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: RunStatus
    external: bool
    config: dict[str, Any]
    dataset: str | None
    method: str | None
    model: str | None = Field(None, description="the job's model (a worker must have it and the dataset to claim it)")
    tags: list[str]
    notes: str
    created_at: float = Field(description="Unix seconds")
    started_at: float | None
    ended_at: float | None
    worker: str | None
    heartbeat_at: float | None
    summary: dict[str, Any] | None
    error: str | None
    waiting_reason: str | None = Field(
        None,
        description="a queued run that no connected worker can run: why, and what to do "
        "(e.g. no connected worker has its dataset); null otherwise",
    )


class RunsPublic(BaseModel):
    data: list[RunPublic]
    count: int = Field(description="runs matching the filters, over all pages")


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: a JSON false is not a number

    worker: OneLine = Field("worker", min_length=1, max_length=200, description="worker name, recorded on the run")
    capabilities: WorkerCapabilities | None = Field(
        None,
        description="what the worker can run; it is handed only runs whose dataset and model it has. "
        "Absent (a worker of an older version): the built-in datasets and models",
    )


class HeartbeatPublic(BaseModel):
    stop: bool = Field(description="true: the run should stop now (a user asked, or it is no longer active)")
    status: RunStatus


class RunFinish(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: a JSON false is not a number

    status: Literal["finished", "failed", "stopped"]
    summary: SafeJson | None = None
    error: FreeText | None = Field(None, max_length=MAX_TEXT)


class EventCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: a JSON false is not a number

    level: Literal["debug", "info", "warning", "error"] = "info"
    message: FreeText = Field(min_length=1, max_length=MAX_TEXT)
    time: float | None = Field(None, allow_inf_nan=False, description="Unix seconds; default now")


class EventsCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: a JSON false is not a number

    events: list[EventCreate] = Field(max_length=1000)


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    time: float
    level: str
    message: str


class EventsPublic(BaseModel):
    data: list[EventPublic]
