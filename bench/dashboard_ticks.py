"""Bytes on the wire per live tick of a run page with 20 keys, while points keep arriving.

Real stack (backend + dashboard subprocesses, SQLite in a temp folder, dashboard polling every
1 s), an external run with 20 keys (acc, grad_norm, coef, cos × m0..m4) pre-filled with
`--history` steps each, then a feeder thread posting one new step of all 20 keys every second.
Headless Chromium (Playwright) on `/runs/<id>`; every `_dash-update-component` request is recorded
with `request.sizes()` (body and header bytes as sent / received, i.e. after any compression).
The run page's tick (the callback whose output is `run-delta.data`) is one per tick; the page's
health poll (GET /healthz, not a Dash callback) is counted separately. The full render on page
load (`run-data.data`) is what re-sending whole figures on every tick would cost.

The browser talks only to the dashboard; the dashboard's own reads from the backend (server to
server) are counted from the backend's access log (requests per tick, not bytes).

    python bench/dashboard_ticks.py [--ticks 15] [--history 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard_common import browser, load_average, quantiles, stack

from tests.dashboard.pagekit import trace_lengths, wait_for

KEYS = [f"{metric}/m{m}" for metric in ("acc", "grad_norm", "coef", "cos") for m in range(5)]


def value(key: str, step: int) -> float:
    return round(0.5 + 0.4 * math.sin(step / 50.0 + sum(map(ord, key)) % 7), 6)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ticks", type=int, default=15, help="seconds of measurement (one tick a second)")
    ap.add_argument("--history", type=int, default=2000, help="steps per key stored before the page opens")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    reqs: list[dict[str, Any]] = []
    stop = threading.Event()
    with stack(poll_ms=1000, backend_log_level="info") as st, browser() as ctx:
        run_id = st.create_external_run("ticks")
        st.post_points(run_id, [{"key": k, "step": s, "value": value(k, s)} for s in range(args.history) for k in KEYS])
        next_step = [args.history]

        def feeder() -> None:
            with httpx.Client(base_url=st.api, timeout=10.0) as http:
                while not stop.is_set() and next_step[0] < args.history + 10 * args.ticks + 100:
                    s = next_step[0]
                    pts = [{"key": k, "step": s, "value": value(k, s)} for k in KEYS]
                    http.post(f"/api/runs/{run_id}/metrics", json={"points": pts}).raise_for_status()
                    next_step[0] += 1
                    stop.wait(1.0)

        page = ctx.new_page()
        page.set_default_timeout(30_000)

        def on_finished(req: Any) -> None:
            if req.url.endswith("/healthz"):
                sizes = req.sizes()
                reqs.append(
                    {
                        "t": time.monotonic(),
                        "kind": "health",
                        "up": sizes["requestBodySize"],
                        "up_headers": sizes["requestHeadersSize"],
                        "down": sizes["responseBodySize"],
                        "down_headers": sizes["responseHeadersSize"],
                        "has_points": False,
                    }
                )
                return
            if "_dash-update-component" not in req.url:
                return
            sizes = req.sizes()
            body = req.post_data or ""
            try:
                output = json.loads(body).get("output", "")
            except ValueError:
                output = ""
            reqs.append(
                {
                    "t": time.monotonic(),
                    "kind": "run" if "run-delta.data" in output else ("full" if "run-data.data" in output else "other"),
                    "up": sizes["requestBodySize"],
                    "up_headers": sizes["requestHeadersSize"],
                    "down": sizes["responseBodySize"],
                    "down_headers": sizes["responseHeadersSize"],
                    "has_points": '"groups":[{' in (req.response().text() if req.response() else ""),
                }
            )

        page.on("requestfinished", on_finished)
        page.goto(f"{st.ui}/runs/{run_id}")
        wait_for(
            # The first render is downsampled (at most 1,500 points a series): any count near it will do.
            lambda: (trace_lengths(page, "run-panel-acc") or [0])[0] >= min(args.history, 1000),
            30,
            "history drawn",
            interval_s=0.05,
        )
        feed = threading.Thread(target=feeder, daemon=True)
        feed.start()
        page.wait_for_timeout(3000)  # a few ticks to settle
        log = st.workdir / "backend.log"
        log_start = len(log.read_text().splitlines())
        t0 = time.monotonic()
        page.wait_for_timeout(args.ticks * 1000)
        t1 = time.monotonic()
        log_lines = log.read_text().splitlines()[log_start:]
        stop.set()
        feed.join(timeout=15)
        lengths = trace_lengths(page, "run-panel-acc")
        page.close()
    first_run = next(r for r in reqs if r["kind"] == "full")
    window = [r for r in reqs if t0 <= r["t"] < t1]
    run_ticks = [r for r in window if r["kind"] == "run"]
    backend_gets = [ln for ln in log_lines if f"/api/runs/{run_id}" in ln and '"GET ' in ln]
    per_path: dict[str, int] = {}
    for ln in backend_gets:
        m = re.search(r'"GET (/api/runs/\d+/?[a-z]*)', ln)
        if m:
            per_path[m.group(1)] = per_path.get(m.group(1), 0) + 1
    n = max(len(run_ticks), 1)
    out = {
        "keys": len(KEYS),
        "history_steps": args.history,
        "window_s": t1 - t0,
        "run_ticks": len(run_ticks),
        "run_ticks_with_points": sum(r["has_points"] for r in run_ticks),
        "tick_body_bytes_up": quantiles([r["up"] for r in run_ticks]),
        "tick_body_bytes_down": quantiles([r["down"] for r in run_ticks]),
        "tick_header_bytes_up_median": quantiles([r["up_headers"] for r in run_ticks])["median"],
        "tick_header_bytes_down_median": quantiles([r["down_headers"] for r in run_ticks])["median"],
        "all_dash_bytes_per_tick": sum(r["up"] + r["down"] + r["up_headers"] + r["down_headers"] for r in window) / n,
        "health_requests_in_window": sum(r["kind"] == "health" for r in window),
        "other_requests_in_window": sum(r["kind"] == "other" for r in window),
        "full_render_bytes": {"up": first_run["up"], "down": first_run["down"]},
        "backend_gets_per_tick": len(backend_gets) / n,
        "backend_gets_by_path": per_path,
        "acc_trace_points_at_end": lengths,
        "load_average_at_end": load_average(),
    }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps({**out, "requests": reqs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
