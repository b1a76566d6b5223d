"""Pure table rows for the Runs and Compare pages, from runs as the backend returns them."""

from __future__ import annotations

import math
import time
from typing import Any

from .configs import format_setting
from .forms import visible

# Trainer settings worth a column in every row; method settings are added per method from the catalog.
KEY_TRAINER_SETTINGS = ("epochs", "seed", "lr", "batch_size")


def _num(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _final_metrics(run: dict[str, Any]) -> dict[str, Any]:
    """Final, best and test value of the run's metric (numbers, for numeric columns) and the
    dominant modality by Shapley contribution, from the summary."""
    summary = run.get("summary") or {}
    metric = summary.get("metric", "acc")
    final = summary.get("final") or {}
    contrib = {k.rsplit("/", 1)[1]: _num(v) for k, v in final.items() if k.startswith("val/contrib/")}
    finite = {m: v for m, v in contrib.items() if v is not None}
    return {
        "metric": metric if summary else "",
        "final": _num(final.get(f"val/{metric}")),
        "best": _num((summary.get("best") or {}).get(f"val/{metric}")),
        "test": _num((summary.get("test") or {}).get(f"test/{metric}")),
        "dominant": max(finite, key=lambda m: finite[m]) if finite else "",
    }


def _key_settings(run: dict[str, Any], method_settings: dict[str, list[dict[str, Any]]]) -> str:
    """The method's settings (those its chosen variant uses) and a few trainer settings, as k=v."""
    config = run.get("config") or {}
    own = method_settings.get(str(run.get("method") or config.get("method")), [])
    names = [s["name"] for s in own if visible(s, config)] + list(KEY_TRAINER_SETTINGS)
    return " ".join(f"{n}={format_setting(config[n])}" for n in names if n in config)


def _duration(run: dict[str, Any]) -> str:
    """Run time; a lost run's ends at its last heartbeat (it does not keep growing)."""
    start = run.get("started_at")
    if not start:
        return ""
    lost = run.get("status") == "lost"
    end = run.get("ended_at") or (run.get("heartbeat_at") if lost else None) or time.time()
    s = int(max(end - start, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_rows(runs: list[dict[str, Any]], catalog: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows for runs (pure; `id` is a markdown link built from the integer id only)."""
    method_settings = {m["name"]: list(m["settings"]) for m in catalog.get("methods", [])}
    rows = []
    for r in runs:
        rows.append(
            {
                "id": f"[{int(r['id'])}](/runs/{int(r['id'])})",
                "run_id": int(r["id"]),
                "name": r.get("name", ""),
                "status": r.get("status", ""),
                "waiting": r.get("waiting_reason") or "",  # a queued run no connected worker can run
                "dataset": r.get("dataset") or (r.get("config") or {}).get("dataset", ""),
                "method": r.get("method") or (r.get("config") or {}).get("method", ""),
                "settings": _key_settings(r, method_settings),
                **_final_metrics(r),
                "tags": ", ".join(r.get("tags") or []),
                "notes": r.get("notes", ""),
                "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("created_at") or 0)),
                "duration": _duration(r),
            }
        )
    return rows


def run_label(run: dict[str, Any]) -> str:
    return f"{run['id']}: {run.get('name', '')}"


def final_metrics(run: dict[str, Any]) -> dict[str, float]:
    """Final validation, test and probe numbers of a run from its summary."""
    summary = run.get("summary") or {}
    out: dict[str, float] = {}
    for section in ("final", "test", "probe"):
        for k, v in (summary.get(section) or {}).items():
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = float(v)
    return out


def final_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    per_run = {str(r["id"]): final_metrics(r) for r in runs}
    names = sorted({k for m in per_run.values() for k in m})
    rows = []
    for name in names:
        row: dict[str, Any] = {"metric": name}
        for rid, m in per_run.items():
            v = m.get(name)
            row[rid] = "" if v is None else (f"{v:.4f}" if math.isfinite(v) else str(v))
        rows.append(row)
    return rows
