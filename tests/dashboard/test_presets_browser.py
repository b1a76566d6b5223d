"""The New run form's presets (issue 11, item 4), in real headless Chromium against a real backend and
dashboard (`bare_stack`: no worker, so a posted run stays queued and its stored config is read back).

The preset recipes are cggm_core.presets' own (the BraTS and IEMOCAP ones); the backend resolves
the posted job, so the stored config is what a worker would train.
"""

from __future__ import annotations

from typing import Any

import pytest

from cggm_core.presets import PRESETS

from .conftest import Stack
from .pagekit import dom_id, wait_for

pytestmark = pytest.mark.browser


def setting(name: str) -> Any:
    return dom_id(name=name, type="setting")


def choose(page: Any, selector: str, option: str) -> None:
    """Open a Dash dropdown and click one of its options by its exact text."""
    page.locator(selector).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_for(lambda: page.locator(selector).inner_text().strip() == option, 20, f"{selector} to show {option}")


def field(page: Any, name: str) -> str:
    """A setting's value as the form shows it (a text field's text or a dropdown's label)."""
    loc = page.locator(setting(name))
    tag = loc.evaluate("e => e.tagName")
    return loc.input_value() if tag == "INPUT" else loc.inner_text().strip()


def badge(page: Any, name: str) -> str:
    return page.locator(dom_id(name=name, type="setting-preset")).inner_text().strip()


def preset_options(page: Any) -> list[str]:
    page.locator("#new-preset").click()
    options = [t.strip() for t in page.locator("[role='option']").all_inner_texts()]
    page.keyboard.press("Escape")
    return options


def offers(page: Any, expected: list[str]) -> None:
    """The preset dropdown comes to offer exactly `expected` (its options follow the dataset and method)."""
    seen: list[list[str]] = []

    def now() -> bool:
        seen.append(preset_options(page))
        return seen[-1] == expected

    try:
        wait_for(now, 20, f"the presets {expected}", interval_s=0.3)
    except AssertionError:
        raise AssertionError(f"the preset dropdown offered {seen[-1]}, not {expected}") from None


def test_a_preset_fills_the_form_an_override_wins_and_the_run_carries_it(bare_stack: Stack, page: Any) -> None:
    brats = PRESETS["brats"]
    assert brats.trainer["lr"] == 1e-2 and brats.methods["cggm"] == {"rho": 1.0, "lam": 0.1}
    page.goto(f"{bare_stack.ui}/new")
    page.locator(setting("epochs")).wait_for()
    choose(page, "#new-dataset", "brats")
    choose(page, "#new-method", "cggm")
    page.locator(setting("lam")).wait_for()
    assert field(page, "lam") == "0.2" and badge(page, "lam") == ""  # the method's default, no preset yet
    # This data set's recipe and CGGM's own (for any data set); no other method's.
    offers(page, ["brats", "cggm-official"])
    choose(page, "#new-preset", "brats")
    wait_for(lambda: field(page, "optimizer") == "sgd", 20, "the preset's optimizer in the form")
    assert "official BraTS 2021 recipe" in page.locator("#new-preset-help").inner_text()
    # Trainer, method and advanced values all filled from the preset, and marked so.
    expected = {"lr": "0.01", "epochs": "75", "scheduler": "warmup_cosine", "lam": "0.1", "rho": "1", "clip": "0"}
    for name, text in expected.items():
        assert field(page, name) == text, name
        assert badge(page, name) == "from preset brats", name
        assert "from-preset" in (page.locator(dom_id(name=name, type="setting-row")).get_attribute("class") or "")
    assert badge(page, "seed") == ""  # a setting the preset leaves alone
    # The user overrides one of them: the mark says so, with the preset's value beside.
    page.locator(setting("lr")).fill("0.005")
    wait_for(lambda: badge(page, "lr") == "yours (preset brats: 0.01)", 20, "the override's mark")
    page.locator("#new-name").fill("preset-brats")
    page.click("#new-submit")
    link = page.get_by_role("link", name="preset-brats")
    link.wait_for()
    run_id = int(link.get_attribute("href").rsplit("/", 1)[1])
    config = bare_stack.run(run_id)["config"]
    assert config["preset"] == "brats"
    assert config["lr"] == 0.005  # the override won
    assert (config["optimizer"], config["epochs"], config["scheduler"]) == ("sgd", 75, "warmup_cosine")
    assert (config["rho"], config["lam"], config["clip"]) == (1.0, 0.1, 0.0)


def test_changing_the_dataset_clears_a_preset_that_no_longer_fits(bare_stack: Stack, page: Any) -> None:
    page.goto(f"{bare_stack.ui}/new")
    page.locator(setting("epochs")).wait_for()
    choose(page, "#new-dataset", "brats")
    choose(page, "#new-method", "cggm")
    choose(page, "#new-preset", "brats")
    wait_for(lambda: field(page, "optimizer") == "sgd", 20, "the preset applied")
    page.locator(setting("epochs")).fill("3")  # the user's, kept across the change
    wait_for(lambda: badge(page, "epochs").startswith("yours"), 20, "the override's mark")
    choose(page, "#new-dataset", "iemocap")
    wait_for(lambda: page.locator("#new-preset").inner_text().strip() != "brats", 20, "the preset cleared")
    wait_for(lambda: page.locator("#new-preset-help").inner_text() == "", 20, "the preset's help gone")
    # What the preset filled goes back to the defaults; what the user typed stays.
    wait_for(lambda: field(page, "optimizer") == "adam", 20, "the default optimizer again")
    assert field(page, "lam") == "0.2" and field(page, "lr") == "0.001" and badge(page, "lr") == ""
    assert field(page, "epochs") == "3"
    # IEMOCAP's preset sets its transformer's sizes as well (the model's values apply: transformer).
    assert page.locator("#new-model").inner_text().strip() == "transformer"
    offers(page, ["iemocap", "cggm-official"])
    choose(page, "#new-preset", "iemocap")
    wait_for(lambda: field(page, "enc_layers") == "4", 20, "the preset's encoder depth")
    assert badge(page, "enc_layers") == "from preset iemocap" and field(page, "fusion_layers") == "2"
    assert field(page, "epochs") == "30"  # choosing a preset fills every field it sets
    page.locator("#new-name").fill("preset-iemocap")
    page.click("#new-submit")
    link = page.get_by_role("link", name="preset-iemocap")
    link.wait_for()
    run_id = int(link.get_attribute("href").rsplit("/", 1)[1])
    config = bare_stack.run(run_id)["config"]
    assert (config["preset"], config["model"], config["enc_layers"], config["res_dropout"]) == (
        "iemocap",
        "transformer",
        4,
        0.15,
    )


def test_a_method_preset_is_offered_for_its_method_on_any_data_set(bare_stack: Stack, page: Any) -> None:
    recipe = PRESETS["ogm_ge-official"]
    assert recipe.datasets == () and recipe.method == "ogm_ge" and recipe.trainer["scheduler"] == "step"
    page.goto(f"{bare_stack.ui}/new")
    page.locator(setting("epochs")).wait_for()
    offers(page, [])  # synthetic + the first method: no recipe
    choose(page, "#new-method", "ogm_ge")
    offers(page, ["ogm_ge-official"])
    choose(page, "#new-preset", "ogm_ge-official")
    wait_for(lambda: field(page, "optimizer") == "sgd", 20, "the authors' optimizer")
    assert field(page, "scheduler") == "step" and badge(page, "lr_step_epochs") == "from preset ogm_ge-official"
    page.locator("#new-name").fill("ogm-official")
    page.click("#new-submit")
    link = page.get_by_role("link", name="ogm-official")
    link.wait_for()
    config = bare_stack.run(int(link.get_attribute("href").rsplit("/", 1)[1]))["config"]
    assert (config["preset"], config["optimizer"], config["momentum"], config["lr_step_epochs"]) == (
        "ogm_ge-official",
        "sgd",
        0.9,
        70,
    )
    # A method sweep under one method's own recipe is refused before anything starts.
    page.locator("#new-sweep summary").click()
    page.locator("#sweep-methods").click()
    page.get_by_role("option", name="cggm", exact=True).click()
    page.keyboard.press("Escape")
    count = page.locator("#new-count")
    wait_for(lambda: "cannot use it" in count.inner_text(), 20, "the sweep refused")
    assert "'ogm_ge-official' is ogm_ge's own recipe; the sweep's cggm cannot use it" in count.inner_text()
    # Another method: the recipe no longer fits, and what it filled goes back to the defaults.
    choose(page, "#new-method", "joint")
    wait_for(lambda: page.locator("#new-preset-help").inner_text() == "", 20, "the preset cleared")
    wait_for(lambda: field(page, "optimizer") == "adam", 20, "the default optimizer again")
    assert field(page, "scheduler") == "none"
