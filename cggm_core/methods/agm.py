"""AGM: Adaptive Gradient Modulation (Li et al., ICCV 2023), as the official code does it.

Official code: github.com/lihong2303/AGM_ICCV2023 at 5a65542 (the file:line references below are
to that commit). At step t (t counted from 1 over the whole run, as the official `iteration`):

1. **Unimodal outputs, Shapley style, with inputs zeroed.** v(S) is the whole model on the batch
   with the *inputs* x_k of every modality k outside S replaced by zeros, in eval mode (dropout off,
   BatchNorm on its running statistics: the official calls `net.eval()` around these passes,
   model/CREMAD_net.py:57-66) and with graph; v(N) is the step's own fused prediction (training
   mode). A zeroed sequence keeps its padding mask, as the official keeps `feature_length`
   (model/URFunny_net.py:146-150). Then

       out_m = Σ_{S ⊆ N∖{m}} |S|!(M−|S|−1)!/M! · (v(S ∪ {m}) − v(S)),  with v(∅) := 0,

   the exact Shapley value plus v(∅)/M, so that Σ_m out_m = v(N). For M = 2 this is
   out_a = 0.5·(f(a,v) − f(0,v) + f(a,0)) (model/CREMAD_net.py:7-17), for M = 3 the official's
   three-modality formula (model/URFunny_net.py:6-31); v(∅) cancels, so it is never computed.
2. **Score** s_m: the batch-mean cross-entropy of out_m with p_i[y_i] floored at 1e-8
   (run/CREMAD_main.py:130-143). The official defines AGM for classification only; on the other
   tasks s_m is the task's own training loss, `Task.loss(out_m, y)` (L1 for regression, the
   CE + Dice SegLoss for segmentation): lower is better, as for CE.
3. **Dominance** r_m = mean_{k≠m} s_k − s_m: the official's s_v − s_a for two modalities
   (run/CREMAD_main.py:145-146) and (mean(s) − s_m)·3/2 for three (run/URFunny_main.py:117-121),
   the same quantity. r̄_m is the same function of the cumulative means s̄ (below).
4. **Coefficient** c_m = exp(α · min(e^{r̄_m} − e^{r_m}, cap)) (run/CREMAD_main.py:148-152), with r̄
   from the means *before* this step's update. s̄ starts at 0, so r̄ = 0 (e^{r̄} = 1) at step 1.
   cap (`agm_max_exponent`): 10 in the CREMA-D script, 7 in UR-Funny's (run/URFunny_main.py:128-130),
   none in AV-MNIST's, AVE's and MOSEI's.
5. **Cumulative mean** since step 1, not an EMA: s̄ ← s̄·(t−1)/t + s/t after the coefficient is
   taken, at every step, inside the modulation window or not (run/CREMAD_main.py:154-155).
6. **Backward hooks on the output decomposition.** The loss is ℓ(Σ_m out_m, y) (Σ_m out_m = v(N) in
   value) and a hook multiplies the gradient reaching out_m by c_m (model/CREMAD_net.py:42-55: an
   identity module after each out_m with a full backward hook). So every v(S) receives
   Σ_m c_m·a_{m,S}·g, a_{m,S} being out_m's coefficient of v(S): not just the encoders, the head's
   gradient is modulated too, and the zero-input passes carry gradient whenever the c_m differ.
   Our one-backward Stepper gets exactly this backward: `before_backward` returns
   ℓ(Σ_m hook_m(out_m), y) − L_task, so the backward of L_task + extra is the backward of
   ℓ(Σ_m hook_m(out_m), y) alone (the two L_task terms' gradients cancel exactly, 1 − 1 = 0), and
   `loss/total` is the official loss. tests/test_agm.py checks every parameter's gradient against
   a replica of the official module with `register_full_backward_hook`.
7. **Modulation window** (`agm_modulation_starts` … `agm_modulation_ends`, epochs counted from 1 as
   the trainer logs them, both ends included; run/CREMAD_main.py:159 `modulation_starts <= epoch
   <= modulation_ends` with the official's epochs also counted from 1, defaults 0 and 20 in
   utils/config.py:74-75). Outside the window the official does not call `update_scale`, so its
   hooks keep the scale they last had: 1 before the window, the last step's coefficients after it
   for the rest of the run. `agm_hold_after_window` (default true) does the same; false applies 1
   after the window instead (our departure, for runs that want the window to end the modulation).
   When every scale is exactly 1 the hooks are the identity and the gradient is `joint`'s, so the
   passes then run under no_grad (only the scores are needed, for s̄).
8. **Clip** (run/CREMAD_main.py:233-243, run/AVMNIST_main.py:186-190): after the backward, if an
   element of W_Ω's gradient lies outside [−`agm_clip`, `agm_clip`], the model's gradient norm is
   clipped to `agm_clip` (1.0 for CREMA-D, AV-MNIST and MOSEI, run/MOSEI_main.py:133-140; 5.0 for
   UR-Funny, run/URFunny_main.py:203-207; none for AVE). Done in `modulate` without a device sync;
   the trainer's own `clip` still applies afterwards (set it to 0 to run as the official).

Defaults: α = 1.0 and the window 0-20 are the official parser's (utils/config.py:74-76); cap 10 and
clip 1.0 the CREMA-D script's.

Cost per step: each encoder twice more in eval mode (on its real input and on zeros), 2M encoder
passes, plus 2^M − 2 passes of the fusion and head, all kept for the backward inside the window
(no_grad when every scale is 1). The official runs the whole model 2^M − 1 more times; sharing the
per-modality eval encodings across subsets is the same computation, done once. Measured on a
loaded 2-core CPU (MLP encoders of width 256, batch 64): a step takes 2.2× `joint`'s with M = 2,
2.6× with 3, 3.2× with 4 inside the window; 1.5-2.0× outside it.

Logged: `coef/<m>` is the scale the hooks applied this step; `agm/c/<m>` the coefficient computed
(applied or not), `agm/score/<m>` s_m and `agm/mean_score/<m>` s̄_m before this step's update.
The modulation lives inside the backward (as CGGM's L_gm does), so `grad_norm/<m>` already
carries it and `grad_norm_mod/<m>` differs from it only by the conditional clip.

Official recipe (for the presets; no run script ships, README.md:42 is the only command): SGD,
momentum 0.9, weight decay 1e-4 (tasks/CREMAD_task.py:36, tasks/AVMNIST_task.py:38; AVE and MOSEI
also offer AdamW and Adam, UR-Funny AdamW, through `--optim`, default sgd: utils/config.py:82,
tasks/URFunny_task.py:38-42); StepLR every 70 epochs × 0.1 (utils/config.py:77-78,
tasks/CREMAD_task.py:37); the conditional clip above and no other; README.md:42: batch 64, 100
epochs, lr 1e-4, α = 2.5 (AV-MNIST); the parser defaults: batch 16, 10 epochs, lr 1e-5
(utils/config.py:69-71).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F

    from ..models import AuxHeads, MultimodalNet
else:
    from .._lazy import F, torch

from ..settings import Setting, SettingError
from ..tasks import Classification, Task
from .base import Method, StepState

MIN_PROB = 1e-8  # run/CREMAD_main.py:133-134: p_i[y_i] below 1e-8 counts as 1e-8


def shapley_weights(num: int) -> list[list[float]]:
    """a[m][S]: the coefficient of v(S) in out_m, S a bitmask over `num` modalities (bit m = modality m).

    out_m = Σ_{S ∌ m} w(|S|)·(v(S ∪ {m}) − v(S)), w(s) = s!(M−s−1)!/M!; v(∅) is dropped (its
    coefficient is −w(0) + the official's v(∅)/M = 0), so a[m][0] = 0.
    """
    fact = math.factorial
    w = [fact(s) * fact(num - s - 1) / fact(num) for s in range(num)]
    table = []
    for m in range(num):
        row = [0.0] * (1 << num)
        for subset in range(1, 1 << num):
            size = bin(subset).count("1")
            row[subset] = w[size - 1] if subset >> m & 1 else -w[size]
        table.append(row)
    return table


def shapley_outputs(values: Mapping[int, torch.Tensor], num: int) -> list[torch.Tensor]:
    """out_m for m < num from v(S) for every non-empty bitmask S (the full set included)."""
    table = shapley_weights(num)
    outs = []
    for m in range(num):
        terms = [table[m][s] * values[s] for s in range(1, 1 << num)]
        outs.append(torch.stack(terms).sum(dim=0))
    return outs


def agm_score(task: Task, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """s_m (0-d): floored cross-entropy for classification (as the official), else the task's loss."""
    if isinstance(task, Classification):
        nll = -F.log_softmax(out, dim=1).gather(1, y.reshape(-1, 1)).reshape(-1)  # (B,)
        return nll.clamp_max(-math.log(MIN_PROB)).mean()
    return task.loss(out, y)


def agm_dominance(scores: torch.Tensor) -> torch.Tensor:
    """r_m = mean_{k≠m} s_k − s_m for scores (losses) of shape (M,)."""
    m = scores.numel()
    mean_others = (scores.sum() - scores) / (m - 1)
    return mean_others - scores


def agm_coefficients(
    scores: torch.Tensor, mean_scores: torch.Tensor, alpha: float, max_exponent: float
) -> torch.Tensor:
    """c_m = exp(α·min(e^{r̄_m} − e^{r_m}, cap)), r from this step's scores, r̄ from the means; (M,)."""
    r, r_bar = agm_dominance(scores), agm_dominance(mean_scores)
    return torch.exp(alpha * (torch.exp(r_bar) - torch.exp(r)).clamp_max(max_exponent))


def _hooked(out: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """out, whose gradient is multiplied by `scale` on the way back (the official's Modality_out)."""
    part = out.view_as(out)
    part.register_hook(lambda g: g * scale.to(g.dtype))
    return part


class AGM(Method):
    name = "agm"
    help = "AGM (ICCV 2023): Shapley outputs with zeroed inputs, c = exp(α·min(e^r̄ − e^r, cap)) through backward hooks"
    settings = [
        Setting("agm_alpha", "float", 1.0, "α: c_m = exp(α·min(e^{r̄_m} − e^{r_m}, cap))", min=0.0, max=100.0),
        Setting("agm_max_exponent", "float", 10.0, "cap on e^{r̄} − e^{r} (official: 10 or 7)", min=0.0, max=50.0),
        Setting(
            "agm_modulation_starts", "int", 1, "first epoch with modulation (epochs count from 1)", min=1, max=100_000
        ),
        Setting(
            "agm_modulation_ends", "int", 20, "last epoch with modulation, included (official: 20)", min=1, max=100_000
        ),
        Setting("agm_hold_after_window", "bool", True, "after the window keep the last coefficients (official)"),
        Setting("agm_clip", "float", 1.0, "clip grad norm to this if |W_Ω grad| > it (0 = off)", min=0.0, max=1e6),
    ]

    @classmethod
    def check(cls, cfg: Mapping[str, Any], modalities: list[str] | None = None) -> None:
        if cfg["agm_modulation_starts"] > cfg["agm_modulation_ends"]:
            raise SettingError(
                f"setting 'agm_modulation_starts': {cfg['agm_modulation_starts']} is after "
                f"agm_modulation_ends={cfg['agm_modulation_ends']}; expected starts <= ends"
            )
        if modalities is not None and len(modalities) < 2:
            raise SettingError(f"method 'agm' needs at least 2 modalities; the dataset has {len(modalities)}")

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        self.alpha: float = self.cfg["agm_alpha"]
        self.max_exponent: float = self.cfg["agm_max_exponent"]
        self.starts: int = self.cfg["agm_modulation_starts"]
        self.ends: int = self.cfg["agm_modulation_ends"]
        self.hold: bool = self.cfg["agm_hold_after_window"]
        self.clip: float = self.cfg["agm_clip"]
        self.epoch = 1  # a Stepper driven without epochs is in its first one
        self.count = 0  # steps folded into the mean (the official `iteration`)
        self.mean_scores: torch.Tensor | None = None  # s̄, (M,) float64; None = 0 before step 1
        self.scale: torch.Tensor | None = None  # the hooks' current scales, (M,); None = all 1
        self.coef: torch.Tensor | None = None  # this step's c (logged as agm/c/<m>)

    # -- the window ------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def in_window(self) -> bool:
        return self.starts <= self.epoch <= self.ends

    # -- the math, on host-free tensors ------------------------------------------------------------
    def update(self, scores: torch.Tensor) -> torch.Tensor:
        """Feed s(t) (M,); returns c(t) from s(t) and s̄(t−1), then folds s(t) into s̄."""
        s = scores.detach().double()
        mean = torch.zeros_like(s) if self.mean_scores is None else self.mean_scores.to(s.device)
        coef = agm_coefficients(s, mean, self.alpha, self.max_exponent)
        self.count += 1
        t = self.count
        self.mean_scores = mean * (t - 1) / t + s / t
        return coef

    def _next_scale(self, coef: torch.Tensor) -> torch.Tensor | None:
        """The hooks' scale for this step: c inside the window; outside, the held one or None (= 1)."""
        if self.in_window:
            return coef
        if self.epoch > self.ends and self.hold:
            return self.scale
        return None

    # -- the step --------------------------------------------------------------------------------
    def subset_outputs(self, state: StepState, with_graph: bool) -> dict[int, torch.Tensor]:
        """v(S) for every non-empty S (bitmask over self.modalities); v(N) is the step's prediction."""
        model, names = self.model, self.modalities
        masks = state.masks
        was_training = model.training
        model.eval()  # the official's net.eval() around the zero-input passes
        try:
            with torch.set_grad_enabled(with_graph and torch.is_grad_enabled()):
                real = {m: model.encode_one(m, state.xs[m], masks.get(m)) for m in names}
                zero = {m: model.encode_one(m, torch.zeros_like(state.xs[m]), masks.get(m)) for m in names}
                full = (1 << len(names)) - 1
                values = {
                    s: model.fuse({m: real[m] if s >> i & 1 else zero[m] for i, m in enumerate(names)}, masks=masks)
                    for s in range(1, full)
                }
        finally:
            model.train(was_training)
        values[full] = state.pred
        return values

    def before_backward(self, state: StepState) -> torch.Tensor | None:
        # Is a scale ≠ 1 possible this step? Known without looking at the tensors (no device sync).
        may_modulate = self.in_window or (self.epoch > self.ends and self.hold and self.scale is not None)
        values = self.subset_outputs(state, with_graph=may_modulate)
        outs = shapley_outputs(values, len(self.modalities))  # out_m, (B, ...) each
        scores = torch.stack([agm_score(self.task, o.detach(), state.y) for o in outs])  # (M,)
        scores = self.dist.mean(scores, state.share)  # batch means: the global batch's, on every rank
        if state.log:
            means = self.mean_scores if self.mean_scores is not None else torch.zeros_like(scores)
            state.scalars.update({f"agm/score/{m}": s for m, s in zip(self.modalities, scores, strict=True)})
            state.scalars.update({f"agm/mean_score/{m}": s for m, s in zip(self.modalities, means, strict=True)})
        coef = self.update(scores)
        self.coef = coef
        self.scale = self._next_scale(coef)
        if self.scale is None:
            return None  # every hook is the identity: the backward is joint's
        parts = [_hooked(o, self.scale[i]) for i, o in enumerate(outs)]
        out = torch.stack(parts).sum(dim=0)  # Σ_m out_m = v(N) in value
        return self.task.loss(out, state.y) - state.task_loss

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        if self.clip > 0:
            self._conditional_clip()
        if state.log and self.coef is not None:
            state.scalars.update({f"agm/c/{m}": c for m, c in zip(self.modalities, self.coef, strict=True)})
        if self.scale is None:
            return {m: 1.0 for m in self.modalities}
        return dict(zip(self.modalities, self.scale, strict=True))

    def _conditional_clip(self) -> None:
        """clip_grad_norm_(model, clip) only when some |W_Ω grad| > clip, as the official, without a sync."""
        w_grad = self.model.head_last_layer().weight.grad
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if w_grad is None or not grads:
            return
        trigger = (w_grad.max() > self.clip) | (w_grad.min() < -self.clip)
        total = torch.nn.utils.get_total_norm(grads, 2.0)
        # clip_grad_norm_'s own factor: max_norm / (total + 1e-6), at most 1.
        factor = (self.clip / (total + 1e-6)).clamp_max(1.0)
        torch._foreach_mul_(grads, torch.where(trigger, factor, torch.ones_like(factor)))

    # -- resume ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean_scores": self.mean_scores, "scale": self.scale}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.count = int(state["count"])
        self.mean_scores = state["mean_scores"]
        self.scale = state["scale"]
