"""Figure builders, the live-update state machine, and the pure table/form helpers."""

from __future__ import annotations

import copy
import csv
import io
import math

import plotly.graph_objects as go
import pytest

from cggm_core.config import catalog
from dashboard import figures, live
from dashboard.api import format_detail
from dashboard.decode import Series
from dashboard.dominance import Dominance
from dashboard.forms import build_configs, settings_for
from dashboard.live_state import LiveState, View
from dashboard.panels import panel_of
from dashboard.progress import Progress
from dashboard.smoothing import smooth
from dashboard.symlog import symlog
from dashboard.tables import final_rows, run_rows


def s(steps: list[int], values: list[float], t0: float = 100.0) -> Series:
    return Series(list(steps), list(values), [t0 + i for i in range(len(steps))])


ACC = {"acc/m0": s([1, 2, 3], [0.2, 0.6, 0.9]), "acc/m1": s([1, 2, 3], [0.3, 0.4, 0.5])}


def test_metric_figure_one_curve_per_modality() -> None:
    fig = figures.build_metric_figure(ACC, title="acc")
    assert [t.name for t in fig.data] == ["m0", "m1"]
    assert list(fig.data[0].x) == [1, 2, 3] and list(fig.data[0].y) == [0.2, 0.6, 0.9]
    assert isinstance(fig.data[0], go.Scatter)
    assert fig.layout.title.text == "acc"


def test_metric_figure_smoothing_adds_faint_raw_and_smoothed_traces() -> None:
    fig = figures.build_metric_figure(ACC, smoothing=0.5)
    assert [(t.meta["key"], t.meta["kind"]) for t in fig.data] == [
        ("acc/m0", "raw"),
        ("acc/m0", "smooth"),
        ("acc/m1", "raw"),
        ("acc/m1", "smooth"),
    ]
    assert list(fig.data[1].y) == pytest.approx(smooth([0.2, 0.6, 0.9], 0.5)[0])
    assert fig.data[0].opacity == 0.3 and fig.data[0].showlegend is False


def test_metric_figure_x_modes_log_scale_and_gaps() -> None:
    series = {"x/a": Series([5, 6, 7], [1.0, math.nan, 100.0], [1000.0, 1002.5, 1004.0])}
    rel = figures.build_metric_figure(series, x_mode="relative", t0=1000.0, log_y=True)
    assert list(rel.data[0].x) == [0.0, 2.5, 4.0]
    assert rel.data[0].y[1] is None  # NaN is a gap, its real value in customdata
    assert rel.data[0].customdata[1] == "NaN"
    assert rel.layout.yaxis.type == "log"
    wall = figures.build_metric_figure(series, x_mode="wall")
    assert wall.data[0].x[0].startswith("1970-01-01T00:16:40")
    with pytest.raises(ValueError, match="unknown x mode"):
        figures.build_metric_figure(series, x_mode="epochs")


def test_long_series_use_webgl() -> None:
    n = figures.WEBGL_MIN_POINTS
    fig = figures.build_metric_figure({"acc/a": Series(list(range(n)), [0.5] * n, [0.0] * n)})
    assert isinstance(fig.data[0], go.Scattergl)


def test_coefficient_figure_shows_blowups_and_negatives_on_symlog() -> None:
    coef = {
        "coef/m0": s([1, 2, 3, 4], [0.5, -2.0e7, 1.5, math.nan]),
        "coef/m1": s([1, 2, 3, 4], [1.5, 2.0e7, 0.5, 1.0]),
    }
    fig = figures.build_coefficient_figure(coef)
    y0 = fig.data[0].y
    assert y0[1] == pytest.approx(-math.log10(1 + 2.0e7))  # negative blow-up kept, with its sign
    assert y0[0] == pytest.approx(symlog(0.5))
    assert fig.data[0].customdata[1] == -2.0e7  # hover shows the real value
    assert "1e7" in fig.layout.yaxis.ticktext and "-1e7" in fig.layout.yaxis.ticktext
    title = fig.layout.title.text
    assert "|B|>100: 2 (25.0%)" in title and "B<0: 1 (12.5%)" in title and "non-finite: 1" in title


def test_dominance_figure_marks_each_leader_on_its_strip() -> None:
    acc = Dominance("acc", [1, 2, 3], ["m0", "m1", "m0"], [0.1, 0.2, 0.3])
    grad = Dominance("grad_norm", [1], ["m1"], [3.0])
    fig = figures.build_dominance_figure([acc, grad], ["m0", "m1"])
    by = {(t.y[0] if len(t.y) else None, t.name): t for t in fig.data}
    assert list(by[("accuracy", "m0")].x) == [1, 3]
    assert list(by[("accuracy", "m0")].customdata) == ["+0.100", "+0.300"]
    assert list(by[("grad norm", "m1")].customdata) == ["×3"]


def test_overlay_and_small_multiples_share_axes() -> None:
    runs = {"1: a": ACC, "2: b": {"acc/m0": s([1, 2], [0.1, 0.2]), "acc/m1": s([1, 2], [0.3, 0.3])}}
    ov = figures.build_overlay_figure({k: v["acc/m0"] for k, v in runs.items()}, title="acc/m0")
    assert [t.name for t in ov.data] == ["1: a", "2: b"]
    sm = figures.build_small_multiples_figure(runs, prefix="acc")
    assert len(sm.data) == 4
    assert [t.xaxis for t in sm.data] == ["x", "x", "x2", "x2"]
    assert sm.layout.yaxis2.matches == "y"  # shared y axis across the row
    assert [a.text for a in sm.layout.annotations] == ["1: a", "2: b"]


def test_parallel_coordinates_of_a_sweep() -> None:
    runs = [
        {"config": {"rho": 1.0, "variant": "paper"}, "metrics": {"val/acc": 0.7}},
        {"config": {"rho": 2.0, "variant": "stable"}, "metrics": {"val/acc": 0.8}},
        {"config": {"rho": 3.0, "variant": "paper"}, "metrics": {}},
    ]
    fig = figures.build_parallel_figure(runs, ["rho", "variant"], "val/acc")
    dims = fig.data[0].dimensions
    assert [d.label for d in dims] == ["rho", "variant", "val/acc"]
    assert list(dims[0].values) == [1.0, 2.0, 3.0]
    assert list(dims[1].ticktext) == ["paper", "stable"] and list(dims[1].values) == [0, 1, 0]
    assert math.isnan(dims[2].values[2])


def test_csv_export_writes_what_is_shown_with_real_values() -> None:
    fig = figures.build_coefficient_figure({"coef/m0": s([1, 2], [0.5, -2.0e7])}, smoothing=0.0)
    rows = list(csv.reader(io.StringIO(figures.figure_to_csv(fig.to_plotly_json()))))
    assert rows == [["trace", "x", "y"], ["coef/m0", "1", "0.5"], ["coef/m0", "2", "-2e7"]]
    smoothed = figures.build_metric_figure(ACC, smoothing=0.5).to_plotly_json()
    names = {r[0] for r in csv.reader(io.StringIO(figures.figure_to_csv(smoothed)))}
    assert "acc/m0 (smoothed)" in names and "acc/m0" in names


# ---- live updates --------------------------------------------------------------------------------

VIEW = View()


def test_live_update_appends_only_new_points_and_drops_repeats() -> None:
    _figs, _dom, state = live.initial_render(ACC, VIEW, t0=100.0)
    assert state.last == {"acc/m0": 3, "acc/m1": 3}
    state = LiveState.from_json(copy.deepcopy(state.to_json()))  # what the page's store gives back
    new = {"acc/m0": s([3, 4, 5], [0.9, 0.95, 0.97]), "acc/m1": s([4], [0.55])}
    ops, dom_ops = live.apply_update(state, new)
    assert ops["acc"] == [
        ("extend", 0, {"x": [4, 5], "y": [0.95, 0.97], "customdata": [0.95, 0.97]}),
        ("extend", 1, {"x": [4], "y": [0.55], "customdata": [0.55]}),
    ]
    assert state.last == {"acc/m0": 5, "acc/m1": 4}
    # Step 4 is complete for both modalities: m0 leads by 0.40; step 5 waits for m1.
    assert dom_ops == [("extend", 0, {"x": [4], "y": ["accuracy"], "customdata": ["+0.400"]})]
    again, _ = live.apply_update(state, new)  # the same read twice appends nothing
    assert again["acc"] == []
    # The buffered step 5 survives the store's JSON round trip and completes with m1's point.
    state = LiveState.from_json(state.to_json())
    _, dom_ops = live.apply_update(state, {"acc/m1": s([5], [0.5])})
    assert dom_ops == [("extend", 0, {"x": [5], "y": ["accuracy"], "customdata": ["+0.470"]})]


def test_live_update_continues_the_smoothed_curve_exactly() -> None:
    view = View(smoothing=0.6)
    full = {"acc/m0": s([1, 2, 3, 4], [0.2, 0.6, 0.9, 0.4])}
    _, _, state = live.initial_render({"acc/m0": s([1, 2], [0.2, 0.6])}, view, t0=None)
    state = LiveState.from_json(state.to_json())
    ops, _ = live.apply_update(state, {"acc/m0": s([3, 4], [0.9, 0.4])})
    smooth_op = next(op for op in ops["acc"] if op[1] == 1)
    assert smooth_op[2]["y"] == pytest.approx(smooth(full["acc/m0"].values, 0.6)[0][2:])


def test_live_update_adds_a_trace_for_a_new_key_and_tracks_progress() -> None:
    _, _, state = live.initial_render(ACC, VIEW, t0=None)
    ops, _ = live.apply_update(state, {"val/acc": s([4], [0.8]), "epoch": s([4], [1.0]), "coef/m0": s([4], [-3.0e7])})
    assert ops["val"][0][0] == "add" and ops["val"][0][1]["meta"]["key"] == "val/acc"
    assert state.plans["val"] == [["val/acc", "raw"]]
    layout_ops = {op[1]: op[2] for op in ops["coef"] if op[0] == "layout"}
    assert "B<0: 1" in layout_ops["title.text"] and "-1e7" in layout_ops["yaxis.ticktext"]
    assert state.progress == Progress(epoch=1, epoch1_step=4, step=4, epoch_last=4)
    assert state.progress.fraction({"epochs": 3}) == (pytest.approx(4 / 12), "epoch 1/3 · step 4/12")


def test_progress_before_the_first_epoch_uses_train_size() -> None:
    frac, text = Progress(epoch=0, step=2).fraction({"epochs": 2, "train_size": 256, "batch_size": 64})
    assert frac == pytest.approx(2 / 8) and text == "epoch 0/2 · step 2/8"


def test_fetch_groups_read_each_key_from_its_own_last_step() -> None:
    state = LiveState(view=VIEW, t0=None, plans={}, last={"acc/m0": 10, "acc/m1": 10, "val/acc": 8})
    groups = live.fetch_groups(state, ["acc/m0", "acc/m1", "val/acc", "cos/m0", "test/acc", "epoch"])
    assert groups == [(None, ["cos/m0", "epoch"]), (8, ["val/acc"]), (10, ["acc/m0", "acc/m1"])]


def test_panels_route_every_key_family() -> None:
    assert panel_of("acc/m0") == "acc"
    assert panel_of("grad_norm/m0") == "grad_norm"
    assert panel_of("coef/m1") == "coef"
    assert panel_of("loss/gm") == "losses" and panel_of("train/loss") == "losses"
    assert panel_of("val/contrib/m0") == "contrib" and panel_of("val/acc") == "val"
    assert panel_of("probe/acc/m0") is None


# ---- tables, forms, API errors --------------------------------------------------------------------


def test_run_rows_link_by_id_and_keep_user_text_as_text() -> None:
    run = {
        "id": 7,
        "name": "<script>x</script>",
        "status": "finished",
        "dataset": "synthetic",
        "method": "cggm",
        "config": {"dataset": "synthetic", "method": "cggm", "rho": 1.3, "lam": 0.2, "epochs": 3, "seed": 0},
        "tags": ["a", "b"],
        "created_at": 0,
        "started_at": 10.0,
        "ended_at": 75.0,
        "summary": {"metric": "acc", "final": {"val/acc": 0.81, "val/contrib/m0": 0.3, "val/contrib/m1": 0.1}},
    }
    catalog = {"methods": [{"name": "cggm", "settings": [{"name": "rho"}, {"name": "lam"}]}]}
    (row,) = run_rows([run], catalog)
    assert row["id"] == "[7](/runs/7)" and row["name"] == "<script>x</script>"
    assert row["settings"] == "rho=1.3 lam=0.2 epochs=3 seed=0"
    assert row["final"] == "acc 0.8100" and row["dominant"] == "m0" and row["duration"] == "0:01:05"
    assert final_rows([run])[0] == {"metric": "val/acc", "7": "0.8100"}


def test_form_settings_come_from_the_catalog() -> None:
    names = [s["name"] for _, s in settings_for(catalog(), "synthetic", "cggm")]
    assert "train_size" in names and "rho" in names and "epochs" in names
    assert "views" not in names  # mfeat's setting


def test_sweep_builds_the_cartesian_product_and_drops_other_methods_settings() -> None:
    base = {"dataset": "synthetic", "method": "cggm", "rho": 1.3, "epochs": 3}
    kinds = {"rho": "float", "epochs": "int"}
    runs = build_configs(base, kinds, [("rho", "1, 2"), ("epochs", "3 4")], None, {"cggm": ["rho"]})
    assert [c for _, c in runs] == [
        {**base, "rho": 1.0, "epochs": 3},
        {**base, "rho": 1.0, "epochs": 4},
        {**base, "rho": 2.0, "epochs": 3},
        {**base, "rho": 2.0, "epochs": 4},
    ]
    assert runs[1][0] == "rho=1 epochs=4"
    methods = build_configs(base, kinds, [(None, None)], ["cggm", "joint"], {"cggm": ["rho"], "joint": []})
    assert [c for _, c in methods] == [base, {"dataset": "synthetic", "method": "joint", "epochs": 3}]
    with pytest.raises(ValueError, match="sweep values of rho"):
        build_configs(base, kinds, [("rho", "a")], None, {})


def test_validation_errors_are_made_readable() -> None:
    detail = [{"type": "value_error", "loc": ["body", "config"], "msg": "epochs=0 is below the minimum 1"}]
    assert format_detail(detail) == "config: epochs=0 is below the minimum 1"
    assert format_detail("run 9 not found") == "run 9 not found"
