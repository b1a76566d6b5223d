"""Load time of a run page holding 10 keys × 100,000 points (1M points), from navigation start to all
panels drawn.

Real stack (backend + dashboard subprocesses, SQLite in a temp folder), an external run filled
through POST /api/runs/<id>/metrics in batches of the backend's max batch (10,000 points), then
marked finished (so no live tick runs during the measurement). Keys: acc/m0, acc/m1,
grad_norm/m0, grad_norm/m1, coef/m0, coef/m1, cos/m0, cos/m1, train/loss, train/acc: six panels
with data, plus the dominance strip built from acc/* and grad_norm/*.

"Drawn", checked by a 4 ms timer installed before any page script runs (`add_init_script`), with
`performance.now()` (ms since navigation start) recorded the first time all of these hold:
  - each of the six panels' plotly div has the expected number of traces, each with > 0 points,
    and plotly has finished with them (`gd._fullData.length == gd.data.length`, a `.main-svg`);
  - the dominance strip has > 0 traces with points;
  - no element is marked loading by Dash (`[data-dash-is-loading="true"]`).
Each load is a cold browser of its own (a fresh profile: Dash's and plotly's bundles fetched anew).

    python bench/dashboard_load.py [--loads 3] [--points 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from playwright.sync_api import TimeoutError as PlaywrightTimeout

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard_common import browser, cold_page, load_average, stack

from tests.dashboard.pagekit import graph_selector, trace_lengths

KEYS = [
    "acc/m0",
    "acc/m1",
    "grad_norm/m0",
    "grad_norm/m1",
    "coef/m0",
    "coef/m1",
    "cos/m0",
    "cos/m1",
    "train/loss",
    "train/acc",
]
PANELS = {"acc": 2, "grad_norm": 2, "coef": 2, "cos": 2, "losses": 1, "train": 1}  # panel → traces

DRAWN_JS = """(panels) => {
  window.__drawn = null;
  const find = (name) => { for (const el of document.querySelectorAll(`[id*='"name":"${name}"']`)) {
      if (el.querySelector('.js-plotly-plot')) return el; } return null; };
  const ready = (name, want) => {
    const el = find(name);
    const gd = el && el.querySelector('.js-plotly-plot');
    if (!gd || !gd.data || !gd._fullData || !el.querySelector('.main-svg')) return false;
    if (want !== null && gd.data.length !== want) return false;
    if (want === null && gd.data.length === 0) return false;
    return gd._fullData.length === gd.data.length && gd.data.every(t => t.x && t.x.length > 0);
  };
  const check = () => {
    if (window.__drawn !== null) return;
    for (const [pid, n] of Object.entries(panels)) if (!ready('run-panel-' + pid, n)) return;
    if (!ready('run-dominance', null)) return;
    if (document.querySelector('[data-dash-is-loading="true"]')) return;
    window.__drawn = performance.now();
    clearInterval(window.__drawnTimer);
  };
  window.__drawnTimer = setInterval(check, 4);
}"""


def make_points(n: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A noisy random walk per key, so that min-max downsampling has real extremes to keep."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    out = {}
    for k in KEYS:
        walk = np.cumsum(rng.normal(0.0, 0.01, n)) + rng.normal(0.0, 0.05, n)
        out[k] = (steps, np.round(walk, 6))
    return out


def ingest(st: Any, run_id: int, n: int) -> float:
    data = make_points(n)
    t0 = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for key, (steps, values) in data.items():
        for s, v in zip(steps.tolist(), values.tolist(), strict=True):
            batch.append({"key": key, "step": s, "value": v})
            if len(batch) == st.max_batch:
                st.post_points(run_id, batch)
                batch = []
    if batch:
        st.post_points(run_id, batch)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loads", type=int, default=3)
    ap.add_argument("--points", type=int, default=100_000, help="points per key (10 keys)")
    ap.add_argument("--timeout-s", type=float, default=60.0, help="give up on a load after this long")
    ap.add_argument("--warm", action="store_true", help="new tabs of one browser (cache kept) instead of cold browsers")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    loads: list[dict[str, Any]] = []
    with stack(poll_ms=1000) as st, contextlib.ExitStack() as keep:
        warm = keep.enter_context(browser()) if args.warm else None
        run_id = st.create_external_run("load")
        ingest_s = ingest(st, run_id, args.points)
        st.finish(run_id)
        # The backend read the page's callback makes (max_points=1500 per key), timed on its own.
        api_reads = []
        for _ in range(3):
            t0 = time.perf_counter()
            r = httpx.get(
                f"{st.api}/api/runs/{run_id}/metrics",
                params={"keys": ",".join(KEYS), "max_points": 1500},
                timeout=120,
            )
            api_reads.append(time.perf_counter() - t0)
        api_bytes = len(r.content)
        print(f"ingest {ingest_s:.1f} s; backend read (max_points=1500) {api_reads} s, {api_bytes} bytes", flush=True)
        for i in range(args.loads):
            with cold_page(warm=warm) as page:
                page.add_init_script(f"({DRAWN_JS})({json.dumps(PANELS)})")
                dash_reqs: list[dict[str, Any]] = []

                def on_finished(req: Any, dash_reqs: list[dict[str, Any]] = dash_reqs) -> None:
                    if "_dash-update-component" in req.url:
                        sizes = req.sizes()
                        dash_reqs.append(
                            {
                                "start": req.timing["startTime"],
                                "ms": req.timing["responseEnd"],
                                "down": sizes["responseBodySize"],
                                "up": sizes["requestBodySize"],
                            }
                        )

                page.on("requestfinished", on_finished)
                page.goto(f"{st.ui}/runs/{run_id}", wait_until="commit")
                try:
                    page.wait_for_function("window.__drawn !== null", timeout=args.timeout_s * 1000, polling=50)
                except PlaywrightTimeout:
                    # Not drawn in time: say what the page shows instead of a number.
                    state = {
                        "error": page.locator("#run-error").inner_text(),
                        "status": page.locator("#run-status").inner_text(),
                        "trace_points": {pid: trace_lengths(page, f"run-panel-{pid}") for pid in PANELS},
                        "dash_requests": [{k: d[k] for k in ("ms", "down")} for d in dash_reqs],
                    }
                    print(f"load {i + 1}: NOT drawn within {args.timeout_s} s: {json.dumps(state)}", flush=True)
                    loads.append({"drawn_ms": None, "not_drawn": state})
                    continue
                drawn = page.evaluate("window.__drawn")
                nav = page.evaluate(
                    """() => { const n = performance.getEntriesByType('navigation')[0];
                               return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd}; }"""
                )
                lengths = {pid: trace_lengths(page, f"run-panel-{pid}") for pid in PANELS}
                lengths["dominance"] = trace_lengths(page, "run-dominance")
                webgl = page.evaluate("() => !!document.createElement('canvas').getContext('webgl')")
                gl_traces = page.evaluate(
                    """(sel) => { const gd = document.querySelector(sel).querySelector('.js-plotly-plot');
                                  return gd.data.map(t => t.type); }""",
                    graph_selector("run-panel-acc"),
                )
                page.wait_for_timeout(300)
                run_cb = max(dash_reqs, key=lambda d: d["down"]) if dash_reqs else None
                loads.append(
                    {
                        "drawn_ms": drawn,
                        "dom_content_loaded_ms": nav["dcl"],
                        "load_event_ms": nav["load"],
                        "run_callback_ms": run_cb["ms"] if run_cb else None,
                        "run_callback_bytes_down": run_cb["down"] if run_cb else None,
                        "dash_requests": len(dash_reqs),
                        "trace_points": lengths,
                        "webgl": webgl,
                        "acc_trace_types": gl_traces,
                    }
                )
                print(f"load {i + 1}: drawn at {drawn:.0f} ms", flush=True)
    out = {
        "points_per_key": args.points,
        "keys": len(KEYS),
        "ingest_s": ingest_s,
        "ingest_points_per_s": args.points * len(KEYS) / ingest_s,
        "api_read_s": api_reads,
        "api_read_bytes": api_bytes,
        "load_average_at_end": load_average(),
        "drawn_ms_median": statistics.median(ok) if (ok := [d["drawn_ms"] for d in loads if d["drawn_ms"]]) else None,
        "loads": loads,
    }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
