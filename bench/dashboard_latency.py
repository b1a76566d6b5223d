"""Latency from a point posted to the backend to that point drawn in the browser, on a live run page.

Real stack: backend (`python -m cggm_core serve`, SQLite in a temp folder) and the dashboard
(`python -m dashboard.cli --poll-ms P`) as subprocesses, headless Chromium (Playwright) on
`/runs/<id>` of an external run. Points of acc/m0 and acc/m1 at step n are posted one step at a
time, at random moments (uniform 1–2 s apart, so the post lands at every phase of the poll
interval). The post's wall-clock time is taken just before the request; inside the page a 4 ms
timer reads plotly's own data of the acc graph (`gd.data[0].x`) and records `Date.now()` when its
last x reaches n. Same machine, same clock: latency = seen − posted.

Each latency is also split from the Dash network events: wait (post → start of the next
`_dash-update-component` request), server (that request's response end) and draw (response
end → seen in plotly's data).

    python bench/dashboard_latency.py [--points 20] [--poll-ms 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard_common import browser, load_average, quantiles, stack

from tests.dashboard.pagekit import graph_selector, trace_lengths, wait_for

WATCH_JS = """(sel) => {
  window.__seen = [];
  let last = null;
  const tick = () => {
    const el = document.querySelector(sel);
    const gd = el && el.querySelector('.js-plotly-plot');
    const xs = gd && gd.data && gd.data[0] && gd.data[0].x;
    if (xs && xs.length) {
      const x = xs[xs.length - 1];
      if (x !== last) { last = x; window.__seen.push({step: x, wall: Date.now()}); }
    }
  };
  window.__watch = setInterval(tick, 4);
}"""


def value(step: int, m: int) -> float:
    """A recognisable pattern: a slow sine per modality."""
    return round(0.5 + 0.4 * math.sin(step / 7.0 + m), 6)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--poll-ms", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    ticks: list[dict[str, float]] = []
    with stack(poll_ms=args.poll_ms) as st, browser() as ctx:
        run_id = st.create_external_run("latency")
        first = 10
        st.post_points(
            run_id, [{"key": f"acc/m{m}", "step": s, "value": value(s, m)} for s in range(first) for m in (0, 1)]
        )
        page = ctx.new_page()
        page.set_default_timeout(30_000)

        def on_finished(req: Any) -> None:
            if "_dash-update-component" in req.url:
                t = req.timing
                ticks.append({"start": t["startTime"], "end": t["startTime"] + t["responseEnd"]})

        page.on("requestfinished", on_finished)
        page.goto(f"{st.ui}/runs/{run_id}")
        wait_for(
            lambda: trace_lengths(page, "run-panel-acc") == [first, first],
            30,
            "the first points drawn",
            interval_s=0.05,
        )
        page.evaluate(WATCH_JS, graph_selector("run-panel-acc"))
        for i in range(args.points):
            step = first + i
            time.sleep(rng.uniform(1.0, 2.0))
            posted = time.time() * 1000.0
            st.post_points(run_id, [{"key": f"acc/m{m}", "step": step, "value": value(step, m)} for m in (0, 1)])
            stored = time.time() * 1000.0

            def seen(step: int = step) -> float | None:
                for s in page.evaluate("window.__seen"):
                    if s["step"] >= step:
                        return float(s["wall"])
                return None

            shown = wait_for(seen, 15, f"step {step} drawn", interval_s=0.05)
            rows.append({"step": step, "posted": posted, "stored": stored, "seen": shown})
        page.evaluate("clearInterval(window.__watch)")
        # Let the last request events arrive before splitting the latencies.
        page.wait_for_timeout(200)
        page.close()
    for r in rows:
        # The tick that delivered the point: the last Dash response to end before it was seen.
        done = [t for t in ticks if t["end"] <= r["seen"] + 1]
        tick = max(done, key=lambda t: t["end"]) if done else None
        r["latency_ms"] = r["seen"] - r["posted"]
        if tick is not None:
            r["wait_ms"] = tick["start"] - r["posted"]
            r["server_ms"] = tick["end"] - tick["start"]
            r["draw_ms"] = r["seen"] - tick["end"]
    out = {
        "poll_ms": args.poll_ms,
        "load_average_at_end": load_average(),
        "latency_ms": quantiles([r["latency_ms"] for r in rows]),
        "post_ms": quantiles([r["stored"] - r["posted"] for r in rows]),
        "split": {
            k: quantiles([r[k] for r in rows if k in r])
            for k in ("wait_ms", "server_ms", "draw_ms")
            if any(k in r for r in rows)
        },
        "all_ticks_server_ms": quantiles([t["end"] - t["start"] for t in ticks]) if ticks else None,
        "points": rows,
    }
    summary = {k: v for k, v in out.items() if k != "points"}
    print(json.dumps(summary, indent=1))
    print("per point (step: latency ms):", " ".join(f"{r['step']}:{r['latency_ms']:.0f}" for r in rows))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
