"""Run pages of the new tasks and the panels not drawn yet, in real headless Chromium.

- A real `synthetic_seg` run (segnet at tiny sizes, 2 epochs) and a real regression run
  (`synthetic`, task=regression), each trained by the stack's real worker: the page draws the
  task's own evaluation keys (Dice WT/TC/ET/avg; MAE, correlation) from the catalog's key
  families, and the summary card gives those metrics, not accuracy (issue 10, Tests).
- A panel far down the page is drawn when it comes near; until then it shows its title and
  "scroll to draw", not empty axes from −1 to 6.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import Stack
from .pagekit import graph_selector, plotly_data, wait_for

pytestmark = pytest.mark.browser

SEG = {
    "dataset": "synthetic_seg",
    "method": "cggm",
    "seg_size": 16,
    "seg_depth": 4,
    "seg_train_volumes": 4,
    "seg_val_volumes": 2,
    "seg_test_volumes": 2,
    "segnet_width": 2,
    "segnet_dec_width": 4,
    "batch_size": 8,
    "epochs": 2,
    "log_every": 1,
    "probe_steps": 5,
}
REGRESSION = {
    "dataset": "synthetic",
    "method": "cggm",
    "task": "regression",
    "epochs": 2,
    "train_size": 256,
    "val_size": 64,
    "test_size": 64,
    "log_every": 1,
    "probe_steps": 20,
}


def trace_points(page: Any, graph: str) -> dict[str, int]:
    """{trace name: number of points} of a graph's legend traces (scrolled into view: drawn)."""
    got = plotly_data(
        page, graph, "Object.fromEntries(gd.data.filter(t => t.showlegend !== false).map(t => [t.name, t.x.length]))"
    )
    return got or {}


def finished_run_page(stack: Stack, page: Any, config: dict[str, Any], name: str) -> int:
    run = stack.create_run(config, name=name)
    done = stack.wait_status(run["id"], {"finished", "failed"}, 300)
    assert done["status"] == "finished", done.get("error")
    page.goto(f"{stack.ui}/runs/{run['id']}")
    wait_for(lambda: page.locator("#run-status").inner_text() == "finished", 30, "the page to say finished")
    return int(run["id"])


def test_a_segmentation_run_page_draws_dice_and_its_card_gives_dice(stack: Stack, page: Any) -> None:
    finished_run_page(stack, page, SEG, "seg-page")
    dice = {"val/dice/wt", "val/dice/tc", "val/dice/et", "val/dice/avg"}
    got = wait_for(lambda: (tp := trace_points(page, "run-panel-val")) and dice <= set(tp) and tp, 30, "Dice panel")
    assert all(got[k] == 2 for k in dice), got  # one point per epoch
    title = plotly_data(page, "run-panel-val", "gd.layout.title.text")
    assert title.startswith("val/*")
    # ε of the aux heads is their batch Dice: one curve per MRI sequence.
    mods = {"flair", "t1ce", "t1", "t2"}
    wait_for(lambda: set(trace_points(page, "run-panel-acc")) == mods, 30, "a curve per MRI sequence")
    card = page.locator("#run-summary")
    wait_for(lambda: "val dice/avg" in card.inner_text(), 20, "the summary card")
    head = card.locator(".summary-head").inner_text()
    assert "test dice/avg" in head and "acc" not in head
    table = card.locator("#run-summary-eval")
    cols = [c.strip() for c in table.locator("th").all_inner_texts()]
    assert cols == ["", "dice", "dice/et", "dice/tc", "dice/wt", "dice/avg"]
    val_row = table.locator("tbody tr").first.locator("td").all_inner_texts()
    assert val_row[0] == "val" and all(_number(v) for v in val_row[1:]), val_row
    # Per modality: the probe's and the aux heads' Dice; ε is named Dice wherever it leads.
    assert "probe dice" in card.inner_text() and "aux dice (val)" in card.inner_text()
    assert "led (dice)" in card.inner_text()
    now = page.locator("#run-dominance-now").inner_text()
    assert now.startswith("dice: ") and "accuracy" not in now, now
    strip = page.locator("""[id*='"name":"run-dominance"'] .js-plotly-plot""")
    rows = wait_for(lambda: strip.evaluate("gd => gd.layout && gd.layout.yaxis.categoryarray"), 20, "the strip")
    assert rows == ["grad norm", "dice"], rows
    assert page.js_errors == []


def test_a_regression_run_page_draws_mae_and_correlation(stack: Stack, page: Any) -> None:
    finished_run_page(stack, page, REGRESSION, "regression-page")
    wanted = {"val/mae", "val/corr"}
    got = wait_for(lambda: (tp := trace_points(page, "run-panel-val")) and wanted <= set(tp) and tp, 30, "MAE panel")
    assert got["val/mae"] == got["val/corr"] == 2
    card = page.locator("#run-summary")
    wait_for(lambda: "val mae" in card.inner_text(), 20, "the summary card")
    cols = [c.strip() for c in card.locator("#run-summary-eval th").all_inner_texts()]
    assert {"mae", "corr", "acc2", "acc7"} <= set(cols) and "acc" not in cols
    assert "probe sign_acc" in card.inner_text()
    assert page.locator("#run-dominance-now").inner_text().startswith("sign_acc: ")
    assert page.js_errors == []


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---- panels not drawn yet ------------------------------------------------------------------------


def many_families(step: int) -> list[dict[str, Any]]:
    """Points of 16 key families, so that the run page is several screens long."""
    out = []
    for m in ("m0", "m1"):
        for fam in ("acc", "grad_norm", "grad_norm_mod", "update_norm", "coef", "cos", "loss/aux", "val/acc"):
            out.append({"key": f"{fam}/{m}", "step": step, "value": 0.5 + step / 100})
        out.append({"key": f"val/contrib/{m}", "step": step, "value": 0.1})
    for key in ("train/loss", "train/acc", "lr", "imbalance/acc_gap", "imbalance/grad_ratio", "val/loss", "val/acc"):
        out.append({"key": key, "step": step, "value": 0.3 + step / 100})
    return out


def figure_without_scrolling(page: Any, graph: str) -> Any:
    """What a graph's plotly div holds now, read without bringing it into view."""
    return page.evaluate(
        """(sel) => { const el = document.querySelector(sel);
                      const gd = el && el.querySelector('.js-plotly-plot');
                      if (!gd || !gd.layout) return null;
                      return {title: (gd.layout.title || {}).text || '', traces: (gd.data || []).length,
                              notes: (gd.layout.annotations || []).map(a => a.text),
                              axes: gd.layout.xaxis ? gd.layout.xaxis.visible : null,
                              top: el.getBoundingClientRect().top}; }""",
        graph_selector(graph),
    )


@pytest.mark.parametrize("graph_code_delay_s", [0.0, 2.0])
def test_a_panel_not_drawn_yet_shows_its_title_and_says_so(
    bare_stack: Stack, page: Any, graph_code_delay_s: float
) -> None:
    """With the graph's code slow to arrive (as on a loaded machine with a cold cache), the page's first
    draw runs while every graph is 0 px high: the far panel must still wait, not be drawn at once."""
    rid = bare_stack.external_run(f"long-page-{graph_code_delay_s}")
    for step in range(1, 4):
        bare_stack.post(rid, many_families(step))
    bare_stack.finish(rid)
    if graph_code_delay_s:

        def slow(route: Any) -> None:
            time.sleep(graph_code_delay_s)
            route.continue_()

        page.route("**/async-graph.js*", slow)
    page.set_viewport_size({"width": 1400, "height": 600})
    page.goto(f"{bare_stack.ui}/runs/{rid}")
    wait_for(lambda: trace_points_now(page, "run-panel-acc"), 30, "the first panel drawn")
    panels = page.evaluate(
        """() => Array.from(document.querySelectorAll("[id*='run-graph']")).map(e => JSON.parse(e.id).name)"""
    )
    assert len(panels) >= 14, panels
    last = panels[-1]
    far = wait_for(
        lambda: (f := figure_without_scrolling(page, last)) and "scroll to draw" in f["notes"] and f, 30, "placeholder"
    )
    assert far["top"] > 2 * 600, far  # really far down the page
    assert far["traces"] == 0 and far["axes"] is False  # no fake axes
    assert far["title"], far  # the panel says what it is
    # Brought into view, it draws: its traces, its own title, no placeholder.
    page.locator(graph_selector(last)).scroll_into_view_if_needed()
    drawn = wait_for(lambda: (f := figure_without_scrolling(page, last)) and f["traces"] > 0 and f, 30, "drawn")
    assert "scroll to draw" not in drawn["notes"] and drawn["title"].startswith(far["title"])
    assert page.js_errors == []


def trace_points_now(page: Any, graph: str) -> int:
    f = figure_without_scrolling(page, graph)
    return f["traces"] if f else 0


def test_compare_of_segmentation_runs_names_the_probes_metric(stack: Stack, page: Any) -> None:
    """The probe bars are in the probes' metric (the batch Dice), not the run's headline `dice/avg`."""
    a = stack.create_run(SEG, name="seg-cggm")
    b = stack.create_run({**SEG, "method": "joint"}, name="seg-joint")
    for r in (a, b):
        assert stack.wait_status(r["id"], {"finished", "failed"}, 300)["status"] == "finished"
    page.goto(f"{stack.ui}/compare?runs={a['id']},{b['id']}")
    bars = page.locator("#cmp-probe-bars .js-plotly-plot")
    bars.wait_for()
    title = wait_for(
        lambda: page.evaluate("el => el.layout && el.layout.title.text", bars.element_handle()), 20, "bars"
    )
    assert title.startswith("probe dice per modality"), title
    assert "dice/avg" not in title
