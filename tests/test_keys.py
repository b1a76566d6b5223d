"""Metric key families (cggm_core.keys): every key the trainer logs belongs to a declared family."""

from __future__ import annotations

import pytest

from cggm_core import keys
from cggm_core.config import catalog
from cggm_core.methods import METHODS
from cggm_core.tracking import MemorySink
from cggm_core.trainer import train

TINY = {"dataset": "synthetic", "epochs": 1, "train_size": 128, "val_size": 32, "test_size": 32, "probe_steps": 5}
VARIANTS = [("cggm", {"variant": v}) for v in ("paper", "reference", "stable")] + [
    (m, {"modality": "m1"} if m == "unimodal" else {}) for m in METHODS if m != "cggm"
]


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize(("method", "extra"), VARIANTS, ids=[f"{m}-{e}" for m, e in VARIANTS])
def test_every_logged_key_belongs_to_a_declared_family(method: str, extra: dict, task: str) -> None:
    sink = MemorySink()
    train({**TINY, "method": method, "task": task, **extra}, device="cpu", sink=sink)
    logged = {p.key for p in sink.points}
    unmatched = sorted(k for k in logged if keys.family_of(k) is None)
    assert not unmatched, f"{method} logs keys no family declares: {unmatched}"
    # A per-modality family names the modality; others do not.
    for k in logged:
        match = keys.family_of(k)
        assert match is not None
        assert (match.modality is not None) == match.family.per_modality, k
        if match.modality is not None:
            assert match.modality in ("m0", "m1"), k


def test_first_matching_family_wins_and_templates_build_keys() -> None:
    cases = {
        "acc/kar": ("acc", "kar"),
        "val/contrib/kar": ("contrib", "kar"),  # not val/{metric}/{m}
        "val/acc/kar": ("val_aux", "kar"),
        "val/acc": ("val", None),
        "val/loss": ("val_loss", None),
        "loss/gm": ("losses", None),
        "train/loss": ("losses", None),
        "loss/aux/kar": ("loss_aux", "kar"),
        "train/sign_acc": ("train", None),
        "probe/acc/kar": ("probe", "kar"),
        "pareto/grad_norm_uni/kar": ("pareto_grad_norm_uni", "kar"),
    }
    for key, (family, modality) in cases.items():
        match = keys.family_of(key)
        assert match is not None and (match.family.name, match.modality) == (family, modality), key
    assert keys.family_of("gblend/weight/kar") is None  # unknown: the dashboard's catch-all
    assert keys.family_of("val/dice/wt") is None  # not a task metric declared today
    assert keys.BY_NAME["acc"].key(m="kar") == "acc/kar"


def test_default_scales_per_family() -> None:
    scale = {f.name: f.scale for f in keys.FAMILIES}
    assert scale["coef"] == "symlog"
    assert scale["grad_norm"] == scale["losses"] == scale["val_loss"] == "log"
    assert scale["acc"] == scale["cos"] == "linear"


def test_catalog_serves_the_families_and_task_metrics() -> None:
    doc = catalog()["keys"]
    by_name = {f["name"]: f for f in doc["families"]}
    assert by_name["acc"] == {
        "name": "acc",
        "templates": ["acc/{m}"],
        "title": "acc/* — aux-head accuracy per modality (ε_m)",
        "scale": "linear",
        "per_modality": True,
        "when": "step",
        "source": "probe",
        "better": "max",
        "show": True,
    }
    assert {f["source"] for f in doc["families"]} >= {"probe", "task", "cggm", "ogm_ge", "agm", "mmpareto"}
    assert [m["name"] for m in doc["task_metrics"]["regression"]] == ["sign_acc", "loss"]


def test_a_bad_declaration_is_refused() -> None:
    with pytest.raises(RuntimeError, match="allowed m, metric, name"):
        keys.check_families([keys.KeyFamily("bad", ("x/{modality}",), "bad")])
    with pytest.raises(RuntimeError, match="declared twice"):
        keys.check_families([keys.BY_NAME["acc"], keys.BY_NAME["acc"]])
