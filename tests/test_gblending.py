"""G-Blending: the weights G/O² by hand, the held-out split, the blended loss, the estimate on data
where the answer is known, the super-epoch schedule, and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.testing import assert_close

from cggm_core.data.base import LoaderSplit, Split, holdout_split
from cggm_core.methods.base import EpochContext
from cggm_core.methods.gblending import FUSED, GBlending, blend_weights, gain_and_overfit
from cggm_core.models import build_mlp_net
from cggm_core.models.base import AuxHeads
from cggm_core.step import make_optimizer
from cggm_core.tasks import classification
from cggm_core.trainer import train

from .test_baselines import make_state
from .utils import random_batch, tiny_net


def test_gain_and_overfit_by_hand() -> None:
    # L_T 1.0 → 0.5, L_V 1.2 → 0.9: G = 1.2 − 0.9 = 0.3; O = (0.9 − 0.5) − (1.2 − 1.0) = 0.2.
    gain, overfit = gain_and_overfit((1.0, 1.2), (0.5, 0.9))
    assert gain == pytest.approx(0.3) and overfit == pytest.approx(0.2)


def test_blend_weights_by_hand() -> None:
    # raw: fused 0.2/0.1² = 20, a 0.1/0.05² = 40, v: G < 0 → 0; normalised 1/3, 2/3, 0.
    w = blend_weights({FUSED: 0.2, "a": 0.1, "v": -0.05}, {FUSED: 0.1, "a": 0.05, "v": 0.3})
    assert w == pytest.approx({FUSED: 1 / 3, "a": 2 / 3, "v": 0.0})
    # O = 0 is floored, not a division by zero: that head takes (almost) all the weight.
    w = blend_weights({FUSED: 0.1, "a": 0.1}, {FUSED: 0.0, "a": 1.0})
    assert w[FUSED] == pytest.approx(1.0) and w["a"] == pytest.approx(0.0, abs=1e-9)
    # Nothing generalises: equal weights.
    assert blend_weights({FUSED: -0.1, "a": 0.0}, {FUSED: 0.2, "a": 0.1}) == {FUSED: 0.5, "a": 0.5}


def test_holdout_split_is_seeded_disjoint_and_covers_the_split() -> None:
    n = 10
    split = Split({"a": torch.arange(n, dtype=torch.float32).reshape(n, 1)}, torch.arange(n))
    rest, held = holdout_split(split, 0.25, seed=3)
    assert len(held) == 3 and len(rest) == 7  # ⌈0.25·10⌉
    ids_rest, ids_held = rest.y.tolist(), held.y.tolist()
    assert sorted(ids_rest + ids_held) == list(range(n)) and not set(ids_rest) & set(ids_held)
    assert ids_held == sorted(ids_held) and torch.equal(held.xs["a"].reshape(-1), held.y.float())
    _, again_held = holdout_split(split, 0.25, seed=3)
    assert again_held.y.tolist() == ids_held
    assert holdout_split(split, 0.25, seed=4)[1].y.tolist() != ids_held or n < 4
    # At least one sample on each side.
    assert len(holdout_split(split, 0.01, seed=0)[1]) == 1 and len(holdout_split(split, 0.99, seed=0)[0]) == 1


class Source:
    def __init__(self, n: int) -> None:
        self.n = n
        self.epochs: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], int]:
        return {"a": torch.tensor([float(i)])}, i

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def test_holdout_split_of_a_file_backed_split_reads_the_same_samples() -> None:
    source = Source(8)
    split = LoaderSplit(source, groups=None)
    rest, held = holdout_split(split, 0.25, seed=1)
    assert isinstance(held, LoaderSplit)
    in_memory = holdout_split(Split({"a": torch.arange(8.0).reshape(8, 1)}, torch.arange(8)), 0.25, seed=1)[1]
    got = torch.cat([b.y for b in held.batches(4)])
    assert got.tolist() == in_memory.y.tolist()
    assert isinstance(rest, LoaderSplit)
    rest.set_epoch(5)
    assert source.epochs == [5]


def test_the_step_trains_the_blend_of_fused_and_unimodal_losses() -> None:
    torch.manual_seed(0)
    names = ["a", "v"]
    net, aux = tiny_net(names)
    task = classification(3)
    xs, y = random_batch(names, 8, 3)
    state = make_state(net, aux, task, xs, y)
    method = GBlending({"gblend_super_epoch": 1, "gblend_holdout": 0.1}, net, aux, task)
    method.weights = {FUSED: 0.5, "a": 0.2, "v": 0.3}
    (only,) = list(method.passes(state, state.task_loss))
    ce = torch.nn.functional.cross_entropy
    by_hand = (
        0.5 * ce(state.pred, y)
        + 0.2 * ce(aux.heads["a"](state.feats["a"]), y)
        + 0.3 * ce(aux.heads["v"](state.feats["v"]), y)
    )
    assert_close(only.loss, by_hand)
    assert only.modalities == names
    assert method.modulate(state) == {"a": 0.2, "v": 0.3}
    # Before any estimate (no trainer, no epochs) the weights are equal.
    assert GBlending({"gblend_super_epoch": 1, "gblend_holdout": 0.1}, net, aux, task).weights == pytest.approx(
        {FUSED: 1 / 3, "a": 1 / 3, "v": 1 / 3}
    )


def informative_and_noise(n: int, seed: int) -> Split:
    """m0 says the label (a one-hot plus a little noise); m1 is noise that has nothing to do with it."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    signal = torch.nn.functional.one_hot(y, 3).float() * 2 + 0.3 * torch.randn(n, 3, generator=g)
    noise = torch.randn(n, 8, generator=g)
    return Split({"m0": signal, "m1": noise}, y)


def context(train: Split, heldout: Split, epoch: int = 1, optimizer: Any = None) -> EpochContext:
    return EpochContext(
        epoch=epoch,
        epochs=10,
        train=train,
        heldout=heldout,
        batch_size=16,
        seed=0,
        clip=0.0,
        optimizer=optimizer,
        make_optimizer=lambda params: make_optimizer("adam", params, 1e-2, 0.0),
    )


def test_estimate_gives_the_noise_modality_no_weight_and_touches_nothing() -> None:
    torch.manual_seed(0)
    train_split, held = holdout_split(informative_and_noise(160, 1), 0.25, seed=0)
    assert isinstance(train_split, Split) and isinstance(held, Split)
    net = build_mlp_net({"m0": 3, "m1": 8}, 32, 16, 16, 3)
    aux = AuxHeads({"m0": 16, "m1": 16}, 16, 3)
    method = GBlending({"gblend_super_epoch": 20, "gblend_holdout": 0.25}, net, aux, classification(3))
    before_params = [p.detach().clone() for p in (*net.parameters(), *aux.parameters())]
    rng = torch.get_rng_state()
    logged = method.on_epoch_start(context(train_split, held))
    # The noise modality overfits: its held-out loss rises (G < 0), so its weight is 0; the informative
    # modality and the fused head generalise (G > 0) and share the weight.
    assert logged["gblend/G/m1"] < 0 and method.weights["m1"] == 0.0
    assert logged["gblend/G/m0"] > 0 and logged["gblend/G/fused"] > 0
    assert method.weights["m0"] > 0 and method.weights[FUSED] > 0
    assert sum(method.weights.values()) == pytest.approx(1.0)
    for k in (FUSED, "m0", "m1"):
        assert logged[f"gblend/weight/{k}"] == method.weights[k]
    # The estimate trains copies: the model and the aux heads are as they were, and so is the RNG.
    after = [p.detach() for p in (*net.parameters(), *aux.parameters())]
    assert all(torch.equal(a, b) for a, b in zip(before_params, after, strict=True))
    assert torch.equal(torch.get_rng_state(), rng)


def test_weights_are_estimated_at_the_start_of_each_super_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    net, aux = tiny_net(["a", "v"])
    method = GBlending({"gblend_super_epoch": 2, "gblend_holdout": 0.1}, net, aux, classification(3))
    calls: list[int] = []

    def fake(ctx: EpochContext) -> tuple[dict[str, float], dict[str, float]]:
        calls.append(ctx.epoch)
        return {FUSED: 1.0, "a": 1.0, "v": 2.0}, {FUSED: 1.0, "a": 1.0, "v": 1.0}

    monkeypatch.setattr(method, "estimate", fake)
    split = Split({"a": torch.zeros(4, 3), "v": torch.zeros(4, 3)}, torch.zeros(4, dtype=torch.long))
    logged = [method.on_epoch_start(context(split, split, epoch=e)) for e in range(1, 6)]
    assert calls == [1, 3, 5]
    assert [bool(v) for v in logged] == [True, False, True, False, True]
    assert method.weights == pytest.approx({FUSED: 0.25, "a": 0.25, "v": 0.5})


def test_gblending_needs_the_held_out_part() -> None:
    net, aux = tiny_net(["a", "v"])
    method = GBlending({"gblend_super_epoch": 1, "gblend_holdout": 0.1}, net, aux, classification(3))
    split = Split({"a": torch.zeros(4, 3), "v": torch.zeros(4, 3)}, torch.zeros(4, dtype=torch.long))
    ctx = context(split, split)
    ctx.heldout = None
    with pytest.raises(ValueError, match="held-out"):
        method.on_epoch_start(ctx)


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    cfg = {
        "dataset": "synthetic",
        "method": "gblending",
        "gblend_super_epoch": 2,
        "train_size": 96,
        "val_size": 32,
        "test_size": 32,
        "batch_size": 32,
        "linear_probe": False,
        "shapley": False,
    }
    straight = train({**cfg, "epochs": 3}, out_dir=tmp_path / "a", device="cpu")
    train({**cfg, "epochs": 2}, out_dir=tmp_path / "b", device="cpu")
    resumed = train({**cfg, "epochs": 3}, out_dir=tmp_path / "b", device="cpu", resume=tmp_path / "b" / "checkpoint.pt")
    assert resumed.summary["last_step"] == straight.summary["last_step"]
    assert resumed.summary["test"] == straight.summary["test"]
