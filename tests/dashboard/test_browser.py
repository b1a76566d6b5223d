"""The dashboard in real headless Chromium against the real stack (backend, one worker, dashboard)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Stack
from .pagekit import dom_id, graph_selector, plotly_data, trace_lengths, wait_for

pytestmark = pytest.mark.browser

TINY = {
    "dataset": "synthetic",
    "method": "cggm",
    "epochs": 3,
    "train_size": 256,
    "val_size": 64,
    "test_size": 64,
    "log_every": 1,
    "probe_steps": 20,
}


def trace_names(page: Any, graph: str) -> list[str]:
    return plotly_data(page, graph, "gd.data.filter(t => t.showlegend !== false).map(t => t.name)") or []


def setting(name: str) -> str:
    return dom_id(name=name, type="setting")


def test_start_run_from_form_and_watch_it_finish(stack: Stack, page: Any) -> None:
    page.goto(f"{stack.ui}/new")
    page.locator(setting("epochs")).wait_for()
    page.locator("#new-method").click()
    page.locator(".Select-menu-outer, [role='listbox'], .dash-dropdown").get_by_text("cggm", exact=True).first.click()
    page.locator(setting("rho")).wait_for()
    page.locator(".form-section summary", has_text="Advanced").click()
    for name, value in {"epochs": 3, "train_size": 256, "val_size": 64, "test_size": 64, "probe_steps": 20}.items():
        page.locator(setting(name)).fill(str(value))
    page.locator("#new-name").fill("from-the-form")
    page.click("#new-submit")
    link = page.get_by_role("link", name="from-the-form")
    link.wait_for()
    run_id = int(link.get_attribute("href").rsplit("/", 1)[1])
    assert stack.run(run_id)["config"]["epochs"] == 3
    link.click()
    page.wait_for_url(f"**/runs/{run_id}")
    seen: list[str] = []

    def finished() -> bool:
        text = page.locator("#run-status").inner_text()
        if not seen or seen[-1] != text:
            seen.append(text)
        return text == "finished"

    wait_for(finished, 180, "the run page to say finished")
    assert set(seen) <= {"…", "queued", "running", "finished"}, seen
    # One curve per modality, each with every logged step (log_every 1: 4 batches × 3 epochs).
    wait_for(lambda: trace_lengths(page, "run-panel-acc") == [12, 12], 20, "12 points per acc curve")
    assert trace_names(page, "run-panel-acc") == ["m0", "m1"]
    # Panels far down the page draw when they come near (lazy): bring each into view first.
    page.locator(graph_selector("run-panel-coef")).scroll_into_view_if_needed()
    wait_for(lambda: trace_lengths(page, "run-panel-coef") == [12, 12], 20, "12 points per coef curve")
    assert "epoch 3/3" in page.locator("#run-progress").inner_text()
    # The dominance readout names a leader for accuracy and gradient norm, with how often it led.
    wait_for(lambda: "led" in page.locator("#run-dominance-now").inner_text(), 15, "the dominance readout")
    # The summary card: the final metric, each modality's probe, B's blow-ups at full resolution.
    card = page.locator("#run-summary")
    wait_for(lambda: "probe acc" in card.inner_text() and "blow-ups" in card.inner_text(), 15, "the summary card")
    assert "test acc" in card.inner_text()
    # The panels' methods' own diagnostic (CGGM's loss/gm) is drawn with the losses.
    page.locator(graph_selector("run-panel-losses")).scroll_into_view_if_needed()
    wait_for(lambda: "loss/gm" in trace_names(page, "run-panel-losses"), 20, "loss/gm among the losses")


def test_backend_validation_error_is_shown_inline(stack: Stack, page: Any) -> None:
    page.goto(f"{stack.ui}/new")
    page.locator(setting("epochs")).fill("0")
    wait_for(lambda: "outside" in page.locator(dom_id(name="epochs", type="setting-error")).inner_text(), 20, "inline")
    page.click("#new-submit")
    error = page.locator("#new-error")
    wait_for(lambda: "epochs" in error.inner_text(), 20, "the message")


def test_live_run_grows_then_stops_from_its_page(stack: Stack, page: Any) -> None:
    run = stack.create_run({**TINY, "epochs": 200, "train_size": 2048}, name="long")
    try:
        _watch_live_run_then_stop_it(stack, page, run["id"])
    finally:  # never leave the session's one worker busy with it
        if stack.run(run["id"])["status"] in ("queued", "running"):
            stack.http.post(f"/api/runs/{run['id']}/stop")


def _watch_live_run_then_stop_it(stack: Stack, page: Any, run_id: int) -> None:
    # The page renders again when a family first appears (val/* after epoch 1): a moment without traces.
    def points() -> int:
        return (trace_lengths(page, "run-panel-acc") or [0])[0]

    page.goto(f"{stack.ui}/runs/{run_id}")
    wait_for(lambda: page.locator("#run-status").inner_text() == "running", 30, "running")
    wait_for(lambda: points() > 0, 30, "first points")
    first = points()
    wait_for(lambda: points() > first, 30, "more points")
    lengths = wait_for(lambda: len(ls := trace_lengths(page, "run-panel-acc")) == 2 and ls, 20, "both curves")
    assert abs(lengths[0] - lengths[1]) <= 2
    # Appends never duplicate a step: x values strictly increase.
    xs = plotly_data(page, "run-panel-acc", "gd.data[0].x")
    assert all(b > a for a, b in itertools.pairwise(xs))
    page.click("#run-stop")
    wait_for(lambda: page.locator("#run-status").inner_text() == "stopped", 30, "stopped")
    assert stack.run(run_id)["status"] == "stopped"
    # The last tick's points are drawn just after its status text; then polling stops with the run:
    # the figure holds every stored point and no longer changes.
    stored = len(
        stack.http.get(f"/api/runs/{run_id}/metrics", params={"keys": "acc/m0"}).json()["series"]["acc/m0"]["steps"]
    )
    wait_for(lambda: trace_lengths(page, "run-panel-acc") == [stored, stored], 20, "every stored point")
    final = trace_lengths(page, "run-panel-acc")
    time.sleep(1.5)
    assert trace_lengths(page, "run-panel-acc") == final


def test_compare_shows_only_the_settings_that_differ(stack: Stack, page: Any) -> None:
    a = stack.create_run({**TINY, "rho": 1.0}, name="rho-1")
    b = stack.create_run({**TINY, "rho": 2.0}, name="rho-2")
    for r in (a, b):
        stack.wait_status(r["id"], {"finished"}, 180)
    page.goto(f"{stack.ui}/compare?runs={a['id']},{b['id']}")
    table = page.locator("#cmp-diff")
    wait_for(lambda: "rho" in table.inner_text(), 15, "the diff table")
    rows = page.locator("#cmp-diff tbody tr").all_inner_texts()
    settings = [r.split("\t")[0].strip() for r in rows if r.strip() and not r.startswith("setting")]
    assert settings == ["rho"], rows
    wait_for(lambda: trace_lengths(page, "cmp-sm-acc"), 20, "small multiples")
    assert len(trace_lengths(page, "cmp-sm-acc")) == 4  # 2 runs × 2 modalities


def test_runs_table_escapes_user_text_and_links_each_run(stack: Stack, page: Any) -> None:
    run = stack.create_run(TINY, name="<b id='injected'>bold</b>", tags=["<i>t</i>"])
    page.goto(f"{stack.ui}/")
    cell = page.get_by_text("<b id='injected'>bold</b>")
    cell.first.wait_for()
    assert page.locator("#injected").count() == 0
    page.locator(f"a[href='/runs/{run['id']}']").first.click()
    page.wait_for_url(f"**/runs/{run['id']}")
    wait_for(lambda: "<b id='injected'>bold</b>" in page.locator("#run-title").inner_text(), 20, "run title")


def test_csv_export_of_the_full_series(stack: Stack, page: Any, tmp_path: Path) -> None:
    """Issue 9.8: the CSV holds every stored point, the plot says it is downsampled to N of M."""
    rid = stack.external_run("long-series")
    stack.post(rid, [{"key": "acc/m0", "step": i, "value": (i % 97) / 97} for i in range(1, 4001)])
    stack.finish(rid)
    page.goto(f"{stack.ui}/runs/{rid}")
    wait_for(lambda: trace_lengths(page, "run-panel-acc"), 20, "the acc panel")
    drawn = trace_lengths(page, "run-panel-acc")[0]
    assert drawn <= 1500
    title = plotly_data(page, "run-panel-acc", "gd.layout.title.text")
    assert f"downsampled to {drawn:,} of ~4,000 points" in title
    link = page.locator(f"{graph_selector('run-panel-acc')} >> xpath=../..").locator("a.csv")
    with page.expect_download() as download:
        link.click()
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0] == "key,step,value,time" and len(rows) == 1 + 4000
    assert rows[1].startswith("acc/m0,1,") and rows[-1].startswith("acc/m0,4000,")
