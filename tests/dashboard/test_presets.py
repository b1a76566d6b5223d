"""The New run form's preset logic (dashboard.presets, dashboard.forms), as pure functions, on the
real catalog (cggm_core.config.catalog) and on catalog entries of the shapes other presets take."""

from __future__ import annotations

from cggm_core.config import catalog
from dashboard.forms import models_for, sections, settings_for
from dashboard.presets import field_values, fits, marks, preset_method, preset_values, presets_for

CATALOG = catalog()

# A per-method recipe as an older catalog (no `method` key) describes it: the name says the method.
OGM_OFFICIAL = {
    "name": "ogm_ge-official",
    "help": "OGM-GE's own: SGD 1e-3",
    "datasets": [],
    "trainer": {"optimizer": "sgd", "lr": 1e-3},
    "methods": {"ogm_ge": {"ogm_alpha": 0.1}},
    "models": {},
}


def names(presets: list[dict]) -> list[str]:
    return [p["name"] for p in presets]


def test_presets_fit_their_data_sets_and_per_method_ones_fit_any_data_set_for_their_method_only() -> None:
    # The real catalog: the paper's data-set recipes (any method), the authors' per-method ones (any data).
    assert names(presets_for(CATALOG, "brats", "cggm")) == ["brats", "cggm-official"]
    assert names(presets_for(CATALOG, "brats", "joint")) == ["brats"]  # the trainer recipe: any method
    assert names(presets_for(CATALOG, "synthetic", "ogm_ge")) == ["ogm_ge-official"]
    assert names(presets_for(CATALOG, "synthetic", "joint")) == []
    assert preset_method(next(p for p in CATALOG["presets"] if p["name"] == "agm-official")) == "agm"
    assert preset_method(next(p for p in CATALOG["presets"] if p["name"] == "mosi")) is None
    # A catalog without `method`: `datasets: []` and the `<method>-official` name.
    old = {**CATALOG, "presets": [{k: v for k, v in p.items() if k != "method"} for p in CATALOG["presets"][:4]]}
    old["presets"].append(OGM_OFFICIAL)
    assert preset_method(OGM_OFFICIAL) == "ogm_ge"
    assert names(presets_for(old, "synthetic", "ogm_ge")) == ["ogm_ge-official"]
    assert names(presets_for(old, "mosi", "ogm_ge")) == ["mosi", "ogm_ge-official"]
    assert names(presets_for(old, "mosi", "cggm")) == ["mosi"]
    # `method` says it, whatever the name; None fits every method.
    assert not fits({"name": "x", "datasets": [], "method": "agm"}, "mfeat", "cggm")
    assert fits({"name": "x", "datasets": [], "method": "agm"}, "mfeat", "agm")
    assert fits({"name": "x-official", "datasets": [], "method": None}, "mfeat", "cggm")


def test_preset_values_take_the_method_and_model_parts_only_when_they_apply() -> None:
    iemocap = next(p for p in CATALOG["presets"] if p["name"] == "iemocap")
    joint = preset_values(iemocap, "joint", "transformer")
    assert joint["epochs"] == 30 and joint["enc_layers"] == 4 and "rho" not in joint
    cggm = preset_values(iemocap, "cggm", "mlp")
    assert cggm["lam"] == 0.2 and "enc_layers" not in cggm
    assert preset_values(None, "cggm", "mlp") == {}


def test_field_values_fill_from_a_new_preset_and_give_back_the_old_ones_defaults() -> None:
    settings = [
        {"name": "lr", "type": "float", "default": 0.001},
        {"name": "epochs", "type": "int", "default": 10},
        {"name": "seed", "type": "int", "default": 0},
        {"name": "rho", "type": "float", "default": 1.3},
    ]
    old = {"lr": 0.01, "epochs": 75, "rho": 1.0}
    current = {"lr": "0.01", "epochs": "3", "seed": "5", "rho": "1"}  # epochs and seed typed by the user
    # The preset cleared: its untouched values go back to the defaults; the user's stay.
    cleared = field_values(settings, current, old, {}, preset_changed=True)
    assert cleared == {"lr": 0.001, "epochs": "3", "seed": "5", "rho": 1.3}
    # Another preset chosen: it fills every field it sets, the user's included.
    other = field_values(settings, current, old, {"epochs": 30}, preset_changed=True)
    assert other == {"lr": 0.001, "epochs": 30, "seed": "5", "rho": 1.3}
    # Same preset, a field new to the form (the method changed): the preset's value, or the default.
    same = field_values(settings, {"lr": "0.005", "epochs": "75"}, old, old, preset_changed=False)
    assert same == {"lr": "0.005", "epochs": "75", "seed": 0, "rho": 1.0}


def test_marks_say_from_preset_or_the_users_value_with_the_presets() -> None:
    settings = [
        {"name": "lr", "type": "float", "default": 0.001},
        {"name": "optimizer", "type": "str", "default": "adam", "choices": ["adam", "sgd"]},
        {"name": "seed", "type": "int", "default": 0},
    ]
    got = marks(settings, {"lr": 0.01, "optimizer": "sgd"}, {"lr": "0.005", "optimizer": "sgd", "seed": "0"}, "brats")
    assert got == {
        "lr": ("preset-overridden", "yours (preset brats: 0.01)"),
        "optimizer": ("from-preset", "from preset brats"),
        "seed": ("", ""),
    }
    assert marks(settings, {"lr": 0.01}, {"lr": "1e-2"}, "brats")["lr"][0] == "from-preset"  # same number
    assert marks(settings, {}, {"lr": "0.01"}, None)["lr"] == ("", "")


def test_the_form_offers_the_models_that_read_the_data_and_their_settings() -> None:
    assert models_for(CATALOG, "synthetic_seg") == ["segnet"]  # the only segmentation model
    assert models_for(CATALOG, "synthetic") == ["mlp"]
    assert "mlp" not in models_for(CATALOG, "synthetic_seq") and "transformer" in models_for(CATALOG, "synthetic_seq")
    settings = settings_for(CATALOG, "iemocap", "cggm")  # no model chosen: the dataset's own, transformer
    secs = {
        title: [s["name"] for s in items] for title, items, _ in sections(settings, "iemocap", "cggm", "transformer")
    }
    assert "enc_layers" in secs["Model: transformer"]
    names_ = [s["name"] for _, s in settings]
    assert len(names_) == len(set(names_)), "a setting shown twice would give two fields one id"
