"""What the pages draw and decide, as pure functions: families, specs, groups, balance, digest, forms, tables."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from cggm_core.config import catalog
from dashboard import figures
from dashboard.api import ApiClient
from dashboard.balance import best_balanced, unimodal_ceilings, weak_modality
from dashboard.colors import MODALITY_COLORS, RUN_COLORS
from dashboard.compare_view import final_table, overlay, small_multiples
from dashboard.decode import Series
from dashboard.digest import RunDigest
from dashboard.families import Families
from dashboard.forms import build_configs, sections, seed_values, settings_for, visible
from dashboard.groups import SEED_REPEATS, group_runs, grouping_options, stat
from dashboard.live_session import KEEP_CURSORS, Cursor, Sessions
from dashboard.payload import encode_delta, encode_series
from dashboard.progress import run_timing
from dashboard.run_view import dominance_spec, downsample_note, drawn_keys, run_panels
from dashboard.tables import run_rows
from dashboard.text import plotly_text

FAMILIES = Families(catalog())


def s(steps: list[int], values: list[float]) -> Series:
    return Series(list(steps), list(values), [100.0 + i for i in range(len(steps))])


# ---- key families -----------------------------------------------------------------------------------


def test_panels_come_from_the_catalog_families_with_a_catch_all() -> None:
    keys = ["acc/m0", "acc/m1", "coef/m0", "cos/m1", "train/loss", "loss/gm", "val/acc", "val/acc/m0"]
    keys += ["ogm/score/m0", "mystery/weight/m0", "probe/acc/m0", "test/acc", "epoch"]
    groups = [(f.name, ks) for f, ks in FAMILIES.group(keys)]
    assert groups == [
        ("acc", ["acc/m0", "acc/m1"]),
        ("coef", ["coef/m0"]),
        ("cos", ["cos/m1"]),
        ("losses", ["loss/gm", "train/loss"]),
        ("val", ["val/acc"]),  # the fused metric before the per-modality ones
        ("val_aux", ["val/acc/m0"]),
        ("ogm_score", ["ogm/score/m0"]),  # a method's own diagnostics: drawn, not dropped
        ("other:mystery", ["mystery/weight/m0"]),  # unknown family: its own panel, last
    ]
    assert FAMILIES.info("mystery/weight/m0").family.declared is False
    assert drawn_keys(FAMILIES, keys) == sorted(set(keys) - {"probe/acc/m0", "test/acc"})


def test_a_backend_without_families_gets_catch_all_panels() -> None:
    old = Families({"datasets": [], "methods": []})
    assert [f.name for f, _ in old.group(["acc/m0", "acc/m1", "train/loss"])] == ["other:acc", "other:train"]


def test_direction_of_better_from_family_or_task_metric() -> None:
    assert FAMILIES.better("val/acc") == "max"
    assert FAMILIES.better("val/loss") == "min"
    assert FAMILIES.better("test/loss") == "min" and FAMILIES.better("test/acc") == "max"
    assert FAMILIES.better("probe/acc/m0") == "max"


# ---- run page specs ----------------------------------------------------------------------------------


def test_each_modality_keeps_one_colour_in_every_panel() -> None:
    keys = ["acc/m0", "acc/m1", "acc/m2", "grad_norm/m2", "coef/m1", "val/acc/m2", "val/contrib/m0"]
    colour: dict[str, set[str]] = {}
    for spec in run_panels(FAMILIES, keys):
        for t in spec["traces"]:
            colour.setdefault(t["name"], set()).add(t["color"])
    assert colour == {"m0": {MODALITY_COLORS[0]}, "m1": {MODALITY_COLORS[1]}, "m2": {MODALITY_COLORS[2]}}
    # A panel built from one key (the live path used to do that) still gets the modality's own colour.
    (only,) = run_panels(FAMILIES, [*keys[:3], "grad_norm/m2"])[1:2]
    assert only["traces"][0]["color"] == MODALITY_COLORS[2]


def test_user_text_is_escaped_for_plotly() -> None:
    assert plotly_text('<a href="http://x">y</a> & co') == '&lt;a href="http://x"&gt;y&lt;/a&gt; &amp; co'
    (spec,) = run_panels(FAMILIES, ["<b>k</b>/x"])
    assert spec["traces"][0]["name"] == "&lt;b&gt;k&lt;/b&gt;/x"
    assert "<b>" not in spec["title"]
    dom = dominance_spec(FAMILIES, ["acc/<i>m", "acc/b"])
    assert [m["name"] for m in dom["mods"]] == ["&lt;i&gt;m", "b"]


def test_downsample_note_exact_or_estimated() -> None:
    full = Series(list(range(1, 1501)), [0.0] * 1500, [0.0] * 1500)
    assert downsample_note(Series([1, 2], [0, 0], [0, 0]), 1500, 1) == ""
    steps = [*(1 + 66 * i for i in range(1500)), 100_000]  # min-max buckets of a 100,000-step series
    spread = Series(steps, [0.0] * 1501, [0.0] * 1501)
    assert downsample_note(spread, 1500, 1) == "downsampled to 1,501 of ~100,000 points"
    assert downsample_note(Series(steps[:1000], [0.0] * 1000, [0.0] * 1000), 1500, 1).startswith(
        "downsampled to 1,000 of ~"
    )
    assert downsample_note(Series(list(range(1, 1001)), [0.0] * 1000, [0.0] * 1000), 1500, 1) == ""  # all of them
    assert downsample_note(Series(steps[:1000], [0.0] * 1000, [0.0] * 1000), 1500, 1, per_step=False) == ""
    assert downsample_note(Series(full.steps, full.values, full.times, count=6000), 1500, 1) == (
        "downsampled to 1,500 of 6,000 points"
    )


def test_lost_run_elapsed_stops_at_its_last_heartbeat_and_says_why() -> None:
    run = {"status": "lost", "started_at": 1000.0, "heartbeat_at": 1065.0, "worker": "gpu-7"}
    text = run_timing(run, 0.5, now=5000.0)
    assert text.startswith("elapsed 0:01:05 · lost: no heartbeat from gpu-7 since ")
    assert "(1:05:35 ago)" in text and "ETA" not in text
    assert run_timing({**run, "status": "running", "heartbeat_at": None}, 0.5, now=1100.0).startswith(
        "elapsed 0:01:40 · ETA 0:01:40"
    )
    (row,) = run_rows([{**run, "id": 1, "name": "x", "created_at": 0}], {"methods": []})
    assert row["duration"] == "0:01:05"


# ---- payloads and the live session ------------------------------------------------------------------


def test_delta_groups_keys_that_share_steps_and_rounds_values() -> None:
    new = {"acc/m0": s([5], [0.123456789123]), "acc/m1": s([5], [math.nan]), "val/acc": s([4, 5], [0.5, 0.6])}
    groups = encode_delta(new)
    assert groups == [
        {"s": [5], "t": [100.0], "v": {"acc/m0": [0.12345679], "acc/m1": ["NaN"]}},
        {"s": [4, 5], "t": [100.0, 101.0], "v": {"val/acc": [0.5, 0.6]}},
    ]
    assert encode_series(s([1], [math.inf]), 3) == {"s": [1], "v": ["Infinity"], "t": [100.0], "r": 3}
    assert len(json.dumps(encode_delta({f"acc/m{i}": s([2001], [0.51234]) for i in range(20)}))) < 600


def test_a_tick_starts_from_what_the_page_acknowledged() -> None:
    sessions = Sessions()
    sess = sessions.start(7, Cursor(last={"acc/m0": 10}))
    assert sessions.get(sess.token, 7) is sess and sessions.get(sess.token, 8) is None
    one = sess.commit(Cursor(last={"acc/m0": 11}))
    two = sess.commit(Cursor(last={"acc/m0": 12}))
    # The page applied response 1, not 2 (Dash dropped it): the next tick starts from 1's cursor.
    assert sess.base(one).last == {"acc/m0": 11} and sess.base(two).last == {"acc/m0": 12}
    for _ in range(KEEP_CURSORS):
        sess.commit(Cursor())
    assert sess.base(0) is None  # too far behind: the page renders from scratch


# ---- the digest: exact statistics at full resolution --------------------------------------------------


class Reader:
    """An in-memory `metrics` reader (the digest's only dependency), recording the reads it gets."""

    def __init__(self, series: dict[str, Series]) -> None:
        self.series = series
        self.reads: list[tuple[tuple[str, ...], int | None]] = []

    def metrics(self, run_id, keys=None, since_step=None, max_points=None, timeout_s=None):
        self.reads.append((tuple(keys or ()), since_step))
        out = {}
        for k in keys or self.series:
            if k in self.series:
                out[k] = self.series[k].after(since_step) if since_step is not None else self.series[k]
        return out


def test_digest_counts_every_blowup_and_reads_only_what_is_new() -> None:
    series = {
        "coef/m0": s([1, 2, 3, 4], [0.5, -2.0e7, 1.5, math.nan]),
        "coef/m1": s([1, 2, 3, 4], [1.5, 2.0e7, 0.5, 1.0]),
        "acc/m0": s([1, 2], [0.2, 0.6]),
        "acc/m1": s([1, 2], [0.3, 0.4]),
    }
    reader = Reader(series)
    d = RunDigest(1)
    assert d.refresh(reader, list(series), finished=False)
    assert (d.coef.total, d.coef.blowups, d.coef.negatives, d.coef.nonfinite) == (8, 2, 1, 1)
    assert d.dominance["acc"].counts == {"m1": 1, "m0": 1}
    series["acc/m0"] = s([1, 2, 3], [0.2, 0.6, 0.9])
    series["acc/m1"] = s([1, 2, 3], [0.3, 0.4, 0.5])
    reader.reads.clear()
    d.refresh(reader, list(series), finished=True)
    assert all(since is not None for _, since in reader.reads)  # incremental
    assert d.dominance["acc"].counts == {"m1": 1, "m0": 2} and d.coef.total == 8
    assert not d.refresh(reader, list(series), finished=True)  # a finished run's digest is final
    assert d.to_json()["coef"].startswith("|B|>100: 2 (25.0%), B<0: 1 (12.5%), non-finite: 1 of 8")


# ---- compare: groups, overlays, final table, balance -------------------------------------------------


def run(rid: int, method: str, seed: int, probe: dict[str, float] | None = None, **config) -> dict:
    summary = None
    if probe is not None:
        summary = {
            "metric": "acc",
            "modalities": sorted(probe),
            "probe": {f"probe/acc/{m}": v for m, v in probe.items()},
            "final": {"val/acc": 0.5 + rid / 100, "val/loss": 1.0 - rid / 100},
        }
    return {
        "id": rid,
        "name": f"r{rid}",
        "status": "finished",
        "config": {"dataset": "mfeat", "views": "kar,mor", "method": method, "seed": seed, **config},
        "summary": summary,
    }


def test_seed_repeats_group_runs_that_differ_only_in_seed() -> None:
    runs = [run(1, "cggm", 0, rho=1.3), run(2, "cggm", 1, rho=1.3), run(3, "joint", 0), run(4, "cggm", 0, rho=2.0)]
    groups = group_runs(runs, SEED_REPEATS)
    assert [g.run_ids for g in groups] == [(1, 2), (3,), (4,)]
    assert [g.label for g in groups] == ["cggm rho=1.3", "joint", "cggm rho=2"]
    assert [g.run_ids for g in group_runs(runs, "method")] == [(1, 2, 4), (3,)]
    assert grouping_options([r["config"] for r in runs]) == [SEED_REPEATS, "method", "rho"]
    st = stat([0.5, 0.7, None, math.nan])
    assert st is not None and (st.mean, st.n) == (pytest.approx(0.6), 2) and st.text() == "0.6000 ± 0.1414 (n=2)"


def test_overlays_per_run_or_per_group_band() -> None:
    runs = [run(1, "cggm", 0), run(2, "cggm", 1), run(3, "joint", 0)]
    per_run = overlay(FAMILIES, "val/acc", runs, None)
    assert [t["color"] for t in per_run["traces"]] == RUN_COLORS[:3]
    grouped = overlay(FAMILIES, "val/acc", runs, group_runs(runs, SEED_REPEATS))
    assert [b["sids"] for b in grouped["bands"]] == [["1|val/acc", "2|val/acc"], ["3|val/acc"]]
    assert all(t["hidden"] for t in grouped["traces"])
    sm = small_multiples(FAMILIES, runs, {1: ["acc/kar", "acc/mor"], 2: ["acc/kar"], 3: []})
    assert sm[0]["columns"] == ["1: r1", "2: r2", "3: r3"]
    assert [(t["sid"], t["column"], t["color"]) for t in sm[0]["traces"]] == [
        ("1|acc/kar", 0, MODALITY_COLORS[0]),
        ("1|acc/mor", 0, MODALITY_COLORS[1]),
        ("2|acc/kar", 1, MODALITY_COLORS[0]),
    ]


def test_final_table_marks_the_best_value_by_its_direction() -> None:
    runs = [run(1, "cggm", 0, {"kar": 0.9}), run(2, "joint", 0, {"kar": 0.8}), run(3, "joint", 1, {"kar": 0.8})]
    rows, _, styles = final_table(FAMILIES, runs, None)
    by_metric = {r["metric"]: i for i, r in enumerate(rows)}
    best = {(st["if"]["row_index"], st["if"]["column_id"]) for st in styles}
    assert (by_metric["val/acc"], "3") in best  # 0.53 > 0.52 > 0.51: higher is better
    assert (by_metric["val/loss"], "3") in best  # 0.97 < 0.98: lower is better
    assert (by_metric["probe/acc/kar"], "1") in best
    grows, gcolumns, _ = final_table(FAMILIES, runs, group_runs(runs, SEED_REPEATS))
    assert [c["name"] for c in gcolumns] == ["metric", "cggm", "joint"]
    assert grows[by_metric["val/acc"]]["g1"] == "0.5250 ± 0.0071 (n=2)"


def test_balance_weak_modality_best_run_and_unimodal_ceiling() -> None:
    runs = [run(1, "cggm", 0, {"kar": 0.95, "mor": 0.711}), run(2, "joint", 0, {"kar": 0.97, "mor": 0.60})]
    assert weak_modality(runs) == "mor"
    assert [b.run_id for b in best_balanced(runs)] == [1, 2]
    alone = [
        run(10, "unimodal", 0, {"kar": 0.2, "mor": 0.751}, modality="mor"),
        run(11, "unimodal", 1, {"kar": 0.2, "mor": 0.751}, modality="mor"),
        run(12, "unimodal", 0, {"kar": 0.97, "mor": 0.1}, modality="kar"),
        run(13, "unimodal", 0, {"mor": 0.99}, modality="mor", views="kar,mor,fou"),  # other data: not a ceiling
    ]
    ceilings = {c.modality: c for c in unimodal_ceilings(runs[0], alone, ["views"])}
    assert ceilings["mor"].text() == "mor: 0.711 jointly vs 0.751 alone, n=2, −4.0 points"
    assert ceilings["mor"].alone_runs == (10, 11)
    assert ceilings["kar"].text() == "kar: 0.950 jointly vs 0.970 alone, −2.0 points"


def test_parallel_coordinates_of_a_method_sweep_have_no_none_axis() -> None:
    runs = [
        {"config": {"method": "cggm", "rho": 1.0}, "metrics": {"val/acc": 0.7}},
        {"config": {"method": "ogm_ge"}, "metrics": {"val/acc": 0.8}},
        {"config": {"method": "joint"}, "metrics": {}},
    ]
    fig = figures.build_parallel_figure(runs, ["method", "rho"], "val/acc")
    method, rho, metric = fig.data[0].dimensions
    assert list(method.ticktext) == ["cggm", "joint", "ogm_ge"] and list(method.values) == [0, 2, 1]
    assert list(rho.ticktext) == ["1", "—"] and list(rho.values) == [0, 1, 1]
    assert "None" not in json.dumps(fig.to_plotly_json()["data"][0]["dimensions"])
    assert math.isnan(metric.values[2])


# ---- forms ------------------------------------------------------------------------------------------


def test_form_sections_fold_advanced_settings_and_hide_what_the_variant_ignores() -> None:
    cat = catalog()
    settings = settings_for(cat, "synthetic", "cggm")
    secs = {
        title: ([x["name"] for x in items], is_open)
        for title, items, is_open in sections(settings, "synthetic", "cggm")
    }
    assert secs["Training"][1] and not secs["Advanced"][1]
    assert "epochs" in secs["Training"][0] and "clip" in secs["Advanced"][0]
    eps = next(x for _, x in settings if x["name"] == "slope_window")
    assert not visible(eps, {"variant": "paper"}) and visible(eps, {"variant": "stable"})


def test_seed_repeats_multiply_a_sweep_and_the_count_is_bounded() -> None:
    base = {"dataset": "synthetic", "method": "cggm", "rho": 1.3}
    runs = build_configs(base, {"rho": "float"}, [("rho", "1, 2")], None, {}, seed_values("2"))
    assert [(c["rho"], c["seed"]) for _, c in runs] == [(1.0, 0), (1.0, 1), (1.0, 2), (2.0, 0), (2.0, 1), (2.0, 2)]
    assert runs[1][0] == "rho=1 seed=1"
    with pytest.raises(ValueError, match="the sweep makes 150 runs"):
        build_configs(base, {"rho": "float"}, [("rho", " ".join(map(str, range(75))))], None, {}, seed_values("1"))
    with pytest.raises(ValueError, match="not a whole number"):
        seed_values("two")


# ---- the API client: repeated keys= where the backend takes them (issue 8, item 8) --------------------


def schema_backend(keys_schema: dict) -> tuple[ApiClient, list[httpx.Request]]:
    """A client on an httpx MockTransport standing in for a backend version that is not in this tree."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/openapi.json":
            params = [{"name": "keys", "in": "query", "schema": keys_schema}]
            return httpx.Response(200, json={"paths": {"/api/runs/{run_id}/metrics": {"get": {"parameters": params}}}})
        keys = request.url.params.get_list("keys")
        series = {k: {"steps": [1], "values": [0.5], "times": [0.0]} for part in keys for k in part.split(",")}
        return httpx.Response(200, json={"series": series})

    client = ApiClient("http://backend")
    client._http = httpx.Client(base_url="http://backend", transport=httpx.MockTransport(handle))
    return client, seen


def test_metrics_keys_repeated_for_a_backend_that_takes_them() -> None:
    client, seen = schema_backend({"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]})
    got = client.metrics(1, keys=["a,b", "c"])
    assert seen[-1].url.params.get_list("keys") == ["a,b", "c"]
    assert set(got) == {"a", "b", "c"}  # this stand-in splits; the point is what was sent


def test_metrics_keys_comma_joined_for_a_backend_that_splits_them() -> None:
    client, seen = schema_backend({"anyOf": [{"type": "string"}, {"type": "null"}]})
    client.metrics(1, keys=["a", "b", "x,y"])
    assert seen[-1].url.params.get_list("keys") == ["a,b"]  # 'x,y' cannot round-trip here: left out
    client.metrics(1, keys=["a"])
    assert sum(r.url.path == "/openapi.json" for r in seen) == 1  # asked once


def test_runs_rows_hold_numbers_and_only_the_settings_a_variant_uses() -> None:
    run = {
        "id": 7,
        "name": "<script>x</script>",
        "status": "finished",
        "config": {
            "dataset": "synthetic",
            "method": "cggm",
            "variant": "paper",
            "rho": 1.3,
            "eps_ema": 0.9,
            "epochs": 3,
        },
        "created_at": 0,
        "started_at": 10.0,
        "ended_at": 75.0,
        "summary": {"metric": "acc", "final": {"val/acc": 0.81, "val/contrib/m0": 0.3, "val/contrib/m1": 0.1}},
    }
    (row,) = run_rows([run], catalog())
    assert row["id"] == "[7](/runs/7)" and row["name"] == "<script>x</script>"
    assert row["settings"] == "variant=paper rho=1.3 epochs=3"  # eps_ema: only `stable` reads it
    assert (row["metric"], row["final"], row["test"], row["dominant"]) == ("acc", 0.81, None, "m0")
    assert row["duration"] == "0:01:05"


# ---- a chart before the browser draws it ----------------------------------------------------------


def test_the_placeholder_figure_has_a_title_and_no_axes() -> None:
    """What the server puts in a chart before the browser draws it (dashboard.figures)."""
    from dashboard.components import chart_panel

    panel = chart_panel("run", "run-panel-acc", scale="linear", csv_href=None, title="acc/* — aux accuracy")
    graph = next(c for c in panel.children if getattr(c, "figure", None) is not None)
    layout = json.loads(json.dumps(graph.figure))["layout"]
    assert layout["title"]["text"] == "acc/* — aux accuracy"
    assert layout["xaxis"]["visible"] is False and layout["yaxis"]["visible"] is False
    assert [a["text"] for a in layout["annotations"]] == ["drawing…"]


def test_eps_is_named_for_the_runs_task_in_the_dominance_readout() -> None:
    from dashboard.run_view import eps_label

    cat = catalog()
    assert eps_label({"config": {"dataset": "synthetic_seg"}}, cat) == "dice"  # running: the dataset's task
    assert eps_label({"config": {"dataset": "synthetic", "task": "regression"}}, cat) == "sign_acc"
    assert eps_label({"config": {"dataset": "synthetic"}}, cat) == "accuracy"
    assert eps_label({"config": {"dataset": "ext"}, "summary": {"batch_metric": "dice"}}, cat) == "dice"
    assert eps_label({"config": {"dataset": "unknown"}}, cat) == "accuracy"  # an external run
    spec = dominance_spec(FAMILIES, ["acc/a", "acc/b"], "dice")
    assert spec["rows"] == [["acc", "dice"], ["grad_norm", "grad norm"]]
