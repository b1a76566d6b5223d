"""Pure transforms: decoding, dominance (and its exact running tally), settings that differ, value parsing."""

from __future__ import annotations

import math

import pytest

from dashboard.configs import differing_rows, differing_settings
from dashboard.decode import Series, decode_value, parse_series
from dashboard.dominance import DominanceTally, dominance
from dashboard.form_values import check_setting, convert, parse_value_list


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


def test_dominance_tally_is_exact_across_reads_that_split_a_step() -> None:
    tally = DominanceTally("acc")
    # Step 3 of b arrives in the second read: judged then, not lost and not counted twice.
    tally.fold({"acc/a": Series([1, 2, 3], [0.5, 0.9, 0.4], [0, 0, 0]), "acc/b": Series([1, 2], [0.7, 0.6], [0, 0])})
    assert (tally.judged, tally.counts) == (2, {"b": 1, "a": 1})
    tally.fold({"acc/b": Series([3], [0.6], [0]), "acc/a": Series([4], [0.8], [0])})
    assert (tally.judged, tally.counts) == (3, {"b": 2, "a": 1})
    tally.fold({"acc/b": Series([4], [0.1], [0])})
    assert tally.counts == {"b": 2, "a": 2} and tally.now == ("a", pytest.approx(0.7))
    assert tally.describe() == "accuracy: a leads by +0.700 now (led 50% of steps)"
    assert tally.shares() == {"a": 0.5, "b": 0.5}


def test_form_values_refuse_nan_and_infinity() -> None:
    for text in ("nan", "NaN", "inf", "-Infinity", "1e999"):
        with pytest.raises(ValueError, match="not a finite number"):
            convert(text, "float")
        with pytest.raises(ValueError, match="not a finite number"):
            convert(text, "int")
    assert convert(" 1.5 ", "float") == 1.5 and convert("3", "int") == 3


def test_check_setting_gives_the_message_shown_beside_the_field() -> None:
    rho = {"name": "rho", "type": "float", "min": 0.0, "max": 100.0}
    assert check_setting(rho, "1.3") == (1.3, None)
    assert check_setting(rho, "nan") == (None, "'nan' is not a finite number")
    assert check_setting(rho, "-1") == (None, "-1 is outside [0, 100]")
    assert check_setting(rho, "") == (None, None)  # empty: the default applies
    views = {"name": "views", "type": "str", "multi_choices": ["fou", "kar", "mor"]}
    assert check_setting(views, ["kar", "mor"]) == ("kar,mor", None)
    assert check_setting(views, "kar,xyz") == (None, "unknown: xyz; allowed: fou, kar, mor")
    assert check_setting(views, []) == (None, "choose at least one")
    opt = {"name": "optimizer", "type": "str", "choices": ["adam", "sgd"]}
    assert check_setting(opt, "lbfgs") == (None, "'lbfgs' is not one of adam, sgd")
