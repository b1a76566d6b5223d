"""Plugins in this process: entry points loaded into DATASETS / MODELS, every way one can be wrong
(one warning naming it, never a crash), name and setting clashes (built-ins win; two clashing
plugins are both skipped), and the catalog.

Entry points here are `importlib.metadata.EntryPoint` objects pointing at modules written to
tmp_path: the same objects `metadata.entry_points()` returns for an installed package, minus the
distribution. Installing real packages is tests/test_plugin_example.py's job.
"""

from __future__ import annotations

import logging
import textwrap
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from cggm_core import config, plugins
from cggm_core.config import _check_unique, catalog, format_catalog, resolve
from cggm_core.data import DATASETS, Dataset
from cggm_core.models import MODELS, ModelSpec
from cggm_core.trainer import Trainer

from .plugintools import EXAMPLE

DATASET_GROUP, MODEL_GROUP = plugins.GROUPS["dataset"], plugins.GROUPS["model"]

GOOD_DATASET = """
from cggm_core.data.base import Dataset
from cggm_core.settings import Setting

class {cls}(Dataset):
    name = "{name}"
    help = "a plugin dataset"
    settings = [Setting("{setting}", "int", 3, "a setting", min=1, max=9)]
    default_model = "{default_model}"
"""

GOOD_MODEL = """
from cggm_core.models.registry import ModelSpec
from cggm_core.settings import Setting

class {cls}(ModelSpec):
    name = "{name}"
    help = "a plugin model"
    settings = [Setting("{setting}", "int", 8, "a width", min=1, max=64)]
    input_kinds = frozenset({{"vector"}})
"""


@pytest.fixture
def registries() -> Iterator[None]:
    """Put DATASETS, MODELS and the plugin records back as they were after each test."""
    saved = dict(DATASETS), dict(MODELS), dict(plugins._LOADED), list(plugins._PROBLEMS)
    yield
    for live, old in zip((DATASETS, MODELS, plugins._LOADED), saved[:3], strict=True):
        live.clear()
        live.update(old)  # type: ignore[attr-defined]
    plugins._PROBLEMS[:] = saved[3]


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def write_module(folder: Path, source: str) -> str:
    """A module with a unique name (sys.modules caches by name), returned for the entry point."""
    name = f"plugin_{uuid.uuid4().hex[:10]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def ep(name: str, value: str, group: str = DATASET_GROUP) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=value, group=group)


def dataset_ep(folder: Path, name: str, setting: str = "", default_model: str = "mlp") -> metadata.EntryPoint:
    source = GOOD_DATASET.format(cls="D", name=name, setting=setting or f"{name}_k", default_model=default_model)
    return ep(name, f"{write_module(folder, source)}:D")


def model_ep(folder: Path, name: str, setting: str = "") -> metadata.EntryPoint:
    source = GOOD_MODEL.format(cls="M", name=name, setting=setting or f"{name}_width")
    return ep(name, f"{write_module(folder, source)}:M", MODEL_GROUP)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cggm_core.plugins" and r.levelno == logging.WARNING]


@pytest.mark.usefixtures("registries")
def test_the_example_plugin_joins_the_registries_the_catalog_and_trains(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    loaded = plugins.load_into(
        DATASETS, "dataset", Dataset, [ep("toy_rings", "cggm_plugin_example.rings:ToyRings")]
    ) + plugins.load_into(
        MODELS, "model", ModelSpec, [ep("gated_mlp", "cggm_plugin_example.gated:GatedMLP", MODEL_GROUP)]
    )
    _check_unique()
    assert [(p.kind, p.name) for p in loaded] == [("dataset", "toy_rings"), ("model", "gated_mlp")]
    assert plugins.is_plugin("dataset", "toy_rings") and not plugins.is_plugin("dataset", "synthetic")
    cat = catalog()
    rings = next(d for d in cat["datasets"] if d["name"] == "toy_rings")
    assert [s["name"] for s in rings["settings"]] == ["rings", "ring_samples", "ring_noise"]
    assert rings["default_model"] == "gated_mlp" and rings["input_kinds"] == ["vector"]
    gated = next(m for m in cat["models"] if m["name"] == "gated_mlp")
    assert [s["name"] for s in gated["settings"]] == ["gated_hidden", "gated_feat"]
    assert {p["name"] for p in cat["plugins"]["loaded"]} == {"toy_rings", "gated_mlp"}
    assert cat["plugins"]["problems"] == []
    assert "toy_rings: Points on concentric rings" in format_catalog()
    job = resolve({"dataset": "toy_rings", "method": "cggm", "epochs": 1, "rings": 4, "gated_hidden": 8})
    assert job.model == "gated_mlp" and job.data["rings"] == 4 and job.model_settings["gated_hidden"] == 8
    trainer = Trainer(job, tmp_path / "out", "cpu", progress=False)
    trainer.setup()
    result = trainer.fit()
    assert result.status == "finished" and result.summary["modalities"] == ["radius", "xy"]


@pytest.mark.usefixtures("registries")
def test_a_plugin_that_fails_to_import_gives_one_warning_naming_it(
    module_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = write_module(module_dir, "import libfoo_that_is_not_installed\n")
    before = dict(DATASETS)
    with caplog.at_level(logging.WARNING, logger="cggm_core.plugins"):
        assert plugins.load_into(DATASETS, "dataset", Dataset, [ep("my_data", f"{bad}:MyData")]) == []
    assert before == DATASETS
    (line,) = warnings_of(caplog)
    assert f"entry point 'my_data = {bad}:MyData'" in line and DATASET_GROUP in line
    assert "cannot be imported: ModuleNotFoundError: No module named 'libfoo_that_is_not_installed'" in line
    assert catalog()["plugins"]["problems"][-1]["name"] == "my_data"


BROKEN = {
    "not a class": ("OBJ = 3\n", "OBJ", "is a int, not a subclass of cggm_core.data.base.Dataset"),
    "another class": ("class D:\n    name = 'x'\n", "D", "not a subclass of cggm_core.data.base.Dataset"),
    "its name differs": (GOOD_DATASET.format(cls="D", name="other", setting="k1", default_model="mlp"), "D",
                         "the class's name is 'other', not the entry point's name 'x'"),
    "a bad default": ("from cggm_core.data.base import Dataset\nfrom cggm_core.settings import Setting\n"
                      "class D(Dataset):\n    name = 'x'\n    help = ''\n"
                      "    settings = [Setting('x_k', 'int', 99, 'k', min=1, max=9)]\n", "D",
                      "its default is not allowed by its own rules: setting 'x_k': 99 is out of bounds"),
    "no help": ("from cggm_core.data.base import Dataset\nclass D(Dataset):\n    name = 'x'\n    settings = []\n",
                "D", "declares no `help` string"),
    "describe raises": ("from cggm_core.data.base import Dataset\nclass D(Dataset):\n    name = 'x'\n    help = ''\n"
                        "    settings = []\n    @classmethod\n    def task_name(cls, cfg):\n        return cfg['nope']\n",
                        "D", "its catalog entry cannot be made: KeyError: 'nope'"),
    "an unknown task": ("from cggm_core.data.base import Dataset\nclass D(Dataset):\n    name = 'x'\n    help = ''\n"
                        "    settings = []\n    @classmethod\n    def task_name(cls, cfg):\n        return 'ranking'\n",
                        "D", "task 'ranking' is not one of classification, regression, segmentation"),
    "sys.exit at import": ("import sys\nsys.exit(3)\n", "D", "cannot be imported: SystemExit: 3"),
}  # fmt: skip


@pytest.mark.usefixtures("registries")
@pytest.mark.parametrize("case", list(BROKEN))
def test_a_plugin_that_breaks_a_rule_is_skipped_with_the_reason(
    case: str, module_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, attr, expected = BROKEN[case]
    module = write_module(module_dir, source)
    with caplog.at_level(logging.WARNING, logger="cggm_core.plugins"):
        plugins.load_into(DATASETS, "dataset", Dataset, [ep("x", f"{module}:{attr}")])
    assert "x" not in DATASETS
    (line,) = warnings_of(caplog)
    assert expected in line, line
    assert f"entry point 'x = {module}:{attr}'" in line


@pytest.mark.usefixtures("registries")
def test_a_model_plugin_must_say_what_it_reads(module_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    module = write_module(
        module_dir,
        "from cggm_core.models.registry import ModelSpec\n"
        "class M(ModelSpec):\n    name = 'm'\n    help = ''\n    input_kinds = frozenset({'audio'})\n",
    )
    with caplog.at_level(logging.WARNING, logger="cggm_core.plugins"):
        plugins.load_into(MODELS, "model", ModelSpec, [ep("m", f"{module}:M", MODEL_GROUP)])
    assert "m" not in MODELS
    (line,) = warnings_of(caplog)
    assert "`input_kinds` must be a non-empty frozenset of vector, sequence, image" in line


@pytest.mark.usefixtures("registries")
def test_a_builtin_name_wins_over_a_plugin(module_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    builtin = DATASETS["synthetic"]
    with caplog.at_level(logging.WARNING, logger="cggm_core.plugins"):
        plugins.load_into(DATASETS, "dataset", Dataset, [dataset_ep(module_dir, "synthetic", "syn_k")])
    assert DATASETS["synthetic"] is builtin
    (line,) = warnings_of(caplog)
    assert "'synthetic' is the name of a built-in dataset, which wins" in line


@pytest.mark.usefixtures("registries")
def test_two_plugins_with_one_name_are_both_skipped(module_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    eps = [dataset_ep(module_dir, "twin", "twin_a"), dataset_ep(module_dir, "twin", "twin_b")]
    with caplog.at_level(logging.WARNING, logger="cggm_core.plugins"):
        plugins.load_into(DATASETS, "dataset", Dataset, eps)
    assert "twin" not in DATASETS
    lines = warnings_of(caplog)
    assert len(lines) == 2 and all("2 plugins declare a dataset named 'twin'" in ln for ln in lines)


@pytest.mark.usefixtures("registries")
def test_setting_names_stay_unique_with_plugins(module_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    eps = [
        dataset_ep(module_dir, "takes_epochs", "epochs"),  # the trainer's
        dataset_ep(module_dir, "takes_rho", "rho"),  # cggm's
        dataset_ep(module_dir, "shares_train_size", "train_size"),  # synthetic's, also an int: allowed
        dataset_ep(module_dir, "takes_model", "model"),  # reserved
        dataset_ep(module_dir, "pair_a", "pair_k"),
        dataset_ep(module_dir, "no_model", "no_model_k", default_model="not_installed"),
    ]
    models = [model_ep(module_dir, "pair_b", "pair_k"), model_ep(module_dir, "fine_model", "fine_width")]
    plugins.load_into(DATASETS, "dataset", Dataset, eps)
    plugins.load_into(MODELS, "model", ModelSpec, models)
    assert {"takes_epochs", "pair_a", "no_model"} <= set(DATASETS) and "pair_b" in MODELS
    with caplog.at_level(logging.WARNING, logger="cggm_core.plugins"):
        _check_unique()
    assert "shares_train_size" in DATASETS and "fine_model" in MODELS
    for gone in ("takes_epochs", "takes_rho", "takes_model", "pair_a", "no_model"):
        assert gone not in DATASETS and not plugins.is_plugin("dataset", gone)
    assert "pair_b" not in MODELS
    lines = warnings_of(caplog)
    assert len(lines) == 6, lines
    text = "\n".join(lines)
    assert "setting 'epochs' is declared by the trainer and by dataset plugin takes_epochs; the built-in wins" in text
    assert "setting 'rho' is declared by method cggm and by dataset plugin takes_rho" in text
    assert "dataset plugin takes_model declares a setting named 'model', which is reserved" in text
    assert (
        "setting 'pair_k' is declared by dataset plugin pair_a and by model plugin pair_b; both plugins are skipped"
        in text
    )
    assert "its default model 'not_installed' is not installed" in text
    assert {p["name"] for p in catalog()["plugins"]["problems"]} >= {"takes_epochs", "pair_a", "pair_b", "no_model"}


@pytest.mark.usefixtures("registries")
def test_a_clash_among_builtins_is_still_an_error() -> None:
    class Clash(Dataset):
        name = "clash_builtin"
        help = ""
        settings = [config.TRAINER_BY_NAME["epochs"]]

    DATASETS["clash_builtin"] = Clash  # not a plugin: a bug in the code, not a user's package
    with pytest.raises(RuntimeError, match="setting 'epochs' is declared by the trainer and by dataset clash_builtin"):
        _check_unique()


@pytest.mark.usefixtures("registries")
def test_no_plugins_env_loads_none(monkeypatch: pytest.MonkeyPatch) -> None:
    called = []
    monkeypatch.setattr(metadata, "entry_points", lambda **kw: called.append(kw) or [])
    monkeypatch.setenv(plugins.NO_PLUGINS_ENV, "1")
    assert plugins.load_into(DATASETS, "dataset", Dataset) == []
    assert called == []  # not even looked up
    monkeypatch.delenv(plugins.NO_PLUGINS_ENV)
    plugins.load_into(DATASETS, "dataset", Dataset)
    assert called == [{"group": DATASET_GROUP}]


def test_the_registries_know_their_builtins() -> None:
    assert plugins.builtin_names("dataset") >= {"synthetic", "mfeat", "synthetic_seq", "synthetic_seg"}
    assert plugins.builtin_names("model") >= {"mlp", "transformer", "cnn", "segnet"}
