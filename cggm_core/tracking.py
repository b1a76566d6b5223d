"""Tracking client: where metric points go.

A sink takes points (key, step, value, time), buffers them, and writes them out on `flush` and
`close`. Training never waits on a sink beyond appending to its buffer. `JsonlSink` writes one
JSON object per line; the HTTP sink for the backend implements the same three methods.

Non-finite values: JSON has no NaN or infinity, so they travel as the strings "NaN",
"Infinity" and "-Infinity" (JavaScript's names); `decode_value` turns them back into floats.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol


@dataclass(frozen=True)
class Point:
    key: str
    step: int
    value: float
    time: float


# The one JSON convention for non-finite values, shared by the sinks and the backend.
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_value(v: float) -> float | str:
    if math.isfinite(v):
        return v
    if math.isnan(v):
        return "NaN"
    return "Infinity" if v > 0 else "-Infinity"


def decode_value(v: float | int | str) -> float:
    if isinstance(v, str):
        if v not in NON_FINITE:
            raise ValueError(f"value {v!r} is neither a number nor one of NaN, Infinity, -Infinity")
        return NON_FINITE[v]
    return float(v)


def point_to_json(p: Point) -> dict[str, object]:
    return {"key": p.key, "step": p.step, "value": encode_value(p.value), "time": p.time}


def json_safe(o: Any) -> Any:
    """Replace non-finite floats by the convention's strings, recursively (summaries, configs)."""
    if isinstance(o, float):
        return encode_value(o)
    if isinstance(o, dict):
        return {k: json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    return o


class Sink(Protocol):
    def log(self, points: Iterable[Point]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> object: ...  # HttpSink returns its DeliveryReport


def log_dict(sink: Sink, values: Mapping[str, float], step: int, at: float | None = None) -> None:
    t = time.time() if at is None else at
    sink.log(Point(k, step, float(v), t) for k, v in values.items())


class JsonlSink:
    """Append points to a JSON-lines file; buffered in memory until `flush`/`close`."""

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("a" if append else "w", encoding="utf-8")
        self._buffer: list[str] = []
        self._lock = threading.Lock()

    def log(self, points: Iterable[Point]) -> None:
        lines = [json.dumps(point_to_json(p), allow_nan=False) for p in points]
        with self._lock:
            self._buffer.extend(lines)

    def flush(self) -> None:
        with self._lock:
            if self._file is None:
                return
            if self._buffer:
                self._file.write("\n".join(self._buffer) + "\n")
                self._buffer.clear()
            self._file.flush()

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class MemorySink:
    """Keeps points in a list: for tests and for users who want the numbers in-process."""

    def __init__(self) -> None:
        self.points: list[Point] = []

    def log(self, points: Iterable[Point]) -> None:
        self.points.extend(points)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(p.step, p.value) for p in self.points if p.key == key]


class MultiSink:
    def __init__(self, *sinks: Sink) -> None:
        self.sinks = list(sinks)

    def log(self, points: Iterable[Point]) -> None:
        pts = list(points)
        for s in self.sinks:
            s.log(pts)

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def read_jsonl(path: str | Path) -> list[Point]:
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                out.append(Point(d["key"], int(d["step"]), decode_value(d["value"]), float(d["time"])))
    return out
