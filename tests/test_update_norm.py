"""`update_norm/<m>`: how far each encoder moved in the step (issue 12 item 4, DESIGN §6).

Against a hand-computed SGD step θ − lr·g; the Adam case where a gradient scale cancels (the
reason the key exists); MLA's several passes counted as one move; logged by every method.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from cggm_core.keys import family_of
from cggm_core.methods import METHODS
from cggm_core.models import MultimodalNet
from cggm_core.step import Stepper
from cggm_core.tasks import classification
from cggm_core.tracking import MemorySink

from .utils import random_batch, tiny_net

NAMES = ["a", "b"]
LR = 0.1


def snapshot(net: MultimodalNet) -> dict[str, list[torch.Tensor]]:
    return {m: [p.detach().clone() for p in net.encoder_params(m)] for m in net.modalities}


def moved(net: MultimodalNet, before: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    return {
        m: math.sqrt(sum(float((p.detach() - q).pow(2).sum()) for p, q in zip(net.encoder_params(m), old, strict=True)))
        for m, old in before.items()
    }


def test_update_norm_is_lr_times_the_gradient_norm_under_plain_sgd() -> None:
    """joint, SGD without momentum or decay, no clip: θ' = θ − lr·g, so ‖θ' − θ‖ = lr·‖g‖ with g the
    task loss's gradient (the aux losses never reach an encoder), computed here on a copy."""
    torch.manual_seed(0)
    net, aux = tiny_net(NAMES)
    xs, y = random_batch(NAMES, 16, 3)
    task = classification(3)
    ref = copy.deepcopy(net)
    loss = task.loss(ref.fuse(ref.encode(xs)), y)
    grads = {m: torch.autograd.grad(loss, ref.encoder_params(m), retain_graph=True) for m in NAMES}
    expected_params = {m: [p - LR * g for p, g in zip(ref.encoder_params(m), grads[m], strict=True)] for m in NAMES}

    stepper = Stepper(net, task, "joint", lr=LR, clip=0.0, optimizer_name="sgd", momentum=0.0, aux=aux)
    values = stepper.step(xs, y)
    for m in NAMES:
        by_hand = LR * math.sqrt(sum(float(g.pow(2).sum()) for g in grads[m]))
        assert by_hand > 1e-4  # a real move, not 0 == 0
        assert values[f"update_norm/{m}"] == pytest.approx(by_hand, rel=1e-5)
        for p, q in zip(net.encoder_params(m), expected_params[m], strict=True):
            torch.testing.assert_close(p.detach(), q.detach())
        # and the probe's own gradient norm agrees: update = lr · grad_norm_mod (no clip, no momentum)
        assert values[f"update_norm/{m}"] == pytest.approx(LR * values[f"grad_norm_mod/{m}"], rel=1e-5)


def test_under_sgd_a_scaled_gradient_moves_the_encoder_less_and_under_adam_it_does_not() -> None:
    """OGM-GE without noise scales the dominant encoder's weight gradients by k < 1. SGD: its move is
    lr·‖k·g_w, g_b‖. Adam's first step moves each element by lr·g/(|g| + ε) ≈ ±lr whatever k is:
    update_norm ≈ lr·√(elements with a gradient), for the scaled encoder as for the other."""
    settings: dict[str, Any] = {"ge_noise": False, "ogm_alpha": 2.0}
    results = {}
    for opt in ("sgd", "adam"):
        torch.manual_seed(1)
        net, aux = tiny_net(NAMES)
        xs, y = random_batch(NAMES, 32, 3)
        stepper = Stepper(
            net, classification(3), "ogm_ge", settings, lr=LR, clip=0.0, optimizer_name=opt, momentum=0.0, aux=aux
        )
        results[opt] = (stepper.step(xs, y), net)
    sgd_values, _ = results["sgd"]
    coefs = {m: sgd_values[f"coef/{m}"] for m in NAMES}
    dominant = min(coefs, key=lambda m: coefs[m])
    assert coefs[dominant] < 0.5  # the modulation is strong
    for m in NAMES:
        assert sgd_values[f"update_norm/{m}"] == pytest.approx(LR * sgd_values[f"grad_norm_mod/{m}"], rel=1e-5)
    # SGD: the dominant encoder moves clearly less than its unmodulated gradient would take it
    # (its biases are not scaled: OGM-GE scales tensors of ≥ 2 dimensions only).
    assert sgd_values[f"update_norm/{dominant}"] < 0.8 * LR * sgd_values[f"grad_norm/{dominant}"]
    adam_values, adam_net = results["adam"]
    for m in NAMES:
        # Adam's first step by hand from the (modulated) gradients it saw: lr·g/(√(g²) + 1e-8) per element.
        grads = [p.grad for p in adam_net.encoder_params(m) if p.grad is not None]
        by_hand = LR * math.sqrt(sum(float((g / (g.abs() + 1e-8)).pow(2).sum()) for g in grads))
        assert adam_values[f"update_norm/{m}"] == pytest.approx(by_hand, rel=1e-4)
        # ≈ ±lr per element whatever k was: within 3% of lr·√(elements with a gradient) for the scaled
        # encoder as for the other (ReLU leaves a few at 0, and a gradient near ε moves less).
        live = sum(int((g != 0).sum()) for g in grads)
        assert 0.97 < adam_values[f"update_norm/{m}"] / (LR * math.sqrt(live)) <= 1.0


def test_mla_update_norm_is_the_whole_step_over_its_passes() -> None:
    """MLA trains encoder a in pass 1 and b in pass 2: each moved once, measured from before pass 1."""
    torch.manual_seed(2)
    net, aux = tiny_net(NAMES)
    xs, y = random_batch(NAMES, 16, 3)
    stepper = Stepper(net, classification(3), "mla", lr=LR, clip=0.0, optimizer_name="sgd", momentum=0.0, aux=aux)
    before = snapshot(net)
    values = stepper.step(xs, y)
    for m, d in moved(net, before).items():
        assert d > 1e-4
        assert values[f"update_norm/{m}"] == pytest.approx(d, rel=1e-5)


def method_settings(method: str) -> dict[str, Any]:
    if method == "unimodal":
        return {"modality": "a"}
    if method == "mslr":
        return {"mslr_lr_scales": "b=3"}
    return {}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_every_method_logs_update_norm_as_far_as_each_encoder_moved(method: str, opt: str) -> None:
    """Three steps with log_every 2: only step 2 logs, and it logs what the test measures around it."""
    torch.manual_seed(3)
    net, aux = tiny_net(NAMES)
    sink = MemorySink()
    stepper = Stepper(
        net, classification(3), method, method_settings(method), lr=1e-2, optimizer_name=opt, log_every=2, sink=sink
    )
    stepper.attach_aux(aux)
    gen = torch.Generator().manual_seed(4)
    for step in (1, 2, 3):
        xs = {m: torch.randn(16, 3, generator=gen) for m in NAMES}
        y = torch.randint(0, 3, (16,), generator=gen)
        before = snapshot(net)
        values = stepper.step(xs, y)
        if step != 2:
            assert values == {}
            continue
        for m, d in moved(net, before).items():
            assert values[f"update_norm/{m}"] == pytest.approx(d, rel=1e-5, abs=1e-9)
        if method == "unimodal":  # the other encoder never trains
            assert values["update_norm/b"] == 0.0 and values["update_norm/a"] > 0
        else:
            assert all(values[f"update_norm/{m}"] > 0 for m in NAMES)
    assert [s for s, _ in sink.series("update_norm/a")] == [2]


def test_update_norm_is_a_declared_per_modality_family_beside_the_gradient_norms() -> None:
    from cggm_core.keys import FAMILIES

    hit = family_of("update_norm/kar")
    assert hit is not None and hit.family.name == "update_norm" and hit.modality == "kar"
    assert hit.family.scale == "log" and hit.family.when == "step" and hit.family.source == "probe"
    names = [f.name for f in FAMILIES]
    # the run page draws families in catalog order: update_norm right after the two gradient norms
    assert names.index("update_norm") == names.index("grad_norm_mod") + 1 == names.index("grad_norm") + 2
