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


# Every method on both tasks, but pmr on regression: it refuses it (no classes to take prototypes
# of; tests/test_pmr.py checks the refusal).
CASES = [(m, e, t) for m, e in VARIANTS for t in ("classification", "regression") if (m, t) != ("pmr", "regression")]


@pytest.mark.parametrize(("method", "extra", "task"), CASES, ids=[f"{m}-{e}-{t}" for m, e, t in CASES])
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
    assert keys.family_of("nosuch/thing/kar") is None  # unknown: the dashboard's catch-all
    # A segmentation metric has a slash in its name: the fused metric, not an aux head named "wt".
    assert (keys.family_of("val/dice/wt").family.name, keys.family_of("val/dice/wt").modality) == ("val", None)
    assert (keys.family_of("val/dice/flair").family.name, keys.family_of("val/dice/flair").modality) == (
        "val_aux",
        "flair",
    )
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
        "title": "acc/* — aux head's batch metric ε_m per modality (accuracy, sign accuracy or Dice)",
        "scale": "linear",
        "per_modality": True,
        "when": "step",
        "source": "probe",
        "better": "max",
        "show": True,
    }
    assert {f["source"] for f in doc["families"]} >= {"probe", "task", "cggm", "ogm_ge", "agm", "mmpareto"}
    assert [m["name"] for m in doc["task_metrics"]["regression"]] == [
        "sign_acc", "mae", "corr", "acc2", "acc2_zero", "acc7", "f1", "loss"
    ]  # fmt: skip
    assert doc["batch_metrics"] == ["acc", "dice", "sign_acc"]


def test_a_bad_declaration_is_refused() -> None:
    with pytest.raises(RuntimeError, match="allowed m, metric, eps, name"):
        keys.check_families([keys.KeyFamily("bad", ("x/{modality}",), "bad")])
    with pytest.raises(RuntimeError, match="declared twice"):
        keys.check_families([keys.BY_NAME["acc"], keys.BY_NAME["acc"]])


SEQ_AND_SEG = {
    "synthetic_seq": {"train_size": 64, "val_size": 32, "test_size": 32, "d_model": 8, "heads": 2, "enc_layers": 1,
                      "fusion_layers": 1, "aux_layers": 1},
    "synthetic_seg": {"seg_size": 16, "seg_depth": 4, "seg_train_volumes": 4, "seg_val_volumes": 2,
                      "seg_test_volumes": 2, "segnet_width": 2, "segnet_dec_width": 4, "batch_size": 8},
}  # fmt: skip


@pytest.mark.parametrize("dataset", sorted(SEQ_AND_SEG))
def test_sequence_and_segmentation_keys_belong_to_families(dataset: str) -> None:
    """The transformer's and the segnet's runs: every key declared; Dice keys are the fused metric's."""
    sink = MemorySink()
    cfg = {"dataset": dataset, "method": "cggm", "epochs": 1, "probe_steps": 5, **SEQ_AND_SEG[dataset]}
    train(cfg, device="cpu", sink=sink)
    logged = {p.key for p in sink.points}
    assert not sorted(k for k in logged if keys.family_of(k) is None)
    for k in logged:
        match = keys.family_of(k)
        assert match is not None and (match.modality is not None) == match.family.per_modality, k
    if dataset == "synthetic_seg":
        assert {"val/dice/wt", "val/dice/avg", "test/dice/et", "probe/dice/t1"} <= logged
        assert keys.family_of("val/dice/wt").family.name == "val"  # type: ignore[union-attr]
        assert keys.family_of("val/dice/t1").family.name == "val_aux"  # type: ignore[union-attr]
