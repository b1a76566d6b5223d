"""The dashboard in real headless Chromium against the real stack (backend, one worker, dashboard)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Stack
from .pagekit import dom_id, free_port, trace_lengths, wait_for, wait_http

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
    return page.evaluate(
        """(sel) => { const gd = document.querySelector(sel).querySelector('.js-plotly-plot');
                      return gd.data.map(t => t.name); }""",
        dom_id(name=graph, type="graph"),
    )


def test_start_run_from_form_and_watch_it_finish(stack: Stack, page: Any) -> None:
    page.goto(f"{stack.ui}/new")
    page.locator(dom_id(name="epochs", type="setting")).wait_for()
    for name, value in {"epochs": 3, "train_size": 256, "val_size": 64, "test_size": 64, "probe_steps": 20}.items():
        page.locator(dom_id(name=name, type="setting")).fill(str(value))
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

    wait_for(finished, 60, "the run page to say finished")
    assert set(seen) <= {"…", "queued", "running", "finished"}, seen
    # One curve per modality, each with every logged step (log_every 1: 4 batches × 3 epochs).
    wait_for(lambda: trace_lengths(page, "run-panel-acc") == [12, 12], 10, "12 points per acc curve")
    assert trace_names(page, "run-panel-acc") == ["m0", "m1"]
    assert trace_lengths(page, "run-panel-coef") == [12, 12]
    assert "epoch 3/3" in page.locator("#run-progress").inner_text()
    # The dominance strip names a leader for accuracy and gradient norm.
    assert "leads by" in page.locator("#run-dominance-now").inner_text()
    # CSV export of what the panel shows: a header and 12 rows per modality.
    with page.expect_download() as download:
        page.click(dom_id(name="run-panel-acc", type="csv-button"))
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0] == "trace,x,y" and len(rows) == 1 + 24
    assert {r.split(",")[0] for r in rows[1:]} == {"acc/m0", "acc/m1"}


def test_backend_validation_error_is_shown_inline(stack: Stack, page: Any) -> None:
    page.goto(f"{stack.ui}/new")
    page.locator(dom_id(name="epochs", type="setting")).fill("0")
    page.click("#new-submit")
    error = page.locator("#new-error")
    wait_for(lambda: "epochs" in error.inner_text(), 10, "the 422 message")
    assert "Rejected" in error.inner_text()


def test_live_run_grows_then_stops_from_its_page(stack: Stack, page: Any) -> None:
    run = stack.create_run({**TINY, "epochs": 200, "train_size": 2048}, name="long")
    page.goto(f"{stack.ui}/runs/{run['id']}")
    wait_for(lambda: page.locator("#run-status").inner_text() == "running", 30, "running")
    wait_for(lambda: sum(trace_lengths(page, "run-panel-acc")) > 0, 20, "first points")
    first = trace_lengths(page, "run-panel-acc")
    wait_for(lambda: trace_lengths(page, "run-panel-acc")[0] > first[0], 10, "more points")
    lengths = trace_lengths(page, "run-panel-acc")
    assert (len(lengths) == 2 and lengths[0] == lengths[1]) or abs(lengths[0] - lengths[1]) <= 2
    # Appends never duplicate a step: x values strictly increase.
    xs = page.evaluate(
        "(sel) => document.querySelector(sel).querySelector('.js-plotly-plot').data[0].x",
        dom_id(name="run-panel-acc", type="graph"),
    )
    assert all(b > a for a, b in itertools.pairwise(xs))
    page.click("#run-stop")
    wait_for(lambda: page.locator("#run-status").inner_text() == "stopped", 30, "stopped")
    assert stack.run(run["id"])["status"] == "stopped"
    # Polling stopped with the run: the figure no longer changes.
    final = trace_lengths(page, "run-panel-acc")
    time.sleep(1.5)
    assert trace_lengths(page, "run-panel-acc") == final


def test_compare_shows_only_the_settings_that_differ(stack: Stack, page: Any) -> None:
    a = stack.create_run({**TINY, "rho": 1.0}, name="rho-1")
    b = stack.create_run({**TINY, "rho": 2.0}, name="rho-2")
    for r in (a, b):
        stack.wait_status(r["id"], {"finished"}, 60)
    page.goto(f"{stack.ui}/compare?runs={a['id']},{b['id']}")
    table = page.locator("#cmp-diff")
    wait_for(lambda: "rho" in table.inner_text(), 15, "the diff table")
    rows = page.locator("#cmp-diff tbody tr").all_inner_texts()
    settings = [r.split("\t")[0].strip() for r in rows if r.strip() and not r.startswith("setting")]
    assert settings == ["rho"], rows
    wait_for(lambda: trace_lengths(page, "cmp-sm-acc"), 10, "small multiples")
    assert len(trace_lengths(page, "cmp-sm-acc")) == 4  # 2 runs × 2 modalities


def test_runs_table_escapes_user_text_and_links_each_run(stack: Stack, page: Any) -> None:
    run = stack.create_run(TINY, name="<b id='injected'>bold</b>", tags=["<i>t</i>"])
    page.goto(f"{stack.ui}/")
    cell = page.get_by_text("<b id='injected'>bold</b>")
    cell.first.wait_for()
    assert page.locator("#injected").count() == 0
    page.locator(f"a[href='/runs/{run['id']}']").first.click()
    page.wait_for_url(f"**/runs/{run['id']}")
    wait_for(lambda: "<b id='injected'>bold</b>" in page.locator("#run-title").inner_text(), 10, "run title")


def test_banner_when_backend_is_down_and_recovery(page: Any, tmp_path: Any) -> None:
    api_port, ui_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    env_cmd = [sys.executable, "-m", "dashboard.cli", "--port", str(ui_port), "--api", api]
    log = tmp_path / "dash.log"
    dash_proc = subprocess.Popen(env_cmd, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT)
    backend = None
    try:
        wait_http(f"http://127.0.0.1:{ui_port}/", dash_proc, log)
        page.goto(f"http://127.0.0.1:{ui_port}/")
        banner = page.locator("#backend-banner")
        banner.wait_for(state="visible")
        assert "unreachable" in banner.inner_text()
        assert "Traceback" not in page.content()
        launcher = str(REPO / "tests" / "dashboard" / "stack_launcher.py")
        blog = tmp_path / "backend.log"
        backend = subprocess.Popen(
            [sys.executable, launcher, "serve", "--port", str(api_port), "--db", f"sqlite:///{tmp_path / 'db.sqlite'}"],
            cwd=REPO,
            env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
            stdout=blog.open("w"),
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{api}/api/health", backend, blog)
        banner.wait_for(state="hidden", timeout=10_000)
    finally:
        for p in (backend, dash_proc):
            if p is not None:
                p.terminate()
                p.wait(timeout=15)
