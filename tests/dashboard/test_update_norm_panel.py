"""The run page shows `update_norm/*` beside the gradient norms (issue 12 item 4), from the catalog alone."""

from __future__ import annotations

from cggm_core.config import catalog
from dashboard.families import Families
from dashboard.run_view import drawn_keys, run_panels

FAMILIES = Families(catalog())


def test_update_norm_gets_its_panel_right_after_the_gradient_norms() -> None:
    keys = [f"{f}/{m}" for f in ("coef", "update_norm", "grad_norm_mod", "grad_norm", "acc") for m in ("kar", "mor")]
    specs = run_panels(FAMILIES, keys)
    assert [s["family"] for s in specs] == ["acc", "grad_norm", "grad_norm_mod", "update_norm", "coef"]
    by = {s["family"]: s for s in specs}
    update = by["update_norm"]
    assert update["scale"] == "log" and update["title"].startswith("update_norm/*")
    assert [t["sid"] for t in update["traces"]] == ["update_norm/kar", "update_norm/mor"]
    # one colour per modality, the same as in the gradient-norm panels
    assert [t["color"] for t in update["traces"]] == [t["color"] for t in by["grad_norm"]["traces"]]
    assert {"update_norm/kar", "update_norm/mor"} <= set(drawn_keys(FAMILIES, keys))
