"""OGM-GE against its official code (GeWu-Lab/OGM-GE_CVPR2022 at 343dc1d, main.py): the score, the
coefficient, which parameters are modulated, the GE noise and the window; by hand, against a replica
of the official step, and in 2-epoch runs on every task and model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from cggm_core.config import resolve
from cggm_core.methods import resolve_method_settings
from cggm_core.methods.base import StepState
from cggm_core.methods.ogm_ge import OGMGE, ogm_coefficients, ogm_score, unimodal_outputs
from cggm_core.models import AuxHeads, ConcatFusion, MLPEncoder, MultimodalNet, build_mlp_net
from cggm_core.settings import SettingError
from cggm_core.tasks import Task, classification, regression
from cggm_core.tracking import MemorySink
from cggm_core.trainer import Trainer, train

from .test_agm import RUNS, SEG
from .utils import random_batch


def linear_head_net(names: list[str], in_dim: int = 3, feat_dim: int = 4, classes: int = 3) -> MultimodalNet:
    """Encoders → concat → one nn.Linear: the case where OGM-GE's logits decompose exactly."""
    encoders = {m: MLPEncoder(in_dim, 8, feat_dim) for m in names}
    return MultimodalNet(encoders, nn.Linear(feat_dim * len(names), classes), ConcatFusion())


def make_state(
    net: MultimodalNet, aux: AuxHeads, task: Task, xs: dict[str, torch.Tensor], y: torch.Tensor
) -> StepState:
    feats = net.encode(xs)
    pred = net.fuse(feats)
    aux_logits = aux(feats)
    aux_losses = {m: task.loss(z, y) for m, z in aux_logits.items()}
    eps = {m: task.metric(z, y) for m, z in aux_logits.items()}
    return StepState(1, True, xs, y, feats, pred, task.loss(pred, y), aux_logits, aux_losses, eps)


# -- the formulas by hand --------------------------------------------------------------------------


def test_score_and_coefficient_by_hand() -> None:
    y = torch.tensor([0, 1])
    logits_a = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    logits_v = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    # s_a = softmax([2,0])[0] + softmax([0,0])[1] = e²/(e²+1) + 0.5 = 0.880797 + 0.5 (main.py:105-106)
    s_a = math.exp(2) / (math.exp(2) + 1) + 0.5
    # s_v = softmax([0,0])[0] + softmax([1,0])[1] = 0.5 + 1/(e+1) = 0.5 + 0.268941
    s_v = 0.5 + 1 / (math.e + 1)
    task = classification(2)
    assert float(ogm_score(logits_a, y, task)) == pytest.approx(1.380797, abs=1e-6)
    assert float(ogm_score(logits_v, y, task)) == pytest.approx(0.768941, abs=1e-6)
    # ratio = 1.380797 / 0.768941 = 1.795712; k_a = 1 − tanh(0.8·1.795712) = 1 − tanh(1.436569) = 0.106995.
    k = ogm_coefficients({"a": s_a, "v": s_v}, alpha=0.8)
    assert float(k["a"]) == pytest.approx(0.106995, abs=1e-6)
    assert float(k["v"]) == 1.0
    # The dominant modality is the one with the larger score, wherever it sits.
    k = ogm_coefficients({"a": s_v, "v": s_a}, alpha=0.8)
    assert float(k["a"]) == 1.0
    assert float(k["v"]) == pytest.approx(0.106995, abs=1e-6)


def test_three_modalities_use_the_mean_of_the_others() -> None:
    # dominant b: ratio = 4 / mean(1, 2) = 8/3; k_b = 1 − tanh(0.5·8/3) = 1 − tanh(1.333333) = 0.129938.
    k = ogm_coefficients({"a": 1.0, "b": 4.0, "c": 2.0}, alpha=0.5)
    assert [float(k[m]) for m in "abc"] == pytest.approx([1.0, 0.129938, 1.0], abs=1e-6)


def test_a_tie_slows_the_first_modality_as_the_official_else_branch() -> None:
    # main.py:119-124: ratio_v = 1 is not > 1, so audio (the first) gets 1 − tanh(0.8·1) = 0.335963.
    k = ogm_coefficients({"a": 2.0, "b": 2.0}, alpha=0.8)
    assert [float(k["a"]), float(k["b"])] == pytest.approx([0.335963, 1.0], abs=1e-6)
    # All scores 0 (the official divides 0 by 0): guarded, nobody is modulated.
    assert {m: float(v) for m, v in ogm_coefficients({"a": 0.0, "b": 0.0}, alpha=0.8).items()} == {"a": 1.0, "b": 1.0}


def test_regression_score_and_coefficient() -> None:
    y = torch.tensor([1.0, -1.0])
    pred = torch.tensor([[1.5], [0.0]])
    # s = −(|1.5 − 1| + |0 − (−1)|) = −1.5
    assert float(ogm_score(pred, y, regression())) == pytest.approx(-1.5)
    # errors 1 (a) and 4 (b): a dominates with ratio 4/1 = 4; k_a = 1 − tanh(0.8·4) = 1 − tanh(3.2) = 0.003318.
    k = ogm_coefficients({"a": -1.0, "b": -4.0}, alpha=0.8)
    assert float(k["a"]) == pytest.approx(0.003318, abs=1e-6)
    assert float(k["b"]) == 1.0


def test_exact_decomposition_for_a_linear_head() -> None:
    torch.manual_seed(0)
    names = ["a", "b", "c"]
    net = linear_head_net(names, feat_dim=4)
    feats = {m: torch.randn(5, 4) for m in names}
    out = unimodal_outputs(net, feats)
    assert_close(sum(out.values()), net.fuse(feats).detach(), rtol=1e-5, atol=1e-6)
    head = net.head
    assert isinstance(head, nn.Linear)
    w, b = head.weight, head.bias
    # block of modality b is columns 4..8; its share of the bias is b/3.
    assert_close(out["b"], feats["b"] @ w[:, 4:8].T.detach() + b.detach() / 3)
    assert not out["a"].requires_grad


def test_zero_masking_for_a_nonlinear_head() -> None:
    torch.manual_seed(0)
    net = build_mlp_net({"a": 3, "b": 3}, 8, 4, 6, 3)
    feats = {m: torch.randn(5, 4) for m in ("a", "b")}
    out = unimodal_outputs(net, feats)
    assert_close(out["a"], net.fuse({"a": feats["a"], "b": torch.zeros(5, 4)}).detach())
    assert not torch.allclose(out["a"] + out["b"], net.fuse(feats))


def test_settings_are_checked() -> None:
    with pytest.raises(SettingError, match=r"ogm_modulation_starts.*after ogm_modulation_ends=4"):
        resolve_method_settings("ogm_ge", {"ogm_modulation_starts": 5, "ogm_modulation_ends": 4}, ["a", "v"])
    with pytest.raises(SettingError, match="at least 2 modalities"):
        resolve_method_settings("ogm_ge", {}, ["a"])
    defaults = resolve_method_settings("ogm_ge", {}, ["a", "v"])
    assert (defaults["ogm_modulation_starts"], defaults["ogm_modulation_ends"]) == (1, 51)  # official 0-50


# -- the step against the official ----------------------------------------------------------------


def make_ogm(ge_noise: bool, **settings: Any) -> tuple[OGMGE, StepState]:
    torch.manual_seed(1)
    names = ["a", "v"]
    net = linear_head_net(names)
    aux = AuxHeads({m: 4 for m in names}, 4 * 2, 3)
    task = classification(3)
    cfg = resolve_method_settings("ogm_ge", {"ge_noise": ge_noise, **settings}, names)
    method = OGMGE(cfg, net, aux, task)
    xs, y = random_batch(names, 16, 3)
    state = make_state(net, aux, task, xs, y)
    state.task_loss.backward(retain_graph=True)
    return method, state


@torch.no_grad()
def official_coefficients(net: MultimodalNet, state: StepState, alpha: float) -> tuple[float, float]:
    """main.py:88-124 on our features: out_v/out_a from the halves of fc_out plus bias/2, the scores,
    the ratio and Eq. 10."""
    head = net.head
    assert isinstance(head, nn.Linear)
    a, v = state.feats["a"].detach(), state.feats["v"].detach()
    half = head.weight.size(1) // 2
    out_v = torch.mm(v, torch.transpose(head.weight[:, half:], 0, 1)) + head.bias / 2
    out_a = torch.mm(a, torch.transpose(head.weight[:, :half], 0, 1)) + head.bias / 2
    softmax, relu, tanh = nn.Softmax(dim=1), nn.ReLU(), nn.Tanh()
    label = state.y
    score_v = sum([softmax(out_v)[i][label[i]] for i in range(out_v.size(0))])
    score_a = sum([softmax(out_a)[i][label[i]] for i in range(out_a.size(0))])
    ratio_v = score_v / score_a
    ratio_a = 1 / ratio_v
    if ratio_v > 1:
        return 1.0, float(1 - tanh(alpha * relu(ratio_v)))
    return float(1 - tanh(alpha * relu(ratio_a))), 1.0


def test_coefficient_and_scaling_equal_the_official_step() -> None:
    method, state = make_ogm(ge_noise=False)
    before = {p: p.grad.clone() for p in method.model.parameters() if p.grad is not None}
    coef = method.modulate(state)
    k_a, k_v = official_coefficients(method.model, state, method.alpha)
    assert [float(coef["a"]), float(coef["v"])] == pytest.approx([k_a, k_v], rel=1e-6)
    assert min(k_a, k_v) < 1.0
    # Only the encoders' weights (≥ 2-D, the official's conv kernels) are scaled; biases and the head are not.
    scaled = {p for m in method.modalities for p in method.model.encoder_params(m) if p.ndim >= 2}
    k = {"a": k_a, "v": k_v}
    for m in method.modalities:
        for p in method.model.encoder_params(m):
            expected = before[p] * k[m] if p in scaled else before[p]
            assert_close(p.grad, expected, rtol=1e-6, atol=0.0)
    for p in method.model.head.parameters():
        assert torch.equal(p.grad, before[p])


def test_ge_noise_is_std_plus_1e8_on_the_weights_only() -> None:
    method, state = make_ogm(ge_noise=True)
    weight = method.model.encoder_params("v")[0]
    assert weight.ndim == 2 and weight.grad is not None
    weight.grad.zero_()  # a zero gradient still gets N(0, 1e-8) noise (main.py:139: std + 1e-8)
    owned = [(m, p) for m in method.modalities for p in method.model.encoder_params(m)]
    original = {p: p.grad.clone() for _, p in owned if p.grad is not None}
    gen = torch.Generator().manual_seed(method.seed)  # replay the method's own noise stream
    coef = method.modulate(state)
    for m, p in owned:
        g0 = original[p]
        if p.ndim < 2:
            assert torch.equal(p.grad, g0)  # biases: neither scaled nor noised
            continue
        std = g0.std() if g0.numel() > 1 else torch.zeros(())
        noise = torch.randn(g0.shape, generator=gen)
        assert_close(p.grad, g0 * float(coef[m]) + noise * (std + 1e-8), rtol=1e-6, atol=1e-12)
    assert weight.grad.abs().max() > 0 and float(weight.grad.std()) == pytest.approx(1e-8, rel=0.3)


def test_noise_resumes_deterministically() -> None:
    method, state = make_ogm(ge_noise=True)
    params = [p for m in method.modalities for p in method.model.encoder_params(m)]
    original = [p.grad.clone() for p in params if p.grad is not None]
    saved = method.state_dict()
    method.modulate(state)
    noisy = [p.grad.clone() for p in params if p.grad is not None]
    for p, g0 in zip(params, original, strict=True):
        p.grad = g0.clone()
    method.load_state_dict(saved)
    method.modulate(state)
    for p, g in zip(params, noisy, strict=True):
        assert torch.equal(p.grad, g)


@pytest.mark.parametrize("ge_noise", [True, False])
def test_window_boundaries(ge_noise: bool) -> None:
    """Window 2-3: epochs 1 and 4 touch nothing (no coefficient, no noise), 2 and 3 modulate."""
    method, state = make_ogm(ge_noise=ge_noise, ogm_modulation_starts=2, ogm_modulation_ends=3)
    params = [p for p in method.model.parameters() if p.grad is not None]
    original = [p.grad.clone() for p in params]
    for epoch in (1, 2, 3, 4):
        for p, g in zip(params, original, strict=True):
            p.grad = g.clone()
        method.set_epoch(epoch)
        coef = method.modulate(state)
        unchanged = all(torch.equal(p.grad, g) for p, g in zip(params, original, strict=True))
        if epoch in (1, 4):
            assert unchanged and coef == {"a": 1.0, "v": 1.0}
            assert {"ogm/score/a", "ogm/score/v"} <= set(state.scalars)  # still logged
        else:
            assert not unchanged and min(float(c) for c in coef.values()) < 1.0


def test_window_in_the_trainer() -> None:
    """3 epochs of 2 steps, window 2-2: outside it coef is 1 and the gradient untouched (no noise)."""
    sink = MemorySink()
    cfg = {
        "dataset": "synthetic",
        "method": "ogm_ge",
        "epochs": 3,
        "train_size": 64,
        "val_size": 32,
        "test_size": 32,
        "batch_size": 32,
        "linear_probe": False,
        "shapley": False,
        "ogm_modulation_starts": 2,
        "ogm_modulation_ends": 2,
    }
    train(cfg, sink=sink, device="cpu")
    for m in ("m0", "m1"):
        coef = [v for _, v in sink.series(f"coef/{m}")]
        norm = [v for _, v in sink.series(f"grad_norm/{m}")]
        norm_mod = [v for _, v in sink.series(f"grad_norm_mod/{m}")]
        assert len(coef) == 6
        assert coef[:2] == coef[4:] == [1.0] * 2
        assert norm_mod[:2] == norm[:2] and norm_mod[4:] == norm[4:]
        assert all(a != b for a, b in zip(norm[2:4], norm_mod[2:4], strict=True))  # GE noise inside
    assert min(v for m in ("m0", "m1") for _, v in sink.series(f"coef/{m}")[2:4]) < 1.0


def test_resume_reproduces_the_noise(tmp_path: Path) -> None:
    cfg = {
        "dataset": "synthetic",
        "method": "ogm_ge",
        "train_size": 128,
        "val_size": 64,
        "test_size": 64,
        "epochs": 1,
        "probe_steps": 20,
        "linear_probe": False,
        "shapley": False,
    }
    straight = train({**cfg, "epochs": 2}, out_dir=tmp_path / "a", device="cpu")
    train(cfg, out_dir=tmp_path / "b", device="cpu")
    resumed = train({**cfg, "epochs": 2}, out_dir=tmp_path / "b", device="cpu", resume=tmp_path / "b" / "checkpoint.pt")
    assert resumed.summary["last_step"] == straight.summary["last_step"]


# -- every task and model --------------------------------------------------------------------------


def check_two_epochs(trainer: Trainer, sink: MemorySink, start: dict[str, list[torch.Tensor]]) -> None:
    """Epoch 1 outside the window (coef 1, gradient untouched), epoch 2 inside."""
    per_epoch = len(sink.series("train/loss")) // 2
    assert all(math.isfinite(v) for v in trainer.history[-1].values())
    inside = []
    for m in trainer.data.modalities:
        coef = [v for _, v in sink.series(f"coef/{m}")]
        norm = [v for _, v in sink.series(f"grad_norm/{m}")]
        norm_mod = [v for _, v in sink.series(f"grad_norm_mod/{m}")]
        assert len(coef) == 2 * per_epoch and all(math.isfinite(c) for c in coef)
        assert coef[:per_epoch] == [1.0] * per_epoch and norm_mod[:per_epoch] == norm[:per_epoch]
        assert all(a != b for a, b in zip(norm[per_epoch:], norm_mod[per_epoch:], strict=True))  # GE noise
        inside += coef[per_epoch:]
        moved = any(
            not torch.equal(a, b.detach()) for a, b in zip(start[m], trainer.model.encoder_params(m), strict=True)
        )
        assert moved, m
    assert min(inside) < 1.0


def run_two_epochs(cfg: dict[str, Any], batch_size: int = 16) -> None:
    job = resolve(
        {
            **cfg,
            "method": "ogm_ge",
            "ogm_modulation_starts": 2,
            "ogm_modulation_ends": 2,
            "epochs": 2,
            "batch_size": batch_size,
            "probe_steps": 5,
        }
    )
    sink = MemorySink()
    trainer = Trainer(job, device="cpu", sink=sink, progress=False)
    trainer.setup()
    start = {m: [p.detach().clone() for p in trainer.model.encoder_params(m)] for m in trainer.data.modalities}
    trainer.fit()
    check_two_epochs(trainer, sink, start)


@pytest.mark.parametrize("run", list(RUNS), ids=list(RUNS))
def test_two_epochs_on_every_task_and_model(run: str) -> None:
    run_two_epochs(RUNS[run])


def test_two_epochs_with_the_cnn_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from cggm_core.data import DATASETS

    from .test_synthetic_seg import SliceKinds

    monkeypatch.setitem(DATASETS, SliceKinds.name, SliceKinds)
    cfg = {**SEG, "dataset": SliceKinds.name, "cnn_width": 2, "cnn_stages": 2, "cnn_head_hidden": 6}
    run_two_epochs({k: v for k, v in cfg.items() if not k.startswith("segnet")}, batch_size=8)
