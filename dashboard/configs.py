"""Run configs side by side: the settings that differ, and how a setting's value is written."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def differing_settings(configs: Mapping[Any, Mapping[str, Any]]) -> list[str]:
    """Setting names whose value is not the same in every config (a missing setting counts as differing)."""
    if len(configs) < 2:
        return []
    names: set[str] = set()
    for c in configs.values():
        names.update(c)
    missing = object()
    out = []
    for name in names:
        values = [c.get(name, missing) for c in configs.values()]
        first = values[0]
        if any(v is missing for v in values) or any(v != first for v in values[1:]):
            out.append(name)
    # dataset and method first, then alphabetical: the usual reading order of a comparison.
    return sorted(out, key=lambda n: (n not in ("dataset", "method"), n != "dataset", n))


def differing_rows(configs: Mapping[Any, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per differing setting: {"setting": name, <run id>: value, ...} (missing → '—')."""
    rows = []
    for name in differing_settings(configs):
        row: dict[str, Any] = {"setting": name}
        for run_id, c in configs.items():
            row[str(run_id)] = format_setting(c.get(name, "—"))
        rows.append(row)
    return rows


def format_setting(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(format_setting(x) for x in v)
    return str(v)
