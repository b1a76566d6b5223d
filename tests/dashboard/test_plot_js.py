"""The browser-side builders (dashboard/assets/cggm_plot.js), run in real headless Chromium.

Hand-computed expectations, as the Python transforms had: the EMA, symlog and its ticks, the log
scale's hidden points, step → epoch, group bands, dominance, and the merge of a live delta.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ASSETS = Path(__file__).resolve().parents[2] / "dashboard" / "assets"


@pytest.fixture
def js(page: Any) -> Any:
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(ASSETS / "cggm_plot.js"))
    return lambda expr, arg=None: page.evaluate(f"(arg) => {{ const P = window.cggmPlot; return {expr}; }}", arg)


def test_debiased_ema_matches_hand_computed_values(js: Any) -> None:
    # w = 0.5: s1 = 0.5 → 0.5/0.5 = 1; s2 = 0.25+1 = 1.25 → 1.25/0.75; s3 = 0.625+1.5 → 2.125/0.875
    assert js("P.ema([1, 2, 3], 0.5)") == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    assert js("P.ema([3, -1, 7], 0)") == [3, -1, 7]
    assert js("P.ema([5], 0.99)") == pytest.approx([5.0])  # debiased: no pull towards 0
    # A non-finite point gives NaN (a gap once drawn) and leaves the state untouched.
    out = js("P.ema([1, NaN, 3, Infinity], 0.5)")
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1]) and math.isnan(out[3])
    assert out[2] == pytest.approx(1.75 / 0.75)


def test_symlog_values_and_ticks(js: Any) -> None:
    assert js("[P.symlog(0), P.symlog(9), P.symlog(-99), P.symlog(1e7 - 1)]") == pytest.approx([0, 1, -2, 7])
    ticks = js("P.symlogTicks(-50, 2e7)")
    by_text = dict(zip(ticks["text"], ticks["vals"], strict=True))
    assert by_text["1e7"] == pytest.approx(math.log10(1 + 1e7))
    assert "-100" in by_text and "0" in by_text and "1e8" in by_text
    assert ticks["vals"] == sorted(ticks["vals"])


def test_log_scale_hides_values_at_or_below_zero_and_counts_them(js: Any) -> None:
    out = js("P.yValues([-0.5, 0, 0.3, NaN, 2], 'log')")
    assert out["y"] == [None, None, 0.3, None, 2] and out["hidden"] == 2
    lin = js("P.yValues([-0.5, 0.3], 'linear')")
    assert lin["y"] == [-0.5, 0.3] and lin["hidden"] == 0  # cos/* keeps its negative values


def test_epoch_axis_from_logged_epochs_or_steps_per_epoch(js: Any) -> None:
    # Epoch 1 ended at step 10, epoch 2 at step 30 (a longer epoch): piecewise linear, then at epoch 2's pace.
    got = js("[5, 10, 20, 30, 40].map(P.epochOf({s: [10, 30], v: [1, 2]}, null))")
    assert got == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5])
    assert js("[8, 12].map(P.epochOf(null, 4))") == pytest.approx([2.0, 3.0])
    assert js("P.epochOf(null, null)") is None


def test_group_band_mean_std_and_min_max(js: Any) -> None:
    members = [{"x": [1, 2, 3], "y": [1, 2, 3]}, {"x": [1, 2, 3], "y": [3, 4, 5]}]
    b = js("P.band(arg, 'std')", members)
    assert b["mean"] == [2, 3, 4] and b["n"] == 2
    assert b["upper"] == pytest.approx([2 + math.sqrt(2), 3 + math.sqrt(2), 4 + math.sqrt(2)])
    mm = js("P.band(arg, 'minmax')", members)
    assert mm["lower"] == [1, 2, 3] and mm["upper"] == [3, 4, 5]


def test_dominance_exact_on_shared_steps(js: Any) -> None:
    series = {"a": {"s": [1, 2, 3], "v": [0.5, 0.9, 0.4]}, "b": {"s": [1, 2], "v": [0.7, 0.6]}}
    d = js("P.dominance(arg, 'acc')", series)
    assert d["steps"] == [1, 2] and d["leaders"] == ["b", "a"]
    assert d["margins"] == pytest.approx([0.2, 0.3])
    g = js("P.dominance(arg, 'grad_norm')", {"a": {"s": [1], "v": [1.0]}, "b": {"s": [1], "v": [4.0]}})
    assert g["leaders"] == ["b"] and g["margins"] == pytest.approx([4.0])
    assert js(
        "[P.formatMargin('acc', 0.1), P.formatMargin('grad_norm', 3), P.formatMargin('grad_norm', Infinity)]"
    ) == [
        "+0.100",
        "×3",
        "×∞",
    ]


def test_figure_per_scale_with_real_values_in_the_hover(js: Any) -> None:
    data = {
        "run_id": 1,
        "runs": {"1": {"t0": 100}},
        "series": {"coef/m0": {"s": [1, 2, 3], "v": [0.5, -2e7, "NaN"], "t": [100, 101, 102]}},
    }
    spec = {
        "id": "p",
        "title": "coef",
        "scale": "symlog",
        "traces": [{"sid": "coef/m0", "name": "m0", "color": "#111111"}],
    }
    fig = js("P.buildFigure(arg.spec, arg.data, {scale: 'symlog'})", {"spec": spec, "data": data})
    (tr,) = fig["data"]
    assert tr["y"][1] == pytest.approx(-math.log10(1 + 2e7)) and tr["y"][2] is None
    assert tr["customdata"][:2] == [0.5, -2e7]
    assert tr["line"]["color"] == "#111111" and tr["name"] == "m0"
    assert "%{fullData.name}" in tr["hovertemplate"]  # the name is never part of the template
    assert "-1e7" in fig["layout"]["yaxis"]["ticktext"]
    smooth = js(
        "P.buildFigure(arg.spec, arg.data, {smoothing: 0.5, scale: 'linear', x: 'relative'})",
        {"spec": spec, "data": data},
    )
    assert [t["meta"]["kind"] for t in smooth["data"]] == ["raw", "smooth"]
    assert smooth["data"][0]["opacity"] == 0.3 and smooth["data"][0]["showlegend"] is False
    assert smooth["data"][1]["x"] == [0, 1, 2]


def test_small_multiples_share_or_own_their_y_axes(js: Any) -> None:
    data = {
        "runs": {},
        "series": {"1|a": {"s": [1], "v": [1], "t": [0], "r": 1}, "2|a": {"s": [1], "v": [1e6], "t": [0], "r": 2}},
    }
    spec = {
        "id": "sm",
        "scale": "linear",
        "columns": ["run 1", "run 2"],
        "traces": [
            {"sid": "1|a", "name": "m0", "column": 0, "color": "#000"},
            {"sid": "2|a", "name": "m0", "column": 1, "color": "#000"},
        ],
    }
    own = js("P.buildFigure(arg.spec, arg.data, {sharedY: false})", {"spec": spec, "data": data})
    shared = js("P.buildFigure(arg.spec, arg.data, {sharedY: true})", {"spec": spec, "data": data})
    assert "matches" not in own["layout"]["yaxis2"]
    assert shared["layout"]["yaxis2"]["matches"] == "y"
    assert [t["xaxis"] for t in own["data"][1:]] == ["x2"]
    assert [a["text"] for a in own["layout"]["annotations"]] == ["run 1", "run 2"]


def test_merge_appends_only_points_after_the_last_drawn_step(js: Any) -> None:
    data = {
        "token": "t",
        "seq": 0,
        "run_id": 1,
        "series": {"acc/m0": {"s": [1, 2], "v": [0.1, 0.2], "t": [0, 1], "r": 1}},
        "panels": [{"id": "p", "traces": [{"sid": "acc/m0"}]}],
    }
    delta = {
        "token": "t",
        "base": 0,
        "seq": 1,
        "groups": [{"s": [2, 3], "t": [1, 2], "v": {"acc/m0": [0.2, 0.3], "acc/m1": [0.5, 0.6]}}],
    }
    merged = js("P.mergeDelta(arg.data, arg.delta)", {"data": data, "delta": delta})
    assert merged["series"]["acc/m0"]["s"] == [1, 2, 3]  # step 2 is not drawn twice
    assert merged["series"]["acc/m1"]["s"] == [2, 3]
    assert merged["seq"] == 1 and merged["panel_rev"] == {"p": 1}


def test_merge_appends_new_epochs_to_the_run_context(js: Any) -> None:
    data = {
        "token": "t",
        "seq": 0,
        "run_id": 1,
        "series": {},
        "panels": [],
        "runs": {"1": {"t0": 5, "epochs": {"s": [10], "v": [1]}}},
    }
    delta = {"token": "t", "base": 0, "seq": 1, "groups": [], "epochs": {"1": {"s": [10, 20], "v": [1, 2]}}}
    merged = js("P.mergeDelta(arg.data, arg.delta)", {"data": data, "delta": delta})
    assert merged["runs"]["1"] == {"t0": 5, "epochs": {"s": [10, 20], "v": [1, 2]}}


def test_symlog_axis_leaves_a_margin_so_a_constant_line_is_seen(js: Any) -> None:
    """B = 1 at every step (CGGM's neutral value): without a margin the line sat on the plot's top
    edge with no tick label, and the panel read as empty."""
    data = {"run_id": 1, "runs": {}, "series": {"coef/m0": {"s": [1, 2, 3], "v": [1, 1, 1], "t": [0, 1, 2]}}}
    spec = {"id": "p", "title": "coef", "scale": "symlog", "traces": [{"sid": "coef/m0", "name": "m0"}]}
    ya = js("P.buildFigure(arg.spec, arg.data, {scale: 'symlog'})", {"spec": spec, "data": data})["layout"]["yaxis"]
    lo, hi = ya["range"]
    line = math.log10(2)  # symlog(1)
    assert lo < 0 < line < hi and hi - line == pytest.approx(0.06 * line)
    assert "1" in ya["ticktext"]


def test_a_log_axis_over_a_few_decades_labels_1_2_and_5_not_every_digit(js: Any) -> None:
    """Plotly's own ticks over ~1.3 decades label every digit (9 8 7 … 2 stacked in small type)."""

    def yaxis(values: list[float]) -> dict[str, Any]:
        steps = list(range(1, len(values) + 1))
        data = {"run_id": 1, "runs": {}, "series": {"g": {"s": steps, "v": values, "t": steps}}}
        spec = {"id": "p", "title": "g", "scale": "log", "traces": [{"sid": "g", "name": "g"}]}
        return js("P.buildFigure(arg.spec, arg.data, {scale: 'log'})", {"spec": spec, "data": data})["layout"]["yaxis"]

    assert yaxis([0.06, 0.3, 1.2])["dtick"] == "D2"
    assert yaxis([-1.0, 0.0, 0.06, 1.2])["dtick"] == "D2"  # values <= 0 are not on a log axis
    assert "dtick" not in yaxis([1e-5, 0.1, 10.0])  # 6 decades: plotly's one label per decade
    assert "dtick" not in yaxis([-1.0, 0.0])  # nothing to show on a log axis


def test_a_long_line_is_drawn_with_its_extremes_in_svg_not_webgl(js: Any) -> None:
    """A live run's series grows past the 1,500 points the page first read. Each bucket keeps its
    lowest and highest point (and a bucket of gaps one gap); the line stays SVG: with every panel
    in WebGL, a browser's ~16 contexts ran out and the first panels went blank."""
    assert js("P.extremesIndices([1, 2, 3], 6)") is None  # fits
    # 10 points, 6 at most: 2 buckets over the 8 inside points (1-4 and 5-8), plus first and last.
    y = [5, 9, 1, 7, 3, 2, 8, None, 4, 6]
    assert js("P.extremesIndices(arg, 6)", y) == [0, 1, 2, 5, 6, 9]
    assert js("P.extremesIndices(arg, 6)", [0, None, None, None, None, 3, 1, 2, 4, 0]) == [0, 1, 6, 8, 9]

    n = 10_000
    values = [0.5 + 0.001 * (i % 7) for i in range(n)]
    values[4321], values[8765] = 9.0, -3.0  # the spike and the dip a user must see
    steps = list(range(n))
    data = {"run_id": 1, "runs": {}, "series": {"a": {"s": steps, "v": values, "t": steps}}}
    spec = {"id": "p", "title": "a", "scale": "linear", "traces": [{"sid": "a", "name": "a"}]}
    trace = js("P.buildFigure(arg.spec, arg.data, {})", {"spec": spec, "data": data})["data"][0]
    assert trace["type"] == "scatter"
    assert len(trace["x"]) <= js("P.DRAW_MAX_POINTS") and 4321 in trace["x"] and 8765 in trace["x"]
    assert max(trace["y"]) == 9.0 and min(trace["y"]) == -3.0
    assert trace["x"][0] == 0 and trace["x"][-1] == n - 1


def test_a_few_steps_get_whole_step_ticks(js: Any) -> None:
    def xaxis(steps: list[int], x: str = "step") -> dict[str, Any]:
        data = {"run_id": 1, "runs": {"1": {"t0": 0}}, "series": {"a": {"s": steps, "v": steps, "t": steps}}}
        spec = {"id": "p", "title": "a", "scale": "linear", "traces": [{"sid": "a", "name": "a"}]}
        return js("P.buildFigure(arg.spec, arg.data, {x: arg.x})", {"spec": spec, "data": data, "x": x})["layout"][
            "xaxis"
        ]

    assert xaxis([1, 2, 3, 4])["dtick"] == 1  # not 1.5, 2.5, … between logged steps
    assert "dtick" not in xaxis(list(range(1, 200)))  # plotly's own ticks for longer runs
    assert "dtick" not in xaxis([1, 2, 3, 4], "relative")  # seconds are not steps


def test_symlog_ticks_over_a_few_decades_include_halves_and_fives(js: Any) -> None:
    # CGGM's neutral B with 4 modalities is 0.75: a label at 0.5 and 1 around it, not 0 alone.
    assert js("P.symlogTicks(0, 0.75)")["text"] == ["-1", "-0.5", "0", "0.5", "1"]
    assert js("P.symlogTicks(0, 40)")["text"] == ["-1", "-0.5", "0", "0.5", "1", "2", "5", "10", "20", "50", "100"]
    many = js("P.symlogTicks(0, 2e7)")["text"]
    assert "5" not in many and "1e7" in many  # many decades: decades only


def test_the_dominance_strip_of_a_few_steps_ticks_whole_steps(js: Any) -> None:
    data = {
        "run_id": 1,
        "runs": {},
        "series": {"acc/a": {"s": [1, 2, 3], "v": [0.1, 0.9, 0.1]}, "acc/b": {"s": [1, 2, 3], "v": [0.5, 0.2, 0.6]}},
    }
    spec = {"mods": [{"name": "a", "color": "#111"}, {"name": "b", "color": "#222"}], "sids": {"acc": {}}}
    spec["sids"]["acc"] = {"a": "acc/a", "b": "acc/b"}
    spec["rows"] = [["acc", "dice"], ["grad_norm", "grad norm"]]
    fig = js("P.buildDominanceFigure(arg.spec, arg.data, {x: 'step'})", {"spec": spec, "data": data})
    assert fig["layout"]["xaxis"]["dtick"] == 1
    assert fig["layout"]["yaxis"]["categoryarray"] == ["grad norm", "dice"]  # the run's name for ε
    leaders = {t["name"]: t["x"] for t in fig["data"] if t["meta"]["metric"] == "acc"}
    assert leaders == {"a": [2], "b": [1, 3]}
