"""Helpers shared by the generators."""

from __future__ import annotations

from pathlib import Path


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to `keep` of its bytes: what an interrupted copy leaves behind."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])


def check_fault(fault: str | None, allowed: tuple[str, ...]) -> None:
    if fault is not None and fault not in allowed:
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(allowed)}")
