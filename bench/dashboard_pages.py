"""Page loads of every dashboard page, cold, and the time a toggle takes to redraw.

Real stack (backend + dashboard subprocesses, SQLite in a temp folder, dashboard polling every
1 s). Runs are external runs filled through the API with the keys a CGGM run logs (per step:
acc, grad_norm, grad_norm_mod, coef, cos, loss/aux × 2 modalities, train/loss, train/acc,
loss/total, loss/gm, imbalance/acc_gap, imbalance/grad_ratio = 18 keys; per epoch of 100 steps:
val/loss, val/acc, val/acc/<m>, val/contrib/<m>, epoch), then marked finished with a summary.

Scenarios (each loaded `--loads` times, every load in a browser of its own with a fresh profile,
so nothing is cached): the Runs list (with every run of this benchmark in it), New run, a
200-step and a 6,000-step run page, a running run (2,000 steps stored, a feeder posting a step of
every key each second), Compare of 3 and of 10 runs.

"Loaded" = the first `performance.now()` (ms since navigation start; a 4 ms timer installed
before any page script) at which the page shows what it is for and Dash has nothing loading:
  - Runs: the table has a row per run;  New run: the dataset is chosen and the form's fields are there;
  - run pages and Compare: every panel of the page exists (one per key family, the dominance
    strip) and every chart in the first screen holds its points, plotly finished with them.
    Charts far down the page are drawn as they come near (assets/cggm_dash.js), so "all panels"
    is also given: from navigation start until the last chart is drawn while the page is
    scrolled through, a chart at a time, as fast as they draw.

Toggles, on the 6,000-step page once loaded: the smoothing slider (every panel redraws with a
smoothed curve) and one panel's scale (lin → log); from the pointer's release to plotly holding
the new data (`gd._fullData` rebuilt), in the page's own clock.

Also the floor any page with charts pays here: plotly.js (4.8 MB, as the dashboard serves it)
loaded and compiled in a cold browser, then 14 charts of two 400-point lines drawn.

    python bench/dashboard_pages.py [--loads 3] [--only compare_3,compare_10,floor] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import TimeoutError as PlaywrightTimeout

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard_common import cold_page, load_average, stack

MODS = ("m0", "m1")
PER_STEP = [f"{f}/{m}" for f in ("acc", "grad_norm", "grad_norm_mod", "coef", "cos", "loss/aux") for m in MODS]
PER_STEP += ["train/loss", "train/acc", "loss/total", "loss/gm", "imbalance/acc_gap", "imbalance/grad_ratio"]
STEPS_PER_EPOCH = 100
# One panel per family: acc, grad_norm, grad_norm_mod, coef, cos, losses, loss_aux, train, acc_gap,
# grad_ratio, val_loss, contrib, val_aux, val — and the dominance strip.
RUN_GRAPHS = 15

READY_JS = """(spec) => {
  window.__loaded = null;
  // Charts on the page (a hidden one, e.g. Compare's plotly preloader, is not one).
  const plotted = () => Array.from(document.querySelectorAll('#_pages_content .js-plotly-plot')).filter(gd => gd.offsetParent !== null);
  const drawn = (gd) => gd.data && gd.data.length && gd._fullData && gd._fullData.length === gd.data.length
                        && gd.data.some(t => (t.x && t.x.length > 0) || t.dimensions);
  const ok = () => {
    if (document.querySelector('[data-dash-is-loading="true"]')) return false;
    if (spec.kind === 'runs') return document.querySelectorAll('#runs-table tbody tr td[data-dash-column="name"]').length >= spec.rows;
    if (spec.kind === 'new') return document.querySelectorAll('[id*=\\'"type":"setting"\\']').length >= 10
                                   && document.querySelector('#new-dataset').innerText.trim() !== '';
    // The first screen: every chart in view drawn (charts far down are drawn as they come near),
    // and every panel of the page created.
    const gds = plotted();
    const inView = gds.filter(gd => gd.getBoundingClientRect().top < window.innerHeight);
    return gds.length >= spec.graphs && inView.length > 0 && inView.every(drawn);
  };
  const check = () => {
    if (window.__loaded !== null) return;
    if (ok()) { window.__loaded = performance.now(); clearInterval(window.__timer); }
  };
  window.__timer = setInterval(check, 4);
}"""

ALL_PANELS_JS = """() => new Promise((resolve) => {
  const drawn = (gd) => gd.data && gd.data.length && gd._fullData && gd._fullData.length === gd.data.length
                        && gd.data.some(t => (t.x && t.x.length > 0) || t.dimensions);
  const gds = Array.from(document.querySelectorAll('#_pages_content .js-plotly-plot')).filter(gd => gd.offsetParent !== null);
  let i = 0;
  const timer = setInterval(() => {
    const next = gds.find(gd => !drawn(gd));
    if (!next) { clearInterval(timer); window.scrollTo(0, 0); resolve(performance.now()); return; }
    next.scrollIntoView({block: 'center'});
    if (++i > 10000) { clearInterval(timer); resolve(null); }
  }, 4);
})"""

TOGGLE_JS = """(what) => new Promise((resolve) => {
  const gds = Array.from(document.querySelectorAll('#_pages_content .js-plotly-plot'));
  const exact = (gd) => gd.closest('.panel').querySelector(`[id*='"name":"${what.panel}"']`);
  const inView = (gd) => { const r = gd.getBoundingClientRect(); return r.bottom > 0 && r.top < window.innerHeight; };
  const target = what.panel ? gds.filter(exact) : gds.filter(gd => inView(gd) && gd.data.some(t => t.meta && t.meta.kind));
  const before = target.map(gd => gd.data);  // plotly takes new arrays on every redraw
  const done = () => target.every((gd, i) => gd.data !== before[i] && gd._fullData && gd._fullData.length === gd.data.length
    && (what.panel ? gd._fullLayout.yaxis.type === what.type : gd.data.some(t => t.meta && t.meta.kind === 'smooth')));
  let t0 = null;
  document.addEventListener('pointerup', () => { t0 = performance.now(); }, {capture: true, once: true});
  const timer = setInterval(() => {
    if (t0 !== null && done()) { clearInterval(timer); resolve({ms: performance.now() - t0, panels: target.length}); }
  }, 2);
  setTimeout(() => { clearInterval(timer); resolve(null); }, 20000);
})"""


FLOOR_JS = """async () => {
  const t0 = performance.now();
  await new Promise((res, rej) => { const s = document.createElement('script');
    s.src = '/_dash-component-suites/plotly/package_data/plotly.min.js'; s.onload = res; s.onerror = rej;
    document.head.appendChild(s); });
  const loaded = performance.now() - t0;
  const t1 = performance.now();
  const x = Array.from({length: 400}, (_, j) => j);
  await Promise.all(Array.from({length: 14}, () => { const d = document.createElement('div'); document.body.appendChild(d);
    return Plotly.newPlot(d, [{x, y: x.map(Math.sin), type: 'scatter', mode: 'lines'},
                             {x, y: x.map(Math.cos), type: 'scatter', mode: 'lines'}], {height: 300}); }));
  return {plotly_load_and_compile_ms: loaded, fourteen_charts_ms: performance.now() - t1};
}"""


def plotly_floor(ui: str) -> dict[str, float]:
    """What any page with charts pays in this browser: plotly.js (as the dashboard serves it) loaded
    and compiled in a cold browser, then 14 charts of two 400-point lines drawn."""
    with cold_page() as page:
        page.goto(f"{ui}/healthz")
        return page.evaluate(FLOOR_JS)


def value(key: str, step: int) -> float:
    h = sum(map(ord, key)) % 7
    if key.startswith("coef/"):
        return (-1) ** (step % 3) * 10.0 ** (step % 5) * 0.3  # blow-ups and negative B, as CGGM's raw formula gives
    return round(0.5 + 0.4 * math.sin(step / 40.0 + h) + 0.05 * math.sin(step * 1.7), 6)


def step_points(step: int) -> list[dict[str, Any]]:
    pts = [{"key": k, "step": step, "value": value(k, step)} for k in PER_STEP]
    if step % STEPS_PER_EPOCH == 0:
        e = step // STEPS_PER_EPOCH
        pts += [{"key": k, "step": step, "value": value(k, step)} for k in ("val/loss", "val/acc")]
        pts += [{"key": f"val/acc/{m}", "step": step, "value": value(m, e)} for m in MODS]
        pts += [{"key": f"val/contrib/{m}", "step": step, "value": value(m + "c", e)} for m in MODS]
        pts.append({"key": "epoch", "step": step, "value": float(e)})
    return pts


def fill(st: Any, run_id: int, steps: int, start: int = 1) -> None:
    batch: list[dict[str, Any]] = []
    for s in range(start, start + steps):
        batch += step_points(s)
        if len(batch) >= st.max_batch - 40:
            st.post_points(run_id, batch)
            batch = []
    if batch:
        st.post_points(run_id, batch)


def make_run(st: Any, name: str, steps: int, method: str, seed: int) -> int:
    config = {"dataset": "synthetic", "method": method, "seed": seed, "epochs": max(steps // STEPS_PER_EPOCH, 1)}
    r = st.http.post("/api/runs", json={"config": config, "external": True, "name": name})
    r.raise_for_status()
    rid = int(r.json()["id"])
    fill(st, rid, steps)
    summary = {
        "metric": "acc",
        "modalities": list(MODS),
        "final": {"val/acc": 0.8 + seed / 100, "val/loss": 0.5},
        "test": {"test/acc": 0.79},
        "probe": {"probe/acc/m0": 0.9, "probe/acc/m1": 0.6 + seed / 50},
    }
    st.http.post(f"/api/runs/{rid}/finish", json={"status": "finished", "summary": summary}).raise_for_status()
    return rid


def load(url: str, spec: dict[str, Any], timeout_s: float, toggles: bool = False) -> dict[str, Any]:
    with cold_page() as page:
        page.add_init_script(f"({READY_JS})({json.dumps(spec)})")
        page.goto(url, wait_until="commit")
        try:
            page.wait_for_function("window.__loaded !== null", timeout=timeout_s * 1000, polling=50)
        except PlaywrightTimeout:  # a load that never finishes is a result, not a crash
            return {"loaded_ms": None}
        out: dict[str, Any] = {"loaded_ms": page.evaluate("window.__loaded")}
        # Then every panel, scrolled through as a reader would (from navigation start, scrolling included).
        out["all_panels_ms"] = page.evaluate(ALL_PANELS_JS)
        if toggles:
            page.wait_for_timeout(1500)
            smooth = [_toggle(page, {}, lambda v=v: _slider(page, "run-smoothing", v)) for v in (0.6, 0.3, 0.8)]
            out["smoothing_toggle_ms"] = [round(r["ms"]) if r else None for r in smooth]
            out["smoothing_panels"] = smooth[0]["panels"] if smooth[0] else None
            radio = page.locator("""[id*='"name":"run-panel-acc"'][id*='scale']""")
            scale = []
            for axis, label in (("log", "log"), ("linear", "lin"), ("log", "log")):
                what = {"panel": "run-panel-acc", "type": axis}
                scale.append(_toggle(page, what, lambda label=label: radio.get_by_text(label, exact=True).click()))
            out["scale_toggle_ms"] = [round(r["ms"]) if r else None for r in scale]
        return out


def _slider(page: Any, slider_id: str, v: float) -> None:
    track = page.locator(f"#{slider_id} .dash-slider-track")
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    page.mouse.click(box["x"] + 8 + (box["width"] - 16) * v / 0.99, box["y"] + box["height"] / 2)


def _toggle(page: Any, what: dict[str, Any], act: Any) -> dict[str, Any] | None:
    # Kept in the page: Playwright would wait for a returned promise before the click.
    page.evaluate(f"() => {{ window.__toggle = ({TOGGLE_JS})({json.dumps(what)}); }}")
    act()
    return page.evaluate("() => window.__toggle")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loads", type=int, default=3)
    ap.add_argument("--timeout-s", type=float, default=60.0)
    ap.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {}
    stop = threading.Event()
    with stack(poll_ms=1000) as st:
        t0 = time.perf_counter()
        short = [make_run(st, f"short-{i}", 200, ("cggm", "joint")[i % 2], i) for i in range(10)]
        long_run = make_run(st, "long", 6000, "cggm", 0)
        r = st.http.post(
            "/api/runs",
            json={
                "config": {"dataset": "synthetic", "method": "cggm", "epochs": 100},
                "external": True,
                "name": "live",
            },
        )
        live = int(r.json()["id"])
        fill(st, live, 2000)
        print(f"runs filled in {time.perf_counter() - t0:.1f} s", flush=True)

        def feeder() -> None:
            step = 2001
            with httpx.Client(base_url=st.api, timeout=10.0) as http:
                while not stop.is_set():
                    http.post(f"/api/runs/{live}/metrics", json={"points": step_points(step)}).raise_for_status()
                    http.post(f"/api/runs/{live}/heartbeat")
                    step += 1
                    stop.wait(1.0)

        feed = threading.Thread(target=feeder, daemon=True)
        feed.start()
        scenarios = [
            ("runs_list", "/", {"kind": "runs", "rows": 12}, False),
            ("new_run", "/new", {"kind": "new"}, False),
            ("run_200_steps", f"/runs/{short[0]}", {"kind": "graphs", "graphs": RUN_GRAPHS}, False),
            ("run_6000_steps", f"/runs/{long_run}", {"kind": "graphs", "graphs": RUN_GRAPHS}, True),
            ("running_run", f"/runs/{live}", {"kind": "graphs", "graphs": RUN_GRAPHS}, False),
            ("compare_3", f"/compare?runs={','.join(map(str, short[:3]))}", {"kind": "graphs", "graphs": 12}, False),
            ("compare_10", f"/compare?runs={','.join(map(str, short))}", {"kind": "graphs", "graphs": 12}, False),
        ]
        only = {n for n in args.only.split(",") if n}
        floors = [plotly_floor(st.ui) for _ in range(args.loads)] if not only or "floor" in only else []
        for f in floors:
            print(f"plotly floor: {json.dumps(f)}", flush=True)
        for name, path, spec, toggles in scenarios:
            if only and name not in only:
                continue
            results[name] = []
            for i in range(args.loads):
                res = load(f"{st.ui}{path}", spec, args.timeout_s, toggles=toggles)
                results[name].append(res)
                print(f"{name} load {i + 1}: {json.dumps(res)}", flush=True)
        stop.set()
        feed.join(timeout=15)
    summary: dict[str, Any] = {"load_average_at_end": load_average(), "loads_per_page": args.loads}
    if floors:
        summary["plotly_floor_median_ms"] = {
            k: round(statistics.median(f[k] for f in floors))
            for k in ("plotly_load_and_compile_ms", "fourteen_charts_ms")
        }
    spec_of = {name: spec for name, _, spec, _ in scenarios}
    for name, rows in results.items():
        ok = [r["loaded_ms"] for r in rows if r["loaded_ms"] is not None]
        every = [r["all_panels_ms"] for r in rows if r.get("all_panels_ms") is not None]
        summary[name] = {
            "loaded_ms": [round(r["loaded_ms"]) if r["loaded_ms"] is not None else None for r in rows],
            "median_ms": round(statistics.median(ok)) if ok else None,
        }
        if every and spec_of[name]["kind"] == "graphs":
            summary[name]["all_panels_median_ms"] = round(statistics.median(every))
        for k in ("smoothing_toggle_ms", "scale_toggle_ms"):
            vals = [v for r in rows for v in r.get(k, []) if v is not None]
            if vals:
                summary[name][k] = {"all": vals, "median": statistics.median(vals)}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "loads": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
