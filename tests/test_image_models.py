"""The image models: `segnet` (segmentation) and `cnn` (image classification/regression).

What CGGM needs of them: a task head ending in W_Ω (a 1×1 conv, or nn.Linear), aux heads whose last
layer has W_Ω's shape, and `encoder_params(m)` that is the whole encoder m (the magnitude
modulation scales all of it; the official BraTS code scales nothing).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from cggm_core.config import resolve
from cggm_core.methods import resolve_method_settings
from cggm_core.methods.base import StepState
from cggm_core.methods.cggm import CGGM, GUARD
from cggm_core.models import AuxHeads, MultimodalNet, SegDecoder, build_cnn_net, build_segnet
from cggm_core.settings import SettingError
from cggm_core.step import Stepper
from cggm_core.tasks import Task, classification, segmentation

NAMES = ["flair", "t1ce", "t1", "t2"]
H = W = 8


def tiny_segnet(names: list[str] = NAMES) -> tuple[MultimodalNet, AuxHeads]:
    net = build_segnet(dict.fromkeys(names, (1, H, W)), width=2, stages=2, blocks=1, dec_width=4, classes=4)
    return net, net.make_aux()


def seg_batch(names: list[str], n: int = 6) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    return {m: torch.randn(n, 1, H, W) for m in names}, torch.randint(0, 4, (n, H, W))


def forward_state(
    net: MultimodalNet, aux: AuxHeads, task: Task, xs: dict[str, torch.Tensor], y: torch.Tensor
) -> StepState:
    """The StepState of one forward pass, as the Stepper builds it."""
    feats = net.encode(xs)
    pred = net.fuse(feats)
    z = aux(feats)
    aux_losses = {m: task.loss(z[m], y) for m in z}
    eps = {m: task.metric(z[m], y) for m in z}
    return StepState(1, True, xs, y, feats, pred, task.loss(pred, y), z, aux_losses, eps)


def test_segnet_shapes_and_last_layers() -> None:
    torch.manual_seed(0)
    net, aux = tiny_segnet()
    xs, _ = seg_batch(NAMES, 3)
    feats = net.encode(xs)
    for m in NAMES:
        assert feats[m].shape == (3, 4, H // 2, W // 2)  # width 2 doubled once, stride 2
    assert net(xs).shape == (3, 4, H, W)
    w_omega = net.head_last_layer()
    assert isinstance(w_omega, nn.Conv2d) and w_omega.kernel_size == (1, 1)
    assert w_omega.weight.shape == (4, 4, 1, 1)  # (classes, dec_width, 1, 1)
    assert w_omega is net.head.classifier
    for m, z in aux(feats).items():
        assert z.shape == (3, 4, H, W)
        assert aux.last_layer(m).weight.shape == w_omega.weight.shape
        assert aux.last_layer(m) is aux.heads[m].classifier
        assert aux.heads[m].reduce[0].in_channels == 4  # one modality's map, not the concatenation
    assert net.head.reduce[0].in_channels == 4 * len(NAMES)


def test_segnet_refuses_modalities_of_different_sizes() -> None:
    with pytest.raises(ValueError, match=r"their \(H, W\) must agree"):
        build_segnet({"a": (1, 8, 8), "b": (1, 8, 16)}, 2, 2, 1, 4, 4)


def test_zero_masked_passes_in_training_mode_leave_evaluation_unchanged() -> None:
    """OGM-GE, AGM and `unimodal` run the shared decoder on zero-masked features in training mode;
    the decoders keep no running statistics (GroupNorm), so evaluation afterwards is unchanged. (With
    BatchNorm in the decoder the masked passes would move its running mean and variance.)"""
    torch.manual_seed(8)
    net, _ = tiny_segnet()
    xs, _ = seg_batch(NAMES, 4)
    net.eval()
    with torch.no_grad():
        feats = net.encode(xs)
        before = net.fuse(feats)
        net.head.train()
        for m in NAMES:
            net.fuse(feats, keep=[m])  # Ω(0…h_m…0), as AGM's unimodal responses
        net.head.eval()
        after = net.fuse(feats)
    assert torch.equal(before, after)
    assert not list(net.head.buffers())


def test_decoder_upsampling_commutes_with_its_1x1_conv() -> None:
    """Bilinear upsampling after the 1×1 conv (as the official decoder) is the same map as a 1×1
    conv at full resolution, so W_Ω really is the decoder's last layer."""
    torch.manual_seed(1)
    dec = SegDecoder(3, 4, 5, (12, 12))
    h = dec.refine(dec.reduce(torch.randn(2, 3, 4, 4)))  # (2, 4, 4, 4)
    after = F.interpolate(dec.classifier(h), size=(12, 12), mode="bilinear", align_corners=False)
    before = dec.classifier(F.interpolate(h, size=(12, 12), mode="bilinear", align_corners=False))
    assert_close(after, before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build", ["segnet", "cnn"])
def test_encoder_params_cover_each_whole_encoder_and_body_leaves_out_the_stem(build: str) -> None:
    torch.manual_seed(2)
    if build == "segnet":
        net, _ = tiny_segnet()
    else:
        net = build_cnn_net(dict.fromkeys(NAMES, 1), 2, 3, 2, 5, 3)
    owned: set[int] = set()
    for m in NAMES:
        enc = net.encoders[m]
        params = {id(p) for p in net.encoder_params(m)}
        assert params == {id(p) for p in enc.parameters()}  # every parameter of encoder m
        stem = {id(p) for p in enc.stem.parameters()}
        body = {id(p) for p in enc.body.parameters()}
        assert stem and body and stem | body == params
        assert {id(p) for p in net.encoder_body_params(m)} == body  # `reference`: the body, not the stem
        assert not owned & params  # no parameter belongs to two encoders
        owned |= params
    rest = {id(p) for p in net.head.parameters()} | {id(p) for p in net.fusion.parameters()}
    assert owned | rest == {id(p) for p in net.parameters()} and not owned & rest


def test_cggm_gm_term_on_segnet_uses_the_1x1_conv_gradients() -> None:
    torch.manual_seed(3)
    net, aux = tiny_segnet()
    task = segmentation()
    cfg = resolve_method_settings("cggm", {"variant": "paper", "lam": 0.1}, NAMES)
    method = CGGM(cfg, net, aux, task)
    state = forward_state(net, aux, task, *seg_batch(NAMES))
    extra = method.before_backward(state)
    assert extra is not None
    # Independent: B from ε(1) − ε(0) = ε with the official guard, in float64.
    e = torch.stack([state.eps[m] for m in NAMES]).double()
    b = (e.sum() + GUARD - e) / (e.sum() + GUARD)
    assert_close(method.balance, b, rtol=1e-12, atol=1e-15)
    assert float(method.balance.sum()) == pytest.approx(len(NAMES) - 1, abs=1e-6)  # Σ B = M − 1 when S ≠ 0
    # cos between the gradients of the (4, 4, 1, 1) conv weights, flattened.
    w_omega = net.head.classifier.weight
    g_head = torch.autograd.grad(state.task_loss, w_omega, retain_graph=True)[0]
    cos = []
    for m in NAMES:
        g = torch.autograd.grad(state.aux_losses[m], aux.heads[m].classifier.weight, retain_graph=True)[0]
        assert g.shape == g_head.shape == (4, 4, 1, 1)
        cos.append(torch.dot(g.flatten(), g_head.flatten()) / (g.norm() * g_head.norm()))
    expected = torch.mean(b.float().abs() - b.float() * torch.stack(cos))
    assert_close(state.scalars["loss/gm"], expected.detach(), rtol=1e-5, atol=1e-6)
    assert_close(extra.detach(), 0.1 * expected.detach(), rtol=1e-5, atol=1e-6)
    for i, m in enumerate(NAMES):
        assert_close(state.cos[m], cos[i].detach(), rtol=1e-5, atol=1e-6)
    # L_gm trains the decoder through g_Ω (create_graph): it has a gradient w.r.t. W_Ω.
    (g_w,) = torch.autograd.grad(extra, w_omega, retain_graph=True)
    assert float(g_w.abs().sum()) > 0


@pytest.mark.parametrize("variant", ["paper", "reference", "stable"])
def test_cggm_scales_each_segnet_encoder_by_rho_times_b(variant: str) -> None:
    torch.manual_seed(4)
    net, aux = tiny_segnet()
    task = segmentation()
    rho = 1.7
    method = CGGM(resolve_method_settings("cggm", {"variant": variant, "rho": rho}, NAMES), net, aux, task)
    state = forward_state(net, aux, task, *seg_batch(NAMES))
    extra = method.before_backward(state)
    (state.task_loss if extra is None else state.task_loss + extra).backward()
    before = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    assert all(f"encoders.{m}.stem.0.weight" in before for m in NAMES)
    coef = method.modulate(state)
    for i, m in enumerate(NAMES):
        b = float(method.balance[i])
        assert float(coef[m]) == pytest.approx(b)
        assert abs(rho * b - 1.0) > 1e-3  # a factor that would show if it were not applied
        for n, p in net.encoders[m].named_parameters():
            full = f"encoders.{m}.{n}"
            unscaled = variant == "reference" and n.startswith("stem.")
            factor = 1.0 if unscaled else rho * b
            assert_close(p.grad, before[full] * factor, rtol=1e-6, atol=1e-9)
    for n, p in net.head.named_parameters():  # the shared decoder is never scaled
        assert_close(p.grad, before[f"head.{n}"])


def test_stepper_on_segnet_logs_grad_norm_mod_as_rho_abs_b_times_grad_norm() -> None:
    torch.manual_seed(5)
    net, _ = tiny_segnet(["flair", "t1ce"])
    stepper = Stepper(net, segmentation(), "cggm", {"rho": 1.3}, log_every=1)
    for _ in range(4):
        xs, y = seg_batch(["flair", "t1ce"], 4)
        v = stepper.step(xs, y)
        for m in ("flair", "t1ce"):
            assert v[f"grad_norm/{m}"] > 0
            assert v[f"grad_norm_mod/{m}"] == pytest.approx(1.3 * abs(v[f"coef/{m}"]) * v[f"grad_norm/{m}"], rel=1e-4)
        assert 0.0 <= v["acc/flair"] <= 1.0 and "train/dice" in v


def test_cnn_shapes_and_mlp_aux_heads_shaped_like_w_omega() -> None:
    torch.manual_seed(6)
    net = build_cnn_net({"a": 1, "b": 3}, width=4, stages=3, blocks=1, head_hidden=7, out_dim=5)
    xs = {"a": torch.randn(2, 1, 16, 16), "b": torch.randn(2, 3, 16, 16)}
    feats = net.encode(xs)
    assert feats["a"].shape == feats["b"].shape == (2, 16)  # width 4 doubled twice, pooled
    assert net(xs).shape == (2, 5)
    aux = net.make_aux()
    w_omega = net.head_last_layer()
    assert isinstance(w_omega, nn.Linear) and w_omega.weight.shape == (5, 7)
    for m in ("a", "b"):
        assert aux.last_layer(m).weight.shape == (5, 7)
        assert aux.heads[m][0].in_features == 16
    assert net.probe_features("a", feats["a"]).shape == (2, 16)


def test_cggm_scales_cnn_encoders_by_rho_times_b() -> None:
    torch.manual_seed(7)
    names = ["a", "b"]
    net = build_cnn_net(dict.fromkeys(names, 1), 2, 2, 1, 5, 3)
    aux = net.make_aux()
    task = classification(3)
    method = CGGM(resolve_method_settings("cggm", {"rho": 1.3}, names), net, aux, task)
    xs, y = {m: torch.randn(8, 1, 8, 8) for m in names}, torch.randint(0, 3, (8,))
    state = forward_state(net, aux, task, xs, y)
    extra = method.before_backward(state)
    assert extra is not None
    (state.task_loss + extra).backward()
    before = {id(p): p.grad.clone() for p in net.parameters() if p.grad is not None}
    method.modulate(state)
    for i, m in enumerate(names):
        for p in net.encoder_params(m):
            assert_close(p.grad, before[id(p)] * 1.3 * float(method.balance[i]), rtol=1e-6, atol=1e-9)


def test_resolve_refuses_models_that_cannot_read_the_data_or_serve_the_task() -> None:
    with pytest.raises(
        SettingError, match="model 'segnet' reads image inputs, but this dataset's modalities are vector"
    ):
        resolve({"dataset": "synthetic", "method": "joint", "model": "segnet"})
    with pytest.raises(SettingError, match="model 'cnn' serves classification, regression, not segmentation"):
        resolve({"dataset": "synthetic_seg", "method": "joint", "model": "cnn"})
    with pytest.raises(SettingError, match="model 'mlp' reads vector inputs, but this dataset's modalities are image"):
        resolve({"dataset": "synthetic_seg", "method": "joint", "model": "mlp"})
    with pytest.raises(SettingError, match="model 'cnn' reads image inputs, but this dataset's modalities are vector"):
        resolve({"dataset": "mfeat", "method": "joint", "model": "cnn"})
    job = resolve({"dataset": "synthetic_seg", "method": "cggm", "segnet_width": 4})
    assert job.model == "segnet" and job.model_settings["segnet_width"] == 4
    with pytest.raises(SettingError, match="unknown setting 'cnn_width'"):
        resolve({"dataset": "synthetic_seg", "method": "joint", "cnn_width": 4})
