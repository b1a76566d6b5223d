"""Issue 9's defects and depth items (and issue 8's items 8 and 9), each in real headless Chromium
against a real backend and dashboard (`bare_stack`: no worker; runs are external, their points
posted by the test, so every number on the page is known).

The first test needs the backend empty: keep it first.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from .conftest import Stack
from .pagekit import dom_id, plotly_data, trace_lengths, wait_for

pytestmark = pytest.mark.browser

PALETTE_FIRST_THREE = ["#636EFA", "#EF553B", "#00CC96"]


def points(step: int, mods: tuple[str, ...] = ("m0", "m1", "m2"), **extra: float) -> list[dict[str, Any]]:
    out = []
    for i, m in enumerate(mods):
        out += [
            {"key": f"acc/{m}", "step": step, "value": 0.2 + 0.1 * i + step / 1000},
            {"key": f"grad_norm/{m}", "step": step, "value": 1.0 + i},
            {"key": f"cos/{m}", "step": step, "value": -0.4 + 0.01 * step},
            {"key": f"coef/{m}", "step": step, "value": (-1) ** step * 10.0 ** (step % 6)},
        ]
    out += [{"key": k, "step": step, "value": v} for k, v in extra.items()]
    return out


def finished_run(stack: Stack, name: str, config: dict[str, Any], summary: dict[str, Any], steps: int = 5) -> int:
    rid = stack.external_run(name, config)
    for step in range(1, steps + 1):
        stack.post(rid, points(step, ("kar", "mor"), **{"imbalance/acc_gap": 0.1 + step / 100}))
    stack.post(rid, [{"key": "val/acc", "step": steps, "value": summary["final"]["val/acc"]}])
    stack.finish(rid, summary)
    return rid


def summary(val: float, probe: dict[str, float]) -> dict[str, Any]:
    return {
        "metric": "acc",
        "modalities": sorted(probe),
        "final": {"val/acc": val, "val/loss": 1 - val},
        "test": {"test/acc": val - 0.01},
        "probe": {f"probe/acc/{m}": v for m, v in probe.items()},
    }


def set_slider(page: Any, slider_id: str, value: float, top: float = 0.99) -> None:
    """Click the slider's track where `value` is (Dash 4's marks do not take clicks themselves)."""
    track = page.locator(f"#{slider_id} .dash-slider-track")
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    inset = 8  # the thumb's radius: the track's ends are the thumb's centre at min and max
    page.mouse.click(box["x"] + inset + (box["width"] - 2 * inset) * value / top, box["y"] + box["height"] / 2)


def colours(page: Any, graph: str) -> dict[str, str]:
    return plotly_data(page, graph, "Object.fromEntries(gd.data.map(t => [t.name, t.line.color]))") or {}


# ---- 9.9 (empty state) — first: the backend has no run yet --------------------------------------------


def test_an_empty_first_page_says_how_to_start(bare_stack: Stack, page: Any) -> None:
    page.goto(f"{bare_stack.ui}/")
    empty = page.locator("#runs-empty")
    empty.wait_for(state="visible")
    assert "No runs yet" in empty.inner_text()
    page.get_by_role("link", name="Start your first run").click()
    page.wait_for_url("**/new")


# ---- 9.1 colours ---------------------------------------------------------------------------------------


def test_live_panels_keep_one_colour_per_modality_when_opened_before_the_first_point(
    bare_stack: Stack, page: Any
) -> None:
    rid = bare_stack.external_run("colours")
    page.goto(f"{bare_stack.ui}/runs/{rid}")
    page.locator("#run-status").wait_for()
    wait_for(lambda: page.locator("#run-status").inner_text() == "running", 15, "running")
    for step in range(1, 6):
        bare_stack.post(rid, points(step))
        time.sleep(0.3)
    wait_for(lambda: trace_lengths(page, "run-panel-acc") == [5, 5, 5], 20, "5 points per acc curve")
    wait_for(lambda: len(colours(page, "run-panel-grad_norm")) == 3, 20, "grad_norm curves")
    acc, grad = colours(page, "run-panel-acc"), colours(page, "run-panel-grad_norm")
    assert [acc[m] for m in ("m0", "m1", "m2")] == PALETTE_FIRST_THREE
    assert grad == acc  # the same modality, the same colour, in every panel
    bare_stack.finish(rid)


# ---- 9.2 errors shown ---------------------------------------------------------------------------------


def test_an_unknown_run_says_not_found(bare_stack: Stack, page: Any) -> None:
    page.goto(f"{bare_stack.ui}/runs/999999")
    wait_for(lambda: "not found" in page.locator("body").inner_text(), 15, "'not found' on the page")
    assert "Traceback" not in page.content()


def test_nan_in_a_setting_is_refused_beside_the_field(bare_stack: Stack, page: Any) -> None:
    page.goto(f"{bare_stack.ui}/new")
    page.locator("#new-method").click()
    page.get_by_text("cggm", exact=True).last.click()
    rho = page.locator(dom_id(name="rho", type="setting"))
    rho.wait_for()
    rho.fill("nan")
    before = len(bare_stack.http.get("/api/runs").json()["data"])
    page.click("#new-submit")
    wait_for(lambda: "rho" in page.locator("#new-error").inner_text(), 20, "the message")
    assert "not a finite number" in page.locator(dom_id(name="rho", type="setting-error")).inner_text()
    assert len(bare_stack.http.get("/api/runs").json()["data"]) == before  # nothing was started


# ---- 9.3 recovery -------------------------------------------------------------------------------------


def test_pages_opened_while_the_backend_is_down_load_when_it_is_back(bare_stack: Stack, page: Any) -> None:
    rid = bare_stack.external_run("outage")
    bare_stack.post(rid, points(1) + points(2))
    bare_stack.stop("backend")
    try:
        page.goto(f"{bare_stack.ui}/new")
        page.locator("#backend-banner").wait_for(state="visible")
        other = page.context.new_page()
        other.goto(f"{bare_stack.ui}/runs/{rid}")
        time.sleep(1.0)
    finally:
        bare_stack.start("backend")
    # No reload: the form's dropdowns fill, the run page draws, the banner goes.
    wait_for(lambda: page.locator("#new-dataset").inner_text().strip() != "", 20, "the dataset dropdown")
    page.locator("#backend-banner").wait_for(state="hidden", timeout=10_000)
    wait_for(lambda: trace_lengths(other, "run-panel-acc") == [2, 2, 2], 20, "the run page's panels")
    other.close()


def test_the_page_says_when_the_dashboard_itself_is_gone_and_recovers(bare_stack: Stack, page: Any) -> None:
    rid = bare_stack.external_run("dashboard-restart")
    bare_stack.post(rid, points(1))
    page.goto(f"{bare_stack.ui}/runs/{rid}")
    wait_for(lambda: trace_lengths(page, "run-panel-acc") == [1, 1, 1], 20, "first points")
    bare_stack.stop("dashboard")
    try:
        banner = page.locator("#dashboard-banner")
        banner.wait_for(state="visible", timeout=10_000)
        assert "dashboard server is not answering" in banner.inner_text()
        bare_stack.post(rid, points(2) + points(3))
    finally:
        bare_stack.start("dashboard")
    page.locator("#dashboard-banner").wait_for(state="hidden", timeout=10_000)
    # The new server does not know the page's live session: the page renders again and goes on.
    wait_for(lambda: trace_lengths(page, "run-panel-acc") == [3, 3, 3], 20, "the points posted meanwhile")
    bare_stack.post(rid, points(4))
    wait_for(lambda: trace_lengths(page, "run-panel-acc") == [4, 4, 4], 20, "live again")
    bare_stack.finish(rid)


# ---- 9.4 lost runs ------------------------------------------------------------------------------------


def test_a_lost_run_stops_its_clock_and_says_why(bare_stack: Stack, page: Any) -> None:
    # A worker (this test) claims a job, heartbeats once and goes silent: 3 s later it is lost.
    rid = bare_stack.create_run({"dataset": "synthetic", "method": "joint"}, name="goes-silent")["id"]
    claimed = bare_stack.http.post("/api/workers/claim", json={"worker": "gpu-7"}).json()
    assert claimed["id"] == rid
    bare_stack.http.post(f"/api/runs/{rid}/heartbeat")
    bare_stack.wait_status(rid, {"lost"}, 30)
    page.goto(f"{bare_stack.ui}/runs/{rid}")
    timing = page.locator("#run-timing")
    wait_for(lambda: "lost" in timing.inner_text(), 15, "the reason")
    first = timing.inner_text()
    assert "no heartbeat" in first
    time.sleep(2.5)
    page.reload()
    wait_for(lambda: "lost" in page.locator("#run-timing").inner_text(), 15, "the reason again")
    assert page.locator("#run-timing").inner_text().split(" · ")[0] == first.split(" · ")[0]  # elapsed unchanged


# ---- 9.5 delete: confirmed, undoable ----------------------------------------------------------------------


def select_row(page: Any, run_id: int) -> None:
    row = page.locator("#runs-table tr", has=page.locator(f"a[href='/runs/{run_id}']"))
    row.locator("input[type='checkbox']").check()


def test_delete_asks_first_and_can_be_undone(bare_stack: Stack, page: Any) -> None:
    keep, gone = bare_stack.external_run("undo-me"), bare_stack.external_run("delete-me")
    for rid in (keep, gone):
        bare_stack.finish(rid)
    dialogs: list[str] = []

    def on_dialog(d: Any) -> None:
        dialogs.append(d.message)
        d.accept()

    page.on("dialog", on_dialog)
    page.goto(f"{bare_stack.ui}/")
    page.locator(f"#runs-table a[href='/runs/{keep}']").wait_for()
    select_row(page, keep)
    page.click("#runs-delete")
    # page.wait_for_timeout lets Playwright deliver the dialog event (a plain sleep would not).
    wait_for(lambda: page.wait_for_timeout(100) or dialogs, 20, "a confirmation")
    assert "undo-me" in dialogs[0] and "undo" in dialogs[0].lower()
    page.locator(f"#runs-table a[href='/runs/{keep}']").wait_for(state="detached")
    page.click("#runs-undo")
    page.locator(f"#runs-table a[href='/runs/{keep}']").wait_for()
    time.sleep(3.0)  # past the 2 s undo window of this stack
    assert bare_stack.http.get(f"/api/runs/{keep}").status_code == 200
    select_row(page, gone)
    page.click("#runs-delete")
    wait_for(lambda: page.wait_for_timeout(100) or len(dialogs) == 2, 20, "a second confirmation")
    wait_for(lambda: bare_stack.http.get(f"/api/runs/{gone}").status_code == 404, 15, "the delete after the window")


# ---- 9.6 scale per panel ------------------------------------------------------------------------------------


def test_each_panel_has_its_own_scale_with_a_default_per_family(bare_stack: Stack, page: Any) -> None:
    rid = bare_stack.external_run("scales")
    for step in range(1, 6):
        bare_stack.post(rid, points(step))
    bare_stack.finish(rid)
    page.goto(f"{bare_stack.ui}/runs/{rid}")
    wait_for(lambda: trace_lengths(page, "run-panel-cos"), 20, "the cos panel")
    axis = "gd._fullLayout.yaxis.type"
    assert plotly_data(page, "run-panel-cos", axis) == "linear"
    assert plotly_data(page, "run-panel-grad_norm", axis) == "log"
    assert plotly_data(page, "run-panel-coef", "gd.layout.yaxis.ticktext.includes('1e5')") is True  # symlog
    # cos/* keeps its negative values (log y used to drop them silently).
    assert min(plotly_data(page, "run-panel-cos", "gd.data[0].y")) < 0
    page.locator(dom_id(name="run-panel-grad_norm", type="run-scale")).get_by_text("lin", exact=True).click()
    wait_for(lambda: plotly_data(page, "run-panel-grad_norm", axis) == "linear", 15, "grad_norm on a linear axis")
    assert plotly_data(page, "run-panel-coef", "gd.layout.yaxis.ticktext.includes('1e5')") is True  # untouched
    page.locator(dom_id(name="run-panel-cos", type="run-scale")).get_by_text("log", exact=True).click()
    wait_for(
        lambda: "not shown (log scale)" in plotly_data(page, "run-panel-cos", "gd.layout.title.text"), 15, "a note"
    )


# ---- 9.7 compare ---------------------------------------------------------------------------------------------


def test_compare_axes_categorical_sweep_axes_and_the_best_value(bare_stack: Stack, page: Any) -> None:
    base = {"dataset": "mfeat", "views": "kar,mor", "data_seed": 0}
    a = finished_run(
        bare_stack, "cggm-a", {**base, "method": "cggm", "rho": 1.3}, summary(0.81, {"kar": 0.9, "mor": 0.70})
    )
    b = finished_run(bare_stack, "ogm", {**base, "method": "ogm_ge"}, summary(0.86, {"kar": 0.92, "mor": 0.74}))
    c = finished_run(bare_stack, "joint", {**base, "method": "joint"}, summary(0.79, {"kar": 0.95, "mor": 0.60}))
    page.goto(f"{bare_stack.ui}/compare?runs={a},{b},{c}")
    wait_for(lambda: trace_lengths(page, "cmp-sm-coef"), 20, "small multiples")
    # Independent y axes by default (joint's 1.0 no longer lies flat under CGGM's spikes), shared on request.
    assert plotly_data(page, "cmp-sm-coef", "gd.layout.yaxis2.matches || null") is None
    page.locator("#cmp-shared input").check()
    wait_for(lambda: plotly_data(page, "cmp-sm-coef", "gd.layout.yaxis2.matches || null") == "y", 15, "shared axes")
    # Parallel coordinates of a method sweep (on request: these runs are not one sweep): category axes, no "None".
    page.click("#cmp-parallel-show")
    page.locator("#cmp-parallel-fig .js-plotly-plot").wait_for()
    page.wait_for_timeout(500)
    ticks = page.evaluate(
        "() => Array.from(document.querySelectorAll('#cmp-parallel .tick text, #cmp-parallel text')).map(t => t.textContent)"
    )
    assert "ogm_ge" in ticks and "None" not in ticks
    # The best val/acc (run b) is marked.
    cell = page.locator(f"#cmp-final td[data-dash-column='{b}']", has_text="0.8600")
    assert cell.evaluate("e => getComputedStyle(e).fontWeight") in ("700", "bold")


# ---- 9.9 slider, numeric columns, key settings ----------------------------------------------------------------


def test_slider_marks_do_not_overlap(bare_stack: Stack, page: Any) -> None:
    rid = bare_stack.external_run("slider")
    page.goto(f"{bare_stack.ui}/runs/{rid}")
    page.locator("#run-smoothing").wait_for()
    boxes = page.evaluate(
        """() => Array.from(document.querySelectorAll('#run-smoothing *'))
                 .filter(e => e.children.length === 0 && e.textContent.trim() && e.getBoundingClientRect().width > 0)
                 .map(e => { const r = e.getBoundingClientRect(); return [r.left, r.right, e.textContent]; })
                 .sort((a, b) => a[0] - b[0])"""
    )
    assert len(boxes) >= 3
    for (_, right, a), (left, _, b) in itertools.pairwise(boxes):
        assert right <= left, f"marks {a!r} and {b!r} overlap"
    bare_stack.finish(rid)


def test_runs_table_filters_metrics_as_numbers_and_shows_all_key_settings(bare_stack: Stack, page: Any) -> None:
    cfg = {"dataset": "synthetic", "method": "cggm", "variant": "stable", "rho": 1.3, "lam": 0.2, "eps_ema": 0.9}
    hi = finished_run(
        bare_stack,
        "high",
        {**cfg, "epochs": 3, "seed": 0, "lr": 0.001, "batch_size": 64},
        summary(0.97, {"kar": 0.9, "mor": 0.8}),
    )
    lo = finished_run(bare_stack, "low", cfg, summary(0.5, {"kar": 0.9, "mor": 0.8}))
    page.goto(f"{bare_stack.ui}/")
    page.locator(f"#runs-table a[href='/runs/{hi}']").wait_for()
    cell = page.locator("#runs-table td[data-dash-column='settings']").first
    assert cell.evaluate("e => e.scrollWidth <= e.clientWidth + 1 && e.scrollHeight <= e.clientHeight + 1")
    page.locator("#runs-table .dash-filter[data-dash-column='final'] input[type='text']").fill(">0.96")
    page.keyboard.press("Enter")
    wait_for(lambda: page.locator(f"#runs-table a[href='/runs/{lo}']").count() == 0, 20, "the filter")
    assert page.locator(f"#runs-table a[href='/runs/{hi}']").count() == 1


# ---- 9.10 no cloud upload --------------------------------------------------------------------------------------


def test_no_chart_offers_to_upload_to_plotly_cloud(bare_stack: Stack, page: Any) -> None:
    rid = bare_stack.external_run("toolbar")
    bare_stack.post(rid, points(1) + points(2))
    page.goto(f"{bare_stack.ui}/runs/{rid}")
    wait_for(lambda: trace_lengths(page, "run-panel-acc"), 20, "panels")
    titles = page.evaluate(
        "() => Array.from(document.querySelectorAll('.modebar-btn')).map(b => b.getAttribute('data-title'))"
    )
    assert "Download plot as a PNG" in titles
    assert not [t for t in titles if "Share" in t or "Cloud" in t or "Chart Studio" in t], titles
    bare_stack.finish(rid)


# ---- 9.11 view settings in the URL -------------------------------------------------------------------------------


def test_view_settings_live_in_the_url(bare_stack: Stack, page: Any) -> None:
    rid = bare_stack.external_run("bookmark")
    for step in range(1, 4):
        bare_stack.post(rid, points(step))
    bare_stack.finish(rid)
    page.goto(f"{bare_stack.ui}/runs/{rid}")
    wait_for(lambda: trace_lengths(page, "run-panel-acc"), 20, "panels")
    page.locator("#run-xmode").get_by_text("epoch").click()
    page.locator(dom_id(name="run-panel-grad_norm", type="run-scale")).get_by_text("lin", exact=True).click()
    set_slider(page, "run-smoothing", 0.5)
    href = lambda: page.evaluate("location.href")  # noqa: E731 - page.url is only refreshed by Playwright's events
    wait_for(lambda: "scale.grad_norm" in href() and "smoothing" in href(), 15, "the URL")
    query = parse_qs(urlparse(href()).query)
    assert query["x"] == ["epoch"] and query["scale.grad_norm"] == ["linear"]
    assert abs(float(query["smoothing"][0]) - 0.5) <= 0.02
    page.reload()  # a bookmark opens the same view
    wait_for(lambda: trace_lengths(page, "run-panel-acc"), 20, "panels again")
    assert page.locator("#run-xmode input[value='epoch']").is_checked()
    assert plotly_data(page, "run-panel-grad_norm", "gd._fullLayout.yaxis.type") == "linear"
    assert [t["meta"]["kind"] for t in plotly_data(page, "run-panel-acc", "gd.data")][:2] == ["raw", "smooth"]


# ---- 9.12 a production server -------------------------------------------------------------------------------------


def test_served_by_a_production_server(bare_stack: Stack) -> None:
    r = bare_stack.http.get(f"{bare_stack.ui}/")
    assert r.status_code == 200 and r.headers.get("server") == "waitress"
    assert "development server" not in bare_stack.log("dashboard")


# ---- issue 8 item 9: names and keys reach Plotly as text ----------------------------------------------------------


def test_run_names_and_keys_are_text_in_every_chart(bare_stack: Stack, page: Any) -> None:
    evil = '<a href="https://example.com/x">click</a>'
    a = bare_stack.external_run(evil)
    b = bare_stack.external_run("plain")
    for rid in (a, b):
        bare_stack.post(rid, [{"key": "train/loss", "step": s, "value": 1 / s} for s in (1, 2, 3)])
        bare_stack.post(rid, [{"key": "acc/<b>m9<i>", "step": s, "value": 0.5} for s in (1, 2, 3)])
        bare_stack.finish(rid)
    links = "() => document.querySelectorAll('.js-plotly-plot a').length"
    bold = "() => Array.from(document.querySelectorAll('.js-plotly-plot tspan')).filter(t => /bold/.test(t.getAttribute('style') || '')).length"
    legend = "() => Array.from(document.querySelectorAll('.legendtext')).map(t => t.textContent)"
    page.goto(f"{bare_stack.ui}/compare?runs={a},{b}&keys=train/loss")
    wait_for(lambda: any("click" in t for t in page.evaluate(legend)), 20, "the run's name in a legend")
    assert any(evil in t for t in page.evaluate(legend)), page.evaluate(legend)  # as typed, not a link
    assert page.evaluate(links) == 0
    page.goto(f"{bare_stack.ui}/runs/{a}")
    wait_for(lambda: any("m9" in t for t in page.evaluate(legend)), 20, "the key in the legend")
    assert any("<b>m9<i>" in t for t in page.evaluate(legend)), page.evaluate(legend)
    assert page.evaluate(bold) == 0 and page.evaluate(links) == 0


# ---- issue 8 item 8: keys with a comma ----------------------------------------------------------------------------


def test_a_key_with_a_comma_is_refused_and_the_page_reads_with_repeated_keys(bare_stack: Stack, page: Any) -> None:
    """The backend refuses a key that `?keys=a,b` could not send back (422 naming it), so nothing is
    stored that the page cannot fetch; the page reads the others with repeated `keys=` parameters."""
    rid = bare_stack.external_run("comma")
    bad = bare_stack.http.post(
        f"/api/runs/{rid}/metrics", json={"points": [{"key": "odd/a,b", "step": 1, "value": 0.5}]}
    )
    assert bad.status_code == 422 and "comma" in bad.text, bad.text
    bare_stack.post(rid, [{"key": k, "step": s, "value": 0.5} for k in ("acc/m0", "acc/m1") for s in (1, 2)])
    bare_stack.finish(rid)
    schema = json.dumps(bare_stack.http.get("/openapi.json").json()["paths"]["/api/runs/{run_id}/metrics"]["get"])
    assert '"array"' in schema  # the backend declares repeated keys=, so the dashboard sends them
    page.goto(f"{bare_stack.ui}/runs/{rid}")
    wait_for(lambda: trace_lengths(page, "run-panel-acc") == [2, 2], 20, "the keys drawn")
    assert not page.js_errors


# ---- depth: 17 toggles in the browser, x by epoch -------------------------------------------------------------


def test_toggles_run_in_the_browser_and_x_can_be_epochs(bare_stack: Stack, page: Any) -> None:
    rid = bare_stack.external_run("toggles", {"dataset": "ext", "method": "ext", "epochs": 3})
    for step in range(1, 13):
        extra = {"val/acc": 0.5 + step / 100, "epoch": step // 4} if step % 4 == 0 else {}
        bare_stack.post(rid, points(step, **extra))
    bare_stack.finish(rid)
    page.goto(f"{bare_stack.ui}/runs/{rid}")
    wait_for(lambda: trace_lengths(page, "run-panel-val"), 20, "panels")
    time.sleep(1.0)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "_dash-update-component" in r.url else None)
    set_slider(page, "run-smoothing", 0.75)
    wait_for(lambda: len(plotly_data(page, "run-panel-acc", "gd.data")) == 6, 15, "raw + smoothed curves")
    page.locator("#run-xmode").get_by_text("epoch").click()
    wait_for(lambda: plotly_data(page, "run-panel-val", "gd.data[0].x") == [1, 2, 3], 15, "val/acc at epochs 1, 2, 3")
    assert plotly_data(page, "run-panel-acc", "gd.data[0].x")[3] == 1  # step 4 ended epoch 1
    assert sent == [], sent  # not one server round trip


# ---- depth: 15 balance view with the unimodal ceiling, 14 groups ----------------------------------------------------


def test_compare_balance_view_names_each_modalitys_unimodal_ceiling(bare_stack: Stack, page: Any) -> None:
    base = {"dataset": "mfeat", "views": "kar,mor", "val_fraction": 0.2, "test_fraction": 0.2, "data_seed": 0}
    j1 = finished_run(
        bare_stack, "cggm-s0", {**base, "method": "cggm", "seed": 0}, summary(0.8, {"kar": 0.95, "mor": 0.711})
    )
    j2 = finished_run(
        bare_stack, "cggm-s1", {**base, "method": "cggm", "seed": 1}, summary(0.82, {"kar": 0.94, "mor": 0.731})
    )
    finished_run(
        bare_stack,
        "mor alone",
        {**base, "method": "unimodal", "modality": "mor"},
        summary(0.7, {"kar": 0.1, "mor": 0.751}),
    )
    page.goto(f"{bare_stack.ui}/compare?runs={j1},{j2}&group=seed%20repeats")
    ceilings = page.locator("#cmp-ceilings")
    wait_for(lambda: "alone" in ceilings.inner_text(), 20, "the ceilings")
    assert f"{j1}: cggm-s0: mor: 0.711 jointly vs 0.751 alone, −4.0 points" in ceilings.inner_text()
    assert "weak modality: mor" in page.locator("#cmp-balance").inner_text()
    # Seed repeats grouped: one band with n=2 in the overlays, a grouped final table.
    wait_for(lambda: plotly_data(page, "cmp-bal-gap", "gd.data.map(t => t.name)"), 20, "the gap overlay")
    names = plotly_data(page, "cmp-bal-gap", "gd.data.filter(t => t.showlegend).map(t => t.name)")
    assert any("(n=2)" in n for n in names), names
    assert "(n=2)" in page.locator("#cmp-final").inner_text()


# ---- depth: 16 families from the catalog, 18 the form ------------------------------------------------------------------


def test_a_methods_own_keys_and_an_unknown_family_get_panels(bare_stack: Stack, page: Any) -> None:
    rid = bare_stack.external_run("families")
    bare_stack.post(
        rid, [{"key": k, "step": s, "value": 0.5 + s} for k in ("ogm/score/m0", "gblend/w/m0") for s in (1, 2)]
    )
    bare_stack.finish(rid)
    page.goto(f"{bare_stack.ui}/runs/{rid}")
    wait_for(lambda: trace_lengths(page, "run-panel-ogm_score") == [2], 20, "OGM-GE's score panel")
    assert trace_lengths(page, "run-panel-other:gblend") == [2]
    assert "not declared" in plotly_data(page, "run-panel-other:gblend", "gd.layout.title.text")


def test_new_run_form_sections_hidden_settings_views_and_counts(bare_stack: Stack, page: Any) -> None:
    page.goto(f"{bare_stack.ui}/new")
    page.locator("#new-method").click()
    page.get_by_text("cggm", exact=True).last.click()
    page.locator(dom_id(name="rho", type="setting")).wait_for()
    row = page.locator(dom_id(name="slope_window", type="setting-row"))
    row.wait_for(state="visible")  # the default variant, stable, reads it
    page.locator(dom_id(name="variant", type="setting")).click()
    page.get_by_text("paper", exact=True).last.click()
    row.wait_for(state="hidden")  # variant paper ignores it
    assert not page.locator(dom_id(name="clip", type="setting")).is_visible()  # advanced: folded
    page.locator("#new-sweep summary").click()
    page.locator("#sweep-seeds").fill("4")
    wait_for(lambda: "starts 5 runs" in page.locator("#new-count").inner_text(), 20, "the run count")
    page.locator("#new-dataset").click()
    page.get_by_text("mfeat", exact=True).last.click()
    views = page.locator(dom_id(name="views", type="setting"))
    views.wait_for()
    assert "kar" in views.inner_text() and "mor" in views.inner_text()  # a multi-select of the views
