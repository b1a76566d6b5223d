"""AGM against its official code (lihong2303/AGM_ICCV2023 at 5a65542): the Shapley outputs, the score,
the coefficient, the cumulative mean, the window, the backward hooks and the clip; by hand, against
replicas of the official module and loop, and in 2-epoch runs on every task and model."""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from cggm_core.config import resolve
from cggm_core.methods import resolve_method_settings
from cggm_core.methods.agm import AGM, agm_coefficients, agm_dominance, agm_score, shapley_outputs, shapley_weights
from cggm_core.methods.base import StepState
from cggm_core.models import AuxHeads, ConcatFusion, MultimodalNet
from cggm_core.probe import shapley_values
from cggm_core.settings import SettingError
from cggm_core.step import Stepper
from cggm_core.tasks import classification, regression
from cggm_core.tracking import MemorySink
from cggm_core.trainer import Trainer, train

# -- the pieces by hand ----------------------------------------------------------------------------


def test_shapley_outputs_of_two_modalities_are_the_official_formula() -> None:
    # Bit 0 = a, bit 1 = v: v(1) = f(a, 0) (pad_visual_out), v(2) = f(0, v) (pad_audio_out), v(3) = f(a, v).
    assert shapley_weights(2) == [[0.0, 0.5, -0.5, 0.5], [0.0, -0.5, 0.5, 0.5]]
    torch.manual_seed(0)
    total, pad_visual, pad_audio = torch.randn(3, 5, 4).unbind(0)
    out_a, out_v = shapley_outputs({1: pad_visual, 2: pad_audio, 3: total}, 2)
    # model/CREMAD_net.py:11,17: 0.5·(total − pad_audio + pad_visual) and 0.5·(total − pad_visual + pad_audio).
    assert_close(out_a, 0.5 * (total - pad_audio + pad_visual))
    assert_close(out_v, 0.5 * (total - pad_visual + pad_audio))
    assert_close(out_a + out_v, total)


def test_shapley_outputs_of_three_modalities_are_the_official_formula() -> None:
    torch.manual_seed(1)
    a, v, t = 1, 2, 4  # bits of audio, visual, text
    values = {s: torch.randn(6, 2) for s in range(1, 8)}
    total = values[a | v | t]
    pad_audio, pad_visual, pad_text = values[v | t], values[a | t], values[a | v]
    pad_visual_audio, pad_visual_text, pad_audio_text = values[t], values[a], values[v]
    out_a, out_v, out_t = shapley_outputs(values, 3)
    # model/URFunny_net.py:13, 22, 31, term by term.
    official_t = (total - pad_text + pad_visual_audio) / 3 + (
        pad_visual - pad_audio_text + pad_audio - pad_visual_text
    ) / 6
    official_a = (total - pad_audio + pad_visual_text) / 3 + (
        pad_visual - pad_audio_text + pad_text - pad_visual_audio
    ) / 6
    official_v = (total - pad_visual + pad_audio_text) / 3 + (
        pad_audio - pad_visual_text + pad_text - pad_visual_audio
    ) / 6
    assert_close(out_a, official_a)
    assert_close(out_v, official_v)
    assert_close(out_t, official_t)


def test_shapley_outputs_are_exact_shapley_values_for_four_modalities() -> None:
    # With v(∅) = 0 the official decomposition is the exact Shapley value (probe.shapley_values, an
    # independent implementation), and the outputs sum to v(N).
    gen = random.Random(3)
    names = ["a", "b", "c", "d"]
    game = {s: gen.uniform(-2, 2) for s in range(1, 16)}

    def value(subset: frozenset[str]) -> float:
        mask = sum(1 << names.index(m) for m in subset)
        return game[mask] if mask else 0.0

    phi = shapley_values(value, names)
    outs = shapley_outputs({s: torch.tensor(x, dtype=torch.float64) for s, x in game.items()}, 4)
    assert [float(o) for o in outs] == pytest.approx([phi[m] for m in names], abs=1e-12)
    assert float(sum(outs)) == pytest.approx(game[15], abs=1e-12)


def test_score_is_the_floored_cross_entropy() -> None:
    logits = torch.tensor([[0.0, 0.0], [30.0, -30.0]])
    y = torch.tensor([0, 1])
    # p = 0.5 → −log 0.5 = 0.693147; p = e^−60/(1 + e^−60) < 1e-8 → −log 1e-8 = 18.420681 (CREMAD_main.py:133-134).
    # Mean: (0.693147 + 18.420681)/2 = 9.556914. Plain CE would give (0.693147 + 60)/2.
    assert float(agm_score(classification(2), logits, y)) == pytest.approx(9.556914, abs=1e-5)
    # Regression: the task's loss, L1: (|1.5 − 1| + |0 + 1|)/2 = 0.75.
    assert float(agm_score(regression(), torch.tensor([[1.5], [0.0]]), torch.tensor([1.0, -1.0]))) == 0.75


def test_coefficient_of_two_modalities_by_hand() -> None:
    # s = (0.5, 1.2), s̄ = (0.8, 0.9): r_a = 1.2 − 0.5 = 0.7, r̄_a = 0.9 − 0.8 = 0.1 (CREMAD_main.py:145-149).
    # c_a = exp(e^0.1 − e^0.7) = exp(1.105171 − 2.013753) = 0.403095; c_v = exp(e^−0.1 − e^−0.7) = 1.504186.
    c = agm_coefficients(torch.tensor([0.5, 1.2], dtype=torch.float64), torch.tensor([0.8, 0.9]).double(), 1.0, 10.0)
    assert c.tolist() == pytest.approx([0.403095, 1.504186], abs=1e-6)


def test_coefficient_exponent_is_capped() -> None:
    # s = (1, 1), s̄ = (0, 5): r = (0, 0), r̄ = (5, −5). a: e^5 − 1 = 147.4 → capped at 10: c_a = e^(0.5·10)
    # = 148.413159; v: e^−5 − 1 = −0.993262 → c_v = e^(0.5·−0.993262) = 0.608577.
    c = agm_coefficients(torch.tensor([1.0, 1.0]).double(), torch.tensor([0.0, 5.0]).double(), 0.5, 10.0)
    assert c.tolist() == pytest.approx([148.413159, 0.608577], rel=1e-6)


def test_coefficient_of_three_modalities_is_the_official_formula() -> None:
    # run/URFunny_main.py:117-130: ratio_m = exp((mean − s_m)·3/2), optimal from s̄, c = exp(α·min(opt − ratio, 7)).
    # s = (1, 2, 3), s̄ = (2, 2, 2): ratio = e^(1.5, 0, −1.5), optimal = 1:
    # c = (exp(1 − e^1.5), 1, exp(1 − e^−1.5)) = (0.030755, 1, 2.174655).
    assert agm_dominance(torch.tensor([1.0, 2.0, 3.0])).tolist() == pytest.approx([1.5, 0.0, -1.5])
    c = agm_coefficients(torch.tensor([1.0, 2.0, 3.0]).double(), torch.full((3,), 2.0).double(), 1.0, 7.0)
    assert c.tolist() == pytest.approx([0.030755, 1.0, 2.174655], abs=1e-6)


def make_agm(names: list[str] | None = None, **settings: Any) -> AGM:
    names = names or ["a", "v"]
    net = build_net(names, dropout=0.0)
    cfg = resolve_method_settings("agm", settings, names)
    return AGM(cfg, net, AuxHeads({m: 4 for m in names}, 6, 3), classification(3))


def test_cumulative_mean_since_step_one() -> None:
    agm = make_agm()
    # t=1: s̄ = 0 → r̄ = 0; r = (0.5, −0.5): c = (exp(1 − e^0.5), exp(1 − e^−0.5)) = (0.522714, 1.482114).
    assert agm.update(torch.tensor([0.5, 1.0])).tolist() == pytest.approx([0.522714, 1.482114], abs=1e-6)
    assert agm.mean_scores is not None and agm.mean_scores.tolist() == pytest.approx([0.5, 1.0])
    # t=2: r = (0.8, −0.8), r̄ = (0.5, −0.5): c = (exp(e^0.5 − e^0.8), exp(e^−0.5 − e^−0.8)) = (0.561682, 1.170232).
    assert agm.update(torch.tensor([0.2, 1.0])).tolist() == pytest.approx([0.561682, 1.170232], abs=1e-6)
    assert agm.mean_scores.tolist() == pytest.approx([0.35, 1.0])  # an EMA would not give the plain mean
    # t=3: r = (−0.6, 0.6), r̄ = (0.65, −0.65): c = (exp(e^0.65 − e^−0.6), …) = (3.922500, 0.272512).
    assert agm.update(torch.tensor([1.0, 0.4])).tolist() == pytest.approx([3.922500, 0.272512], abs=1e-6)
    assert agm.mean_scores.tolist() == pytest.approx([1.7 / 3, 0.8])
    # Many steps later s̄ is still the plain mean of every score so far.
    history = [torch.tensor([0.5, 1.0]), torch.tensor([0.2, 1.0]), torch.tensor([1.0, 0.4])]
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        s = torch.rand(2, generator=gen) * 3
        history.append(s)
        agm.update(s)
    assert_close(agm.mean_scores, torch.stack(history).double().mean(dim=0))
    assert agm.count == 203


def test_settings_are_checked() -> None:
    with pytest.raises(SettingError, match=r"agm_modulation_starts.*after agm_modulation_ends=2"):
        resolve_method_settings("agm", {"agm_modulation_starts": 3, "agm_modulation_ends": 2}, ["a", "v"])
    with pytest.raises(SettingError, match="at least 2 modalities"):
        resolve_method_settings("agm", {}, ["a"])
    with pytest.raises(SettingError, match="unknown setting 'agm_momentum'"):
        resolve_method_settings("agm", {"agm_momentum": 0.9}, ["a", "v"])


# -- a replica of the official module and loop ------------------------------------------------------


def build_net(names: list[str], dropout: float = 0.2, classes: int = 3) -> MultimodalNet:
    """Encoders with BatchNorm and dropout, a nonlinear head with dropout: train and eval modes differ."""
    encoders = {
        m: nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, 4))
        for m in names
    }
    head = nn.Sequential(nn.Linear(4 * len(names), 6), nn.ReLU(), nn.Dropout(dropout), nn.Linear(6, classes))
    return MultimodalNet(encoders, head, ConcatFusion(), feat_dims={m: 4 for m in names})


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class OfficialGradMod(nn.Module):
    """model/CREMAD_net.py:25-72 (two modalities) and model/URFunny_net.py:39-117 (three): the whole
    net once in train mode, then in eval mode with inputs zeroed; identity modules after each
    modality's output carry a full backward hook that scales the gradient by that modality's scale."""

    def __init__(self, net: MultimodalNet) -> None:
        super().__init__()
        self.net = net
        self.names = list(net.modalities)
        self.outs = nn.ModuleList([Identity() for _ in self.names])
        self.scales = [1.0] * len(self.names)
        for i, module in enumerate(self.outs):
            module.register_full_backward_hook(self.make_hook(i))

    def make_hook(self, i: int) -> Any:
        def hook(module: nn.Module, ginp: Any, gout: Any) -> tuple[torch.Tensor]:
            return (ginp[0].clone() * self.scales[i],)

        return hook

    def pad(self, xs: dict[str, torch.Tensor], *zeroed: str) -> torch.Tensor:
        return self.net({m: torch.zeros_like(x) if m in zeroed else x for m, x in xs.items()})

    def forward(self, xs: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        total = self.net(xs)
        self.net.eval()
        if len(self.names) == 2:
            a, v = self.names
            pad_visual, pad_audio = self.pad(xs, v), self.pad(xs, a)
            self.net.train()
            parts = [0.5 * (total - pad_audio + pad_visual), 0.5 * (total - pad_visual + pad_audio)]
        else:
            a, v, t = self.names
            pa, pv, pt = self.pad(xs, a), self.pad(xs, v), self.pad(xs, t)
            pva, pvt, pat = self.pad(xs, v, a), self.pad(xs, v, t), self.pad(xs, a, t)
            self.net.train()
            parts = [
                (total - pa + pvt) / 3 + (pv - pat + pt - pva) / 6,
                (total - pv + pat) / 3 + (pa - pvt + pt - pva) / 6,
                (total - pt + pva) / 3 + (pv - pat + pa - pvt) / 6,
            ]
        hooked = [module(p) for module, p in zip(self.outs, parts, strict=True)]
        return parts, torch.stack(hooked).sum(dim=0)


class OfficialLoop:
    """The official training step's AGM bookkeeping in plain Python floats: CREMAD_main.py:130-166
    for two modalities, URFunny_main.py:109-145 for three (the mean-based ratio, no floor)."""

    def __init__(self, num: int, alpha: float, cap: float, starts: int, ends: int) -> None:
        self.num, self.alpha, self.cap, self.starts, self.ends = num, alpha, cap, starts, ends
        self.train_score = [0.0] * num
        self.iteration = 0

    def coefficients(self, scores: list[float]) -> list[float]:
        self.iteration += 1
        it, s, ts = self.iteration, scores, self.train_score
        if self.num == 2:
            ratio = [math.exp(s[1] - s[0]), math.exp(s[0] - s[1])]
            optimal = [math.exp(ts[1] - ts[0]), math.exp(ts[0] - ts[1])]
        else:
            mean, opt_mean = sum(s) / 3, sum(ts) / 3
            ratio = [math.exp((mean - x) * 3 / 2) for x in s]
            optimal = [math.exp((opt_mean - x) * 3 / 2) for x in ts]
        coeff = [math.exp(self.alpha * min(o - r, self.cap)) for o, r in zip(optimal, ratio, strict=True)]
        self.train_score = [t * (it - 1) / it + x / it for t, x in zip(ts, s, strict=True)]
        return coeff

    def score(self, out: torch.Tensor, label: torch.Tensor) -> float:
        softmax = nn.Softmax(dim=1)
        total = 0.0
        for k in range(out.size(0)):
            p = softmax(out)[k][label[k]]
            if self.num == 2 and (torch.isinf(torch.log(p)) or p < 1e-8):
                total += float(-torch.log(torch.tensor(1e-8)))
            else:
                total += float(-torch.log(p))
        return total / out.size(0)


@pytest.mark.parametrize("names", [["a", "v"], ["a", "v", "t"]])
def test_training_matches_the_official_hooked_module_step_by_step(names: list[str]) -> None:
    """Every parameter of our one-backward Stepper equals the official hooked module's after each SGD
    step, through a window (epochs 2-3 of 4) and the held scale after it; the coefficients agree."""
    torch.manual_seed(0)
    ours_net = build_net(names)
    official_net = copy.deepcopy(ours_net)
    aux = AuxHeads({m: 4 for m in names}, 6, 3)
    alpha, cap, lr = 2.0, 10.0, 0.2
    settings = {"agm_alpha": alpha, "agm_max_exponent": cap, "agm_modulation_starts": 2, "agm_modulation_ends": 3}
    stepper = Stepper(
        ours_net, classification(3), "agm", settings, lr=lr, clip=0.0, log_every=1, aux=aux, optimizer_name="sgd"
    )
    gm = OfficialGradMod(official_net)
    opt = torch.optim.SGD(gm.parameters(), lr=lr, momentum=0.9)
    loop = OfficialLoop(len(names), alpha, cap, starts=2, ends=3)
    gen = torch.Generator().manual_seed(1)
    modulated = 0
    for epoch in range(1, 5):
        assert stepper.method is not None
        stepper.method.set_epoch(epoch)
        for step in range(3):
            xs = {m: torch.randn(16, 3, generator=gen) * (1 + i) for i, m in enumerate(names)}
            y = torch.randint(0, 3, (16,), generator=gen)
            torch.manual_seed(100 * epoch + step)  # the same dropout masks in both
            values = stepper.step(xs, y)

            torch.manual_seed(100 * epoch + step)
            parts, out = gm(xs)
            loss = nn.CrossEntropyLoss()(out, y)
            coeff = loop.coefficients([loop.score(p.detach(), y) for p in parts])
            if loop.starts <= epoch <= loop.ends:
                gm.scales = coeff  # update_scale; outside the window the hooks keep their scale
            opt.zero_grad()
            loss.backward()
            w = official_net.head_last_layer().weight.grad
            assert w is not None
            if w.max() > 1 or w.min() < -1:  # CREMAD_main.py:233-238
                nn.utils.clip_grad_norm_(gm.parameters(), max_norm=1.0)
            opt.step()

            assert [values[f"coef/{m}"] for m in names] == pytest.approx(gm.scales, rel=1e-5)
            assert [values[f"agm/c/{m}"] for m in names] == pytest.approx(coeff, rel=1e-5)
            assert values["loss/total"] == pytest.approx(float(loss.detach()), rel=1e-5)
            for (name, p), q in zip(ours_net.named_parameters(), official_net.parameters(), strict=True):
                assert_close(p, q, rtol=1e-5, atol=1e-6, msg=lambda s, n=name: f"{n}: {s}")
            modulated += epoch >= 2 and any(abs(c - 1) > 1e-3 for c in gm.scales)
    assert modulated >= 6  # the run did exercise the hooks (scales away from 1) inside and after the window


def test_one_step_gradients_equal_the_hooked_module_for_any_scales() -> None:
    """The hook form with given scales, every parameter's gradient: head included (scaling encoder
    gradients after the fact would leave the head's alone), zero-input passes in eval mode."""
    names = ["a", "v"]
    torch.manual_seed(4)
    net = build_net(names)
    official_net = copy.deepcopy(net)
    agm = AGM(
        resolve_method_settings("agm", {"agm_clip": 0.0}, names),
        net,
        AuxHeads({m: 4 for m in names}, 6, 3),
        classification(3),
    )
    xs = {m: torch.randn(8, 3) for m in names}
    y = torch.randint(0, 3, (8,))
    scales = torch.tensor([0.3, 2.5], dtype=torch.float64)

    torch.manual_seed(7)
    net.train()
    feats = net.encode(xs)
    pred = net.fuse(feats)
    task_loss = agm.task.loss(pred, y)
    state = StepState(1, False, xs, y, feats, pred, task_loss, {}, {}, {})
    agm._next_scale = lambda coef: scales  # type: ignore[method-assign]  # fixed scales instead of c
    extra = agm.before_backward(state)
    assert extra is not None
    (task_loss + extra).backward()

    torch.manual_seed(7)
    gm = OfficialGradMod(official_net)
    gm.scales = scales.tolist()
    _, out = gm(xs)
    nn.CrossEntropyLoss()(out, y).backward()
    for (name, p), q in zip(net.named_parameters(), official_net.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=lambda s, n=name: f"{n}: {s}")
    # The head's gradient is modulated too: it differs from the plain backward's.
    plain = copy.deepcopy(official_net)
    plain.zero_grad()
    torch.manual_seed(7)
    nn.CrossEntropyLoss()(plain(xs), y).backward()
    head_w = net.head_last_layer().weight.grad
    assert head_w is not None and not torch.allclose(head_w, plain.head_last_layer().weight.grad, atol=1e-4)


@pytest.mark.parametrize("num", [2, 3])
def test_coefficients_equal_the_official_on_identical_scores(num: int) -> None:
    """400 steps of scores over 8 epochs, window 3-5, fed to ours and to the official loop's formulas."""
    agm = make_agm(
        ["a", "v", "t"][:num], agm_alpha=0.7, agm_max_exponent=7.0, agm_modulation_starts=3, agm_modulation_ends=5
    )
    loop = OfficialLoop(num, 0.7, 7.0, 3, 5)
    gen = random.Random(num)
    scale = [1.0] * num
    ours, official = [], []
    for epoch in range(1, 9):
        agm.set_epoch(epoch)
        for _ in range(50):
            s = [gen.uniform(0.2, 2.5) for _ in range(num)]
            c = agm.update(torch.tensor(s, dtype=torch.float64))
            applied = agm._next_scale(c)
            agm.scale = applied
            coeff = loop.coefficients(s)
            if 3 <= epoch <= 5:
                scale = coeff
            ours.append([1.0] * num if applied is None else applied.tolist())
            official.append(list(scale))
    assert_close(
        torch.tensor(ours, dtype=torch.float64), torch.tensor(official, dtype=torch.float64), rtol=1e-12, atol=0.0
    )


def test_conditional_clip_looks_at_the_head_weights_elements() -> None:
    agm = make_agm()
    params = list(agm.model.parameters())

    def set_grads(big: float) -> list[torch.Tensor]:
        torch.manual_seed(0)
        for p in params:
            p.grad = torch.rand_like(p) * 0.8 - 0.4  # |g| ≤ 0.4 everywhere
        w = agm.model.head_last_layer().weight
        assert w.grad is not None
        w.grad[0, 0] = big
        return [p.grad.clone() for p in params if p.grad is not None]

    # All |W_Ω grad| ≤ 1 but the total norm > 1: the official leaves the gradient alone.
    before = set_grads(0.9)
    assert float(torch.nn.utils.get_total_norm(before)) > 1.0
    agm._conditional_clip()
    assert all(torch.equal(p.grad, g) for p, g in zip(params, before, strict=True))
    # One element at 1.5: clip_grad_norm_(model, 1.0), exactly as torch does it.
    before = set_grads(1.5)
    agm._conditional_clip()
    copies = [nn.Parameter(torch.zeros_like(g)) for g in before]
    for c, g in zip(copies, before, strict=True):
        c.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(copies, 1.0)
    for p, c in zip(params, copies, strict=True):
        assert_close(p.grad, c.grad)
    assert float(torch.nn.utils.get_total_norm([p.grad for p in params])) == pytest.approx(1.0, rel=1e-5)


# -- the window ------------------------------------------------------------------------------------


def one_state(agm: AGM, seed: int) -> StepState:
    torch.manual_seed(seed)
    xs = {m: torch.randn(8, 3) for m in agm.modalities}
    y = torch.randint(0, 3, (8,))
    agm.model.train()
    feats = agm.model.encode(xs)
    pred = agm.model.fuse(feats)
    return StepState(seed, True, xs, y, feats, pred, agm.task.loss(pred, y), {}, {}, {})


@pytest.mark.parametrize("hold", [True, False])
def test_window_boundaries(hold: bool) -> None:
    agm = make_agm(agm_modulation_starts=2, agm_modulation_ends=3, agm_hold_after_window=hold, agm_clip=0.0)
    applied: dict[int, list[float]] = {}
    for epoch in (1, 2, 3, 4):
        agm.set_epoch(epoch)
        state = one_state(agm, epoch)
        extra = agm.before_backward(state)
        coef = agm.modulate(state)
        applied[epoch] = [float(coef[m]) for m in agm.modalities]
        computed = [float(state.scalars[f"agm/c/{m}"]) for m in agm.modalities]
        if epoch == 1:  # before the window: no hooks, the plain backward
            assert extra is None and applied[1] == [1.0, 1.0]
            assert computed != [1.0, 1.0]  # the coefficient is computed (and s̄ updated) all the same
        elif epoch in (2, 3):  # both boundaries are inside
            assert extra is not None and applied[epoch] == pytest.approx(computed)
            assert all(abs(c - 1) > 1e-4 for c in applied[epoch])
        elif hold:  # after: the hooks keep the last scale, as the official's
            assert extra is not None and applied[4] == applied[3]
        else:
            assert extra is None and applied[4] == [1.0, 1.0]
    assert agm.count == 4


def test_window_in_the_trainer() -> None:
    """3 epochs of 2 steps, window 2-2: coef/<m> is 1 in epoch 1, c in epoch 2, held in epoch 3."""
    sink = MemorySink()
    cfg = {
        "dataset": "synthetic",
        "method": "agm",
        "epochs": 3,
        "train_size": 64,
        "val_size": 32,
        "test_size": 32,
        "batch_size": 32,
        "linear_probe": False,
        "shapley": False,
        "agm_modulation_starts": 2,
        "agm_modulation_ends": 2,
        "agm_alpha": 3.0,
    }
    train(cfg, sink=sink, device="cpu")
    coef = [v for _, v in sink.series("coef/m0")]
    c = [v for _, v in sink.series("agm/c/m0")]
    assert len(coef) == 6
    assert coef[:2] == [1.0, 1.0]
    assert coef[2:4] == pytest.approx(c[2:4]) and all(abs(x - 1) > 1e-4 for x in coef[2:4])
    assert coef[4:] == [coef[3], coef[3]] and c[4:] != coef[4:]


def test_resume_restores_the_mean_and_the_held_scale(tmp_path: Path) -> None:
    """Window 1-1, 3 epochs: epochs 2-3 run on the scale held from epoch 1 and s̄ keeps counting;
    a run resumed after epoch 1 logs exactly what the uninterrupted run logs."""
    cfg = {
        "dataset": "synthetic",
        "method": "agm",
        "train_size": 64,
        "val_size": 32,
        "test_size": 32,
        "batch_size": 32,
        "linear_probe": False,
        "shapley": False,
        "agm_modulation_starts": 1,
        "agm_modulation_ends": 1,
        "agm_alpha": 2.0,
    }
    straight = MemorySink()
    train({**cfg, "epochs": 3}, out_dir=tmp_path / "a", sink=straight, device="cpu")
    first, second = MemorySink(), MemorySink()
    train({**cfg, "epochs": 1}, out_dir=tmp_path / "b", sink=first, device="cpu")
    train(
        {**cfg, "epochs": 3}, out_dir=tmp_path / "b", sink=second, device="cpu", resume=tmp_path / "b" / "checkpoint.pt"
    )

    def trained(points: list[Any]) -> list[tuple[str, int, float]]:
        return [(p.key, p.step, p.value) for p in points if not p.key.startswith(("probe", "test", "system/"))]

    assert trained(first.points) + trained(second.points) == trained(straight.points)
    coef = [v for _, v in straight.series("coef/m0")]
    assert coef[2:] == [coef[1]] * 4 and coef[1] != 1.0  # held after the window


# -- every task and model --------------------------------------------------------------------------

SEQ = {"dataset": "synthetic_seq", "train_size": 32, "val_size": 16, "test_size": 16, "lengths": "8,12"}
SEQ_MODEL = {"widths": "3,5", "d_model": 8, "heads": 2, "enc_layers": 1, "fusion_layers": 1, "aux_layers": 1}
SEG = {
    "dataset": "synthetic_seg",
    "seg_size": 16,
    "seg_depth": 4,
    "seg_train_volumes": 4,
    "seg_val_volumes": 2,
    "seg_test_volumes": 2,
    "segnet_width": 2,
    "segnet_dec_width": 4,
}
RUNS: dict[str, dict[str, Any]] = {
    "synthetic-classification-mlp": {"dataset": "synthetic", "train_size": 64, "val_size": 32, "test_size": 32},
    "synthetic-regression-mlp": {
        "dataset": "synthetic",
        "task": "regression",
        "train_size": 64,
        "val_size": 32,
        "test_size": 32,
    },
    "synthetic3-classification-mlp": {
        "dataset": "synthetic",
        "modalities": 3,
        "strengths": "3,2,1",
        "train_size": 64,
        "val_size": 32,
        "test_size": 32,
    },
    "seq-classification-transformer": {**SEQ, **SEQ_MODEL},
    "seq-regression-transformer": {**SEQ, **SEQ_MODEL, "task": "regression"},
    "seg-segmentation-segnet": SEG,
}


def check_two_epochs(trainer: Trainer, sink: MemorySink, start: dict[str, list[torch.Tensor]]) -> None:
    """Epoch 1 outside the window (coef 1), epoch 2 inside (coefficients ≠ 1), every value finite."""
    per_epoch = len(sink.series("train/loss")) // 2
    summary = trainer.history[-1]
    assert all(math.isfinite(v) for v in summary.values())
    for m in trainer.data.modalities:
        coef = [v for _, v in sink.series(f"coef/{m}")]
        assert len(coef) == 2 * per_epoch and all(math.isfinite(c) for c in coef)
        assert coef[:per_epoch] == [1.0] * per_epoch
        moved = any(
            not torch.equal(a, b.detach()) for a, b in zip(start[m], trainer.model.encoder_params(m), strict=True)
        )
        assert moved, m
    assert any(abs(c - 1.0) > 1e-6 for m in trainer.data.modalities for _, c in sink.series(f"coef/{m}")[per_epoch:])


@pytest.mark.parametrize("run", list(RUNS), ids=list(RUNS))
def test_two_epochs_on_every_task_and_model(run: str) -> None:
    cfg = RUNS[run]
    job = resolve(
        {
            **cfg,
            "method": "agm",
            "agm_modulation_starts": 2,
            "agm_modulation_ends": 2,
            "agm_alpha": 2.0,
            "epochs": 2,
            "batch_size": 16,
            "probe_steps": 5,
        }
    )
    sink = MemorySink()
    trainer = Trainer(job, device="cpu", sink=sink, progress=False)
    trainer.setup()
    start = {m: [p.detach().clone() for p in trainer.model.encoder_params(m)] for m in trainer.data.modalities}
    trainer.fit()
    check_two_epochs(trainer, sink, start)


def test_two_epochs_with_the_cnn_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from cggm_core.data import DATASETS

    from .test_synthetic_seg import SliceKinds

    monkeypatch.setitem(DATASETS, SliceKinds.name, SliceKinds)
    cfg = {**SEG, "dataset": SliceKinds.name, "cnn_width": 2, "cnn_stages": 2, "cnn_head_hidden": 6}
    cfg = {k: v for k, v in cfg.items() if not k.startswith("segnet")}
    job = resolve(
        {
            **cfg,
            "method": "agm",
            "agm_modulation_starts": 2,
            "agm_modulation_ends": 2,
            "agm_alpha": 2.0,
            "epochs": 2,
            "batch_size": 8,
            "probe_steps": 5,
        }
    )
    assert job.model == "cnn"
    sink = MemorySink()
    trainer = Trainer(job, device="cpu", sink=sink, progress=False)
    trainer.setup()
    start = {m: [p.detach().clone() for p in trainer.model.encoder_params(m)] for m in trainer.data.modalities}
    trainer.fit()
    check_two_epochs(trainer, sink, start)


def test_zero_input_passes_leave_batchnorm_statistics_alone() -> None:
    """The zeroed passes run in eval mode: the encoders' running statistics move once a step (the
    real forward), exactly as under `joint`."""
    names = ["a", "v"]
    results = {}
    for method in ("joint", "agm"):
        torch.manual_seed(0)
        net = build_net(names)
        stepper = Stepper(
            net, classification(3), method, {}, lr=1e-2, log_every=1, aux=AuxHeads({m: 4 for m in names}, 6, 3)
        )
        torch.manual_seed(1)
        xs = {m: torch.randn(16, 3) for m in names}
        stepper.step(xs, torch.randint(0, 3, (16,)))
        results[method] = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    for k, v in results["joint"].items():
        assert torch.equal(v, results["agm"][k]), k
