"""The transformer model: sinusoidal positions, padding masks, and CGGM's B, L_gm and ρ·B on it."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from cggm_core.methods import resolve_method_settings
from cggm_core.methods.base import StepState
from cggm_core.methods.cggm import CGGM, GUARD
from cggm_core.models import AuxHeads, MultimodalNet, build_transformer_net
from cggm_core.models.transformer import SequenceAuxHead, SequenceEncoder, sinusoidal_embedding
from cggm_core.step import Stepper
from cggm_core.tasks import Task, classification, regression

NAMES = ["a", "b"]
WIDTHS = {"a": 3, "b": 5}
LENGTHS = {"a": [3, 5, 1, 4], "b": [6, 2, 4, 1]}  # per sample; the longest of each is the padded T


def tiny(out_dim: int = 4, seed: int = 0, **sizes: object) -> tuple[MultimodalNet, AuxHeads]:
    torch.manual_seed(seed)
    kw = {"d_model": 8, "heads": 2, "enc_layers": 2, "fusion_layers": 2, "aux_layers": 1, **sizes}
    net = build_transformer_net(WIDTHS, out_dim, **kw)  # type: ignore[arg-type]
    return net, net.make_aux()


def padded_batch(seed: int = 0, fill: float = 1e3) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Sequences of LENGTHS, padded at the end with `fill` (anything read from a padded step shows)."""
    gen = torch.Generator().manual_seed(seed)
    xs, masks = {}, {}
    for m in NAMES:
        lengths = torch.tensor(LENGTHS[m])
        t = int(lengths.max())
        mask = torch.arange(t)[None, :] < lengths[:, None]  # (B, T)
        x = torch.randn(len(lengths), t, WIDTHS[m], generator=gen)
        xs[m] = torch.where(mask[:, :, None], x, torch.full_like(x, fill))
        masks[m] = mask
    return xs, masks


def alone(xs: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """Sample i by itself: its real steps only, no padding, no mask."""
    return {m: xs[m][i : i + 1, : LENGTHS[m][i]] for m in NAMES}


def test_sinusoidal_embedding_by_hand() -> None:
    # dim 4: half = 2, frequencies 10000^(−i/(half−1)) = (1, 1e-4); (sin, sin, cos, cos); position 0 is zeros.
    emb = sinusoidal_embedding(torch.tensor([0, 1, 3]), 4)
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0],
            [math.sin(1), math.sin(1e-4), math.cos(1), math.cos(1e-4)],
            [math.sin(3), math.sin(3e-4), math.cos(3), math.cos(3e-4)],
        ]
    )
    assert_close(emb, expected)
    # An odd width gets a zero last channel (fairseq's get_embedding).
    assert_close(sinusoidal_embedding(torch.tensor([2]), 5)[0, -1], torch.tensor(0.0))


@pytest.mark.parametrize("fill", [0.0, 1e3])
def test_a_padded_batch_gives_each_sample_the_output_it_gets_alone(fill: float) -> None:
    """Encoders, fusion + head, and aux heads on a padded, masked batch equal each sample alone."""
    net, aux = tiny()
    net.eval()
    aux.eval()
    xs, masks = padded_batch(fill=fill)
    feats = net.encode(xs, masks)
    pred = net.fuse(feats, masks=masks)
    z = aux(feats, masks)
    for i in range(4):
        one = alone(xs, i)
        feats_1 = net.encode(one)
        for m in NAMES:
            real = LENGTHS[m][i]
            assert_close(feats[m][i : i + 1, :real], feats_1[m])
            assert torch.all(feats[m][i, real:] == 0)  # padded steps come out as zeros
            assert_close(z[m][i : i + 1], aux(feats_1)[m])
        assert_close(pred[i : i + 1], net.fuse(feats_1))
        assert_close(net(xs, masks)[i : i + 1], net(one))


def test_without_the_mask_padding_changes_the_output() -> None:
    """The check above has teeth: the same padded batch read without masks differs from alone."""
    net, _ = tiny()
    net.eval()
    xs, _ = padded_batch(fill=0.0)  # zero padding, as MulT's files; still not the same as no padding
    i = 2  # a = 1 step of 5, b = 4 of 6
    assert not torch.allclose(net(xs)[i : i + 1], net(alone(xs, i)), atol=1e-4)


def test_fusion_positions_count_real_steps_only() -> None:
    """Modality b's first real step sits at position len_a + 1 in the fusion, whatever a's padding."""
    net, _ = tiny()
    net.eval()
    xs, masks = padded_batch()
    feats = net.encode(xs, masks)
    # Sample 2 has a of 1 real step padded to 5: with positions counting padded steps, b would
    # start at position 6, not 2, and the fused output would change.
    i = 2
    fused = net.fusion([feats[m][i : i + 1] for m in NAMES], masks=[masks[m][i : i + 1] for m in NAMES])
    one = net.encode(alone(xs, i))
    assert_close(fused, net.fusion([one[m] for m in NAMES]))


def test_encoder_body_is_the_transformer_and_the_projection_is_outside() -> None:
    net, aux = tiny()
    enc = net.encoders["a"]
    assert isinstance(enc, SequenceEncoder)
    assert isinstance(enc.proj, torch.nn.Conv1d) and enc.proj.kernel_size == (1,)
    body = {id(p) for p in net.encoder_body_params("a")}
    assert id(enc.proj.weight) not in body and id(enc.proj.bias) not in body
    assert body == {id(p) for p in enc.body.parameters()}
    # W_Ω is the head's out_layer; every aux head ends in a layer of the same shape.
    assert net.head_last_layer() is net.head.out_layer  # type: ignore[union-attr]
    for m in NAMES:
        assert aux.last_layer(m).weight.shape == net.head_last_layer().weight.shape == (4, 8)


def test_aux_head_proj_twice_is_the_official_classifier() -> None:
    torch.manual_seed(0)
    net, _ = tiny(aux_proj_twice=True)
    head = net.make_aux().heads["a"]
    assert isinstance(head, SequenceAuxHead)
    head.eval()
    h = torch.randn(2, 3, 8)
    first = head.body(h)[:, 0]
    expected = head.out_layer(torch.relu(head.proj1(head.proj1(first))))  # the official forward
    assert_close(head(h), expected)
    head.proj_twice = False
    assert_close(head(h), head.out_layer(torch.relu(head.proj1(first))))


def test_dropouts_are_the_settings_and_active_only_in_training() -> None:
    net, _ = tiny(attn_dropout=0.5, relu_dropout=0.5, embed_dropout=0.5, res_dropout=0.5, out_dropout=0.5)
    xs, masks = padded_batch()
    net.eval()
    assert_close(net(xs, masks), net(xs, masks))
    net.train()
    torch.manual_seed(1)
    a = net(xs, masks)
    torch.manual_seed(2)
    assert not torch.allclose(a, net(xs, masks))


# -- CGGM on the transformer ----------------------------------------------------------------------


def forward_state(net: MultimodalNet, aux: AuxHeads, task: Task, y: torch.Tensor) -> StepState:
    """One forward pass on the padded batch, as the Stepper builds the state."""
    xs, masks = padded_batch(seed=3)
    feats = net.encode(xs, masks)
    pred = net.fuse(feats, masks=masks)
    z = aux(feats, masks)
    aux_losses = {m: task.loss(z[m], y) for m in z}
    eps = {m: task.metric(z[m], y) for m in z}
    return StepState(1, True, xs, y, feats, pred, task.loss(pred, y), z, aux_losses, eps, masks)


@pytest.mark.parametrize("task", [classification(4), regression(1)], ids=["classification", "regression"])
def test_paper_gm_term_reads_out_layer_and_the_aux_heads_last_layers(task: Task) -> None:
    net, aux = tiny(task.num_outputs, seed=4)
    y = torch.tensor([0, 3, 1, 3]) if task.name == "classification" else torch.tensor([[0.5], [-1.0], [2.0], [-0.2]])
    method = CGGM(resolve_method_settings("cggm", {"variant": "paper", "lam": 0.3}, NAMES), net, aux, task)
    state = forward_state(net, aux, task, y)
    extra = method.before_backward(state)
    assert extra is not None
    # Independently: B from ε(1) − ε(0) = ε(1) with the official guard (float64, as the method).
    eps = torch.stack([state.eps[m] for m in NAMES]).double()
    b = (eps.sum() + GUARD - eps) / (eps.sum() + GUARD)
    assert_close(method.balance, b)
    # g_Ω: ∂L_task/∂(head.out_layer.weight); g_m: ∂ℓ(z_m)/∂(aux head m's out_layer.weight).
    w_omega = net.head.out_layer.weight  # type: ignore[union-attr]
    g_head = torch.autograd.grad(state.task_loss, w_omega, retain_graph=True)[0]
    cos = []
    for m in NAMES:
        w_m = aux.heads[m].out_layer.weight  # type: ignore[union-attr]
        g = torch.autograd.grad(state.aux_losses[m], w_m, retain_graph=True)[0]
        cos.append(torch.dot(g.flatten(), g_head.flatten()) / (g.norm() * g_head.norm()))
    bf = b.float()
    expected = torch.mean(bf.abs() - bf * torch.stack(cos))
    assert_close(state.scalars["loss/gm"], expected.detach(), rtol=1e-5, atol=1e-6)
    assert_close(extra.detach(), 0.3 * expected.detach(), rtol=1e-5, atol=1e-6)
    # L_gm trains the model through g_Ω (create_graph): it reaches the encoders.
    g_enc = torch.autograd.grad(extra, net.encoder_params("b"), retain_graph=True, allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in g_enc)


@pytest.mark.parametrize("variant", ["paper", "reference", "stable"])
def test_encoder_gradients_are_exactly_rho_b_times_the_unscaled_ones(variant: str) -> None:
    net, aux = tiny(seed=5)
    task = classification(4)
    rho = 1.7
    method = CGGM(resolve_method_settings("cggm", {"variant": variant, "rho": rho}, NAMES), net, aux, task)
    state = forward_state(net, aux, task, torch.tensor([1, 0, 2, 3]))
    extra = method.before_backward(state)
    (state.task_loss if extra is None else state.task_loss + extra).backward()
    before = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    coef = method.modulate(state)
    for i, m in enumerate(NAMES):
        b = method.balance[i]
        assert float(coef[m]) == float(b)
        enc = net.encoders[m]
        for n, p in enc.named_parameters():
            # reference scales only the transformer (`body`); the Conv1d projection keeps its gradient.
            scaled = variant != "reference" or n.startswith("body.")
            unscaled = before[f"encoders.{m}.{n}"]
            # Bit for bit: the float64 factor ρ·B_m rounded to float32 once, times the unscaled gradient.
            assert torch.equal(p.grad, unscaled * (rho * b).float() if scaled else unscaled)  # type: ignore[arg-type]
        if variant == "reference":
            proj_grad = enc.proj.weight.grad  # type: ignore[union-attr]
            assert torch.equal(proj_grad, before[f"encoders.{m}.proj.weight"])  # type: ignore[arg-type]
        assert (rho * float(b)) != pytest.approx(1.0)  # the factor is not a no-op here
    for n, p in [*net.fusion.named_parameters(prefix="fusion"), *net.head.named_parameters(prefix="head")]:
        assert torch.equal(p.grad, before[n])  # type: ignore[arg-type]


def test_stepper_logs_grad_norm_mod_as_rho_abs_b_on_the_transformer() -> None:
    net, _ = tiny(seed=6)
    stepper = Stepper(net, classification(4), "cggm", {"rho": 1.3}, clip=0.8, log_every=1)
    stepper.attach_aux(net.make_aux())
    xs, masks = padded_batch(seed=7)
    for k in range(3):
        v = stepper.step(xs, torch.tensor([k % 4, 1, 2, 3]), masks)
        for m in NAMES:
            assert v[f"grad_norm_mod/{m}"] == pytest.approx(1.3 * abs(v[f"coef/{m}"]) * v[f"grad_norm/{m}"], rel=1e-4)
