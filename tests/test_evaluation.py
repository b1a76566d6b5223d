"""What the trainer evaluates: a `unimodal` run is scored with its trained modality only."""

from __future__ import annotations

from typing import Any

import pytest

from cggm_core import probe
from cggm_core.config import resolve
from cggm_core.trainer import Trainer

TINY = {"dataset": "synthetic", "epochs": 2, "train_size": 256, "val_size": 128, "test_size": 128, "probe_steps": 20}


def trained(cfg: dict[str, Any]) -> tuple[Trainer, dict[str, Any]]:
    trainer = Trainer(resolve(cfg), device="cpu", progress=False)
    trainer.setup()
    summary = trainer.fit().summary
    return trainer, summary


@pytest.mark.parametrize("modality", ["m0", "m1"])
def test_unimodal_run_is_evaluated_with_its_modality_alone(modality: str) -> None:
    trainer, summary = trained({**TINY, "method": "unimodal", "modality": modality})
    model, aux, task = trainer.model, trainer.stepper.aux, trainer.data.task
    assert aux is not None
    other = "m1" if modality == "m0" else "m0"
    final = trainer.history[-1]
    for split, got in ((trainer.val_split, final), (trainer.test_split, summary["test"])):
        prefix = "val" if split is trainer.val_split else "test"
        alone = probe.evaluate(model, aux, task, split, keep=[modality])
        everything = probe.evaluate(model, aux, task, split)
        # Scored as trained: the other modality zero-masked, exactly as in every training step.
        assert got[f"{prefix}/acc"] == alone["acc"]
        assert got[f"{prefix}/loss"] == alone["loss"]
        # …which is not what the model does with both modalities present (the head's columns for
        # the other modality kept their random initial weights), so the checks above have teeth:
        # seeded on the CPU, the validation accuracies differ by 2 (m0) and 5 (m1) samples of 128.
        assert everything["acc"] != alone["acc"]
        assert everything["loss"] != alone["loss"]
        # Each aux head still reads its own encoder: val/acc/<m> for both modalities.
        assert got[f"{prefix}/acc/{other}"] == everything[f"acc/{other}"]
    # Shapley: the masked modality is a null player (exactly 0); the trained one gets
    # v({m}) − v(∅), the fused metric alone minus the metric with nothing kept.
    v_alone = probe.evaluate(model, aux, task, trainer.val_split, keep=[modality], with_aux=False)["acc"]
    v_none = probe.evaluate(model, aux, task, trainer.val_split, keep=[], with_aux=False)["acc"]
    assert final[f"val/contrib/{other}"] == 0.0
    assert final[f"val/contrib/{modality}"] == pytest.approx(v_alone - v_none, abs=1e-12)
    # The linear probe still probes every frozen encoder.
    assert set(summary["probe"]) == {"probe/acc/m0", "probe/acc/m1"}


def test_multimodal_run_is_evaluated_with_every_modality() -> None:
    trainer, summary = trained({**TINY, "method": "joint", "epochs": 1})
    aux = trainer.stepper.aux
    assert aux is not None
    everything = probe.evaluate(trainer.model, aux, trainer.data.task, trainer.test_split)
    assert summary["test"]["test/acc"] == everything["acc"]
    assert summary["test"]["test/loss"] == everything["loss"]
