"""Pure transforms: decoding, smoothing, symlog, dominance, settings that differ, value parsing."""

from __future__ import annotations

import math

import pytest

from dashboard.configs import differing_rows, differing_settings
from dashboard.decode import Series, decode_value, parse_series
from dashboard.dominance import dominance
from dashboard.form_values import parse_value_list
from dashboard.smoothing import EmaState, smooth
from dashboard.symlog import symlog, symlog_ticks


def test_debiased_ema_matches_hand_computed_values() -> None:
    # w = 0.5: s1 = 0.5 → 0.5/0.5 = 1; s2 = 0.25+1 = 1.25 → 1.25/0.75; s3 = 0.625+1.5 = 2.125 → 2.125/0.875
    out, st = smooth([1.0, 2.0, 3.0], 0.5)
    assert out == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    assert (st.last, st.count) == (pytest.approx(2.125), 3)


def test_ema_weight_zero_is_identity_and_first_point_is_unbiased() -> None:
    assert smooth([3.0, -1.0, 7.0], 0.0)[0] == [3.0, -1.0, 7.0]
    # Debiasing: the first smoothed value equals the first point for any weight (no pull towards 0).
    assert smooth([5.0], 0.99)[0] == pytest.approx([5.0])


def test_ema_skips_non_finite_points_without_poisoning_the_state() -> None:
    out, _ = smooth([1.0, math.nan, 3.0, math.inf], 0.5)
    assert out[0] == pytest.approx(1.0)
    assert math.isnan(out[1]) and math.isnan(out[3])
    assert out[2] == pytest.approx(1.75 / 0.75)  # s2 = 0.5·0.5 + 0.5·3 over 1 − 0.5²


def test_ema_continues_across_chunks_exactly() -> None:
    values = [0.3, 0.9, 0.1, 0.5, 0.7, 0.2]
    whole, _ = smooth(values, 0.8)
    head, st = smooth(values[:4], 0.8)
    tail, _ = smooth(values[4:], 0.8, EmaState(st.last, st.count))
    assert head + tail == pytest.approx(whole)


def test_ema_rejects_weight_one() -> None:
    with pytest.raises(ValueError, match="outside"):
        smooth([1.0], 1.0)


def test_symlog_values_and_ticks() -> None:
    assert symlog(0.0) == 0.0
    assert symlog(9.0) == pytest.approx(1.0)
    assert symlog(-99.0) == pytest.approx(-2.0)
    assert symlog(1e7 - 1) == pytest.approx(7.0)
    assert math.isnan(symlog(math.nan))
    vals, text = symlog_ticks(-50.0, 2e7)
    assert dict(zip(text, vals, strict=True))["1e7"] == pytest.approx(math.log10(1 + 1e7))
    assert "-100" in text and "0" in text and "1e8" in text
    assert vals == sorted(vals)


def test_decode_non_finite_strings() -> None:
    assert math.isnan(decode_value("NaN"))
    assert decode_value("Infinity") == math.inf and decode_value("-Infinity") == -math.inf
    with pytest.raises(ValueError, match="neither"):
        decode_value("nan?")
    s = parse_series({"series": {"a": {"steps": [1, 2], "values": [0.5, "NaN"], "times": [10.0, 11.0]}}})["a"]
    assert s.steps == [1, 2] and s.values[0] == 0.5 and math.isnan(s.values[1])
    assert s.after(1).steps == [2]


def test_dominance_by_accuracy_difference_and_gradient_ratio() -> None:
    series = {
        "acc/a": Series([1, 2, 3], [0.5, 0.9, 0.4], [0, 0, 0]),
        "acc/b": Series([1, 2], [0.7, 0.6], [0, 0]),  # step 3 incomplete: not judged
        "grad_norm/a": Series([1, 2], [1.0, 4.0], [0, 0]),
        "grad_norm/b": Series([1, 2], [2.0, 1.0], [0, 0]),
        "val/acc": Series([2], [0.8], [0]),
    }
    acc = dominance(series, "acc")
    assert acc.steps == [1, 2] and acc.leaders == ["b", "a"]
    assert acc.margins == pytest.approx([0.2, 0.3])
    grad = dominance(series, "grad_norm")
    assert grad.leaders == ["b", "a"] and grad.margins == pytest.approx([2.0, 4.0])
    assert grad.now() == ("a", pytest.approx(4.0))


def test_dominance_needs_two_modalities_and_finite_values() -> None:
    assert dominance({"acc/a": Series([1], [0.5], [0])}, "acc").steps == []
    d = dominance({"acc/a": Series([1], [math.nan], [0]), "acc/b": Series([1], [0.1], [0])}, "acc")
    assert d.steps == []


def test_only_differing_settings_are_listed() -> None:
    configs = {
        1: {"dataset": "synthetic", "method": "cggm", "rho": 1.0, "epochs": 3},
        2: {"dataset": "synthetic", "method": "cggm", "rho": 2.0, "epochs": 3},
        3: {"dataset": "synthetic", "method": "joint", "epochs": 3},
    }
    assert differing_settings(configs) == ["method", "rho"]
    rows = differing_rows(configs)
    assert rows == [
        {"setting": "method", "1": "cggm", "2": "cggm", "3": "joint"},
        {"setting": "rho", "1": "1", "2": "2", "3": "—"},
    ]
    assert differing_settings({1: {"a": 1}}) == []
    assert differing_settings({1: {"a": 1}, 2: {"a": 1}}) == []


def test_sweep_value_lists() -> None:
    assert parse_value_list("0.5, 1 1.3", "float") == [0.5, 1.0, 1.3]
    assert parse_value_list("1,2", "int") == [1, 2]
    assert parse_value_list("3,1; 1,3", "str") == ["3,1", "1,3"]
    with pytest.raises(ValueError, match="'x' is not a valid int"):
        parse_value_list("1, x", "int")
    with pytest.raises(ValueError, match="not a valid int"):
        parse_value_list("1.5", "int")
