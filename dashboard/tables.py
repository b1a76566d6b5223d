"""Pure table rows for the Runs and Compare pages, from runs as the backend returns them."""

from __future__ import annotations

import math
import time
from typing import Any

from .series import format_setting

# Trainer settings worth a column in every row; method settings are added per method from the catalog.
KEY_TRAINER_SETTINGS = ("epochs", "seed", "lr", "batch_size")


def _final_metrics(run: dict[str, Any]) -> tuple[str, str, str]:
    """(final val metric, test metric, dominant modality by Shapley contribution) from the summary."""
    summary = run.get("summary") or {}
    metric = summary.get("metric", "acc")
    final = summary.get("final") or {}
    test = summary.get("test") or {}
    val = final.get(f"val/{metric}")
    tst = test.get(f"test/{metric}")
    contrib = {k.rsplit("/", 1)[1]: v for k, v in final.items() if k.startswith("val/contrib/")}
    contrib = {m: v for m, v in contrib.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    dominant = max(contrib, key=lambda m: contrib[m]) if contrib else ""
    fmt = lambda v: f"{metric} {v:.4f}" if isinstance(v, (int, float)) else ""  # noqa: E731
    return fmt(val), fmt(tst), dominant


def _key_settings(run: dict[str, Any], method_settings: dict[str, list[str]]) -> str:
    config = run.get("config") or {}
    names = [*method_settings.get(str(run.get("method") or config.get("method")), []), *KEY_TRAINER_SETTINGS]
    return " ".join(f"{n}={format_setting(config[n])}" for n in names if n in config)


def _duration(run: dict[str, Any]) -> str:
    start = run.get("started_at")
    if not start:
        return ""
    end = run.get("ended_at") or time.time()
    s = int(end - start)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_rows(runs: list[dict[str, Any]], catalog: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows for runs (pure; `id` is a markdown link built from the integer id only)."""
    method_settings = {m["name"]: [s["name"] for s in m["settings"]] for m in catalog.get("methods", [])}
    rows = []
    for r in runs:
        final, test, dominant = _final_metrics(r)
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
                "final": final,
                "test": test,
                "dominant": dominant,
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
