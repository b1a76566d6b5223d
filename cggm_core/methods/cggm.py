"""CGGM: Classifier-Guided Gradient Modulation (Guo et al., NeurIPS 2024), DESIGN §4.

Three variants of one method, chosen by `variant`:

* `paper` — the paper's algorithm. Balance B_m = (S − Δ_m)/S with S = Σ_k Δ_k,
  where Δ_m = ε_m(t) − ε_m(t−1) is the change of aux head m's batch metric (ε_m(0) = 0). The
  paper gives no rule for S = 0, so the raw formula is evaluated as the official code does
  (zrguo/CGGM, src/msatrain.py: `diff_sum = sum(diff) + 1e-8`, then `(diff_sum - d) / diff_sum`):
  B_m = (S + 1e-8 − Δ_m)/(S + 1e-8). The guard enters the numerator too, so an all-zero Δ gives
  B = 1 for every modality (not 0, which would zero every encoder gradient that step), and a
  modality with Δ_m = 0 while S = 0 gets B_m = 1. Δ, S and B are computed in float64, as the
  official code's Python floats are: a float32 ε of a batch whose size is not a power of two can be
  off by an ulp (26/50 − 1/2 ≠ 1/2 − 24/50 in float32), which turns an S of exactly 0 into ±3e-8,
  larger than the guard, and flips the sign of the blown-up B. Direction term
  L_gm = (1/M) Σ_m (|B_m| − B_m·cos(g_m, g_Ω)) with g_Ω = ∂L_task/∂W_Ω built with create_graph
  (so L_gm trains the model) and g_m = ∂ℓ(z_m)/∂W_fm a constant. Loss L_task + λ·L_gm; then
  every encoder gradient is scaled by ρ·B_m.

* `reference` — the official code's training loop (msatrain.py lines 59–127; segtrain.py and
  foodtrain.py do the same). B(t) as in `paper`. The direction term departs from the paper:
  `fusion_grad` is the task head's last-layer *weight* W_Ω itself and `cal_cos` takes the cosine
  of clones of W_fm and W_Ω, so L_gm(t) = (1/M) Σ_m (|B_m(t)| − B_m(t)·cos(W_fm(t), W_Ω(t))) is a
  function of two weights only, with step t's values saved in the graph (the clones). That graph
  is kept and added to the loss of step t+1 (`raw_loss += lamda * l_gm`), where it is
  back-propagated: its gradient reaches W_Ω's `.grad` through the clone, evaluated at step t's
  weights, is not scaled (W_Ω is no encoder) and goes through the clip and the model's optimizer
  with step t+1's task gradient. It reaches no encoder (no activation is in the graph), and the
  gradient it leaves on the aux heads' W_fm is erased by `cls_optimizer.zero_grad()` before the
  aux losses' backward, so we take W_fm(t) detached. Only the encoder bodies are scaled
  (`encoders.{i}`, not the input projections). We do exactly this: the term built at step t
  (a clone of W_Ω(t) with its graph to W_Ω, W_fm(t) detached, B(t)) is the one step t+1 returns.
  A checkpoint cannot hold a graph, so it stores W_Ω(t), W_fm(t) and B(t), and a resumed run
  rebuilds the same term as W_Ω(t) + (W_Ω − sg(W_Ω)): the same value, bit for bit, and the same
  gradient into W_Ω.

* `stable` (the default) — ours: a balance signal that measures *learning*, not batch noise.
  `paper`'s Δ is one batch's accuracy minus the previous one's; with a batch of 64 its noise
  (±0.06) is far larger than a step's learning (~1e-3), so B is a ratio of noise (DESIGN §4, BENCHMARKS.md). The first
  `stable` (an EMA of ε, S guarded, B clamped) was measured to be nearly a no-op: the difference
  of an EMA is still one batch's noise, scaled by 1 − β. Here Δ_m is the least-squares slope of
  ε_m over the last `slope_window` steps, clipped at 0 (a modality that forgets does not earn a
  larger share), and B_m = (S − Δ_m)/S on those Δ. When the slope of Σ_m ε_m is not above
  `slope_z` times its standard error (nothing is measurably learning, also the first steps) B is
  neutral: (M − 1)/M for every modality, the value B takes when all improve equally, so Σ B =
  M − 1 always and B ∈ [0, 1]. The standard error comes from the residuals of Σ ε itself, so the
  modalities' correlation (they see the same batch) is accounted for. On a simulated run where
  one modality learns 4× as fast (target B_fast = 0.2), `paper`'s median B_fast is ~0.5 and this
  variant's 0.20 (tests/test_cggm.py::test_balance_signal_simulation; a window of 100 steps gives
  0.28, too short for batch-64 noise). Direction term and ρ as in `paper`. It is the default
  because bench/cggm_paired.py (BENCHMARKS.md §2.1) supports it: under Adam it is the only
  variant not significantly worse than `joint`; no variant beats `joint` there.

Hazard of the raw formula (kept on purpose in `paper` and `reference`, and shown by the probe):
Δ are multiples of 1/batch_size, so S is often exactly 0; then B_m = 1 − Δ_m·1e8, some B are
negative (gradient ascent on that encoder), and only the gradient clip keeps the step finite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F

    from ..models import AuxHeads, MultimodalNet
else:
    from .._lazy import F, torch

from ..settings import Setting
from ..tasks import Task
from .base import Method, StepState, scale_grads_

GUARD = 1e-8  # the official code's only protection against S = 0
_STABLE_ONLY = {"shown_when": {"variant": ["stable"]}}


def raw_balance(delta: torch.Tensor, guard: float = GUARD) -> torch.Tensor:
    """B_m = (S + guard − Δ_m)/(S + guard) for Δ of shape (M,), as the official code computes it.

    Σ_m B_m = M − S/(S + guard): M − 1 whenever |S| ≫ guard, and M when S = 0.
    """
    s_guarded = delta.sum() + guard
    return (s_guarded - delta) / s_guarded


def window_slopes(eps_window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares slopes of ε over the window, per step: (slopes (M,), slope of Σ ε, its std error).

    `eps_window` is (n, M), oldest row first, n ≥ 3. The slope of the sum is the sum of the slopes;
    its standard error is s/√Sxx with s² the residual variance of Σ_m ε_m about its line (n − 2
    degrees of freedom).
    """
    n = eps_window.shape[0]
    x = torch.arange(n, dtype=eps_window.dtype, device=eps_window.device) - (n - 1) / 2  # (n,) centred steps
    sxx = (x * x).sum()
    centred = eps_window - eps_window.mean(dim=0)  # (n, M)
    slopes = (x @ centred) / sxx  # (M,)
    total = centred.sum(dim=1)  # (n,)
    total_slope = slopes.sum()
    residual = total - total_slope * x
    std_err = ((residual * residual).sum() / (n - 2) / sxx).sqrt()
    return slopes, total_slope, std_err


def slope_balance(eps_window: torch.Tensor, z: float) -> torch.Tensor:
    """`stable`'s B from the last n steps' ε (n, M): (S − Δ_m)/S with Δ_m = max(slope_m, 0),
    neutral (M − 1)/M while Σ ε's slope is not above z standard errors (or n < 3)."""
    m = eps_window.shape[1]
    neutral = torch.full((m,), (m - 1) / m, dtype=eps_window.dtype, device=eps_window.device)
    if eps_window.shape[0] < 3:
        return neutral
    slopes, total_slope, std_err = window_slopes(eps_window)
    delta = slopes.clamp(min=0.0)
    s = delta.sum()  # ≥ total_slope > 0 whenever `learning`
    learning = total_slope > z * std_err
    ratio = (s - delta) / torch.where(learning, s, torch.ones_like(s))
    return torch.where(learning, ratio, neutral)


def gm_loss(balance: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """L_gm = (1/M) Σ_m (|B_m| − B_m·cos_m); B is a constant, cos carries the graph. Both (M,)."""
    b = balance.detach().to(cos.dtype)  # B is float64; the term trains in the model's dtype
    return (b.abs() - b * cos).mean()


def flat_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.reshape(1, -1), b.reshape(1, -1), dim=1, eps=1e-12)[0]


class CGGM(Method):
    name = "cggm"
    help = "Classifier-Guided Gradient Modulation (NeurIPS 2024): magnitude by B_m, direction by L_gm"
    settings = [
        Setting(
            "variant",
            "str",
            "stable",
            "paper: as published; reference: the official code's loop; stable: B from ε's windowed slope (ours)",
            choices=("paper", "reference", "stable"),
        ),
        Setting("rho", "float", 1.3, "ρ: encoder gradients are scaled by ρ·B_m", min=0.0, max=100.0),
        Setting("lam", "float", 0.2, "λ: weight of the direction term L_gm", min=0.0, max=100.0),
        Setting(
            "slope_window",
            "int",
            200,
            "stable: Δ_m is the least-squares slope of ε_m over this many last steps",
            min=3,
            max=100_000,
            extra=_STABLE_ONLY,
        ),
        Setting(
            "slope_z",
            "float",
            2.0,
            "stable: B is neutral unless the slope of Σε exceeds this many standard errors",
            min=0.0,
            max=100.0,
            extra=_STABLE_ONLY,
        ),
    ]

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        self.variant: str = self.cfg["variant"]
        self.rho: float = self.cfg["rho"]
        self.lam: float = self.cfg["lam"]
        M = len(self.modalities)
        self.prev_eps: torch.Tensor | None = None  # paper, reference: ε(t−1); None means ε(0) = 0
        self.eps_window: torch.Tensor | None = None  # stable: (n ≤ slope_window, M) last ε, oldest first
        self.balance: torch.Tensor = torch.full((M,), (M - 1) / M, dtype=torch.float64)  # B of the current step
        # reference: the L_gm built at step t, back-propagated at step t+1 (graph to W_Ω), and the
        # values it was built from (W_Ω(t), W_fm(t), B(t)) for a checkpoint.
        self.pending_gm: torch.Tensor | None = None
        self.pending_values: dict[str, Any] | None = None
        self.last_gm: torch.Tensor | None = None  # the L_gm that entered this step's loss

    # -- magnitude -------------------------------------------------------------------------
    def update_balance(self, eps: torch.Tensor) -> torch.Tensor:
        """Feed ε(t) of shape (M,); returns B(t) (float64) and remembers what the next step needs."""
        eps = eps.detach().double()  # the official code's Δ and S are Python floats (module docstring)
        if self.variant == "stable":
            row = eps.reshape(1, -1)
            window = row if self.eps_window is None else torch.cat([self.eps_window, row])
            self.eps_window = window[-int(self.cfg["slope_window"]) :]  # (n, M)
            balance = slope_balance(self.eps_window, self.cfg["slope_z"])
        else:
            prev = torch.zeros_like(eps) if self.prev_eps is None else self.prev_eps
            self.prev_eps = eps
            balance = raw_balance(eps - prev)
        self.balance = balance
        return balance

    # -- direction ---------------------------------------------------------------------------
    def before_backward(self, state: StepState) -> torch.Tensor | None:
        eps = torch.stack([state.eps[m] for m in self.modalities])  # (M,)
        balance = self.update_balance(eps)
        if state.log and self.variant == "stable" and self.eps_window is not None and self.eps_window.shape[0] >= 3:
            slopes = window_slopes(self.eps_window)[0]  # Δ before clipping, for the probe
            state.scalars.update({f"cggm/slope/{m}": s for m, s in zip(self.modalities, slopes, strict=True)})
        gm = self._reference_gm(balance, state) if self.variant == "reference" else self._paper_gm(balance, state)
        self.last_gm = None if gm is None else gm.detach()
        if gm is None:
            state.scalars["loss/gm"] = torch.zeros(())
            return None
        state.scalars["loss/gm"] = gm.detach()
        return self.lam * gm

    def _paper_gm(self, balance: torch.Tensor, state: StepState) -> torch.Tensor:
        head_w = self.model.head_last_layer().weight
        g_head = torch.autograd.grad(state.task_loss, head_w, create_graph=True)[0]  # (C, H)
        # Several processes: the global batch's g_Ω, its graph kept (the backward of the reduction
        # is the identity; cggm_core/distributed.py says why that is exact).
        g_head = self.dist.mean_grad(g_head, state.share)
        cos_list = []
        for m in self.modalities:
            w = self.aux.last_layer(m).weight
            g_aux = torch.autograd.grad(state.aux_losses[m], w, retain_graph=True)[0].detach()
            g_aux = self.dist.mean(g_aux, state.share)
            cos_list.append(flat_cos(g_aux, g_head))
        cos = torch.stack(cos_list)  # (M,)
        state.cos.update({m: c.detach() for m, c in zip(self.modalities, cos, strict=True)})
        return gm_loss(balance, cos)

    def _reference_gm(self, balance: torch.Tensor, state: StepState) -> torch.Tensor | None:
        """Return the L_gm built at step t−1 (None at step 1) and build step t's for the next step."""
        if self.pending_gm is None and self.pending_values is not None:  # resumed from a checkpoint
            self.pending_gm = self._rebuild_pending(self.pending_values)
        gm = self.pending_gm
        head_w = self.model.head_last_layer().weight
        # The clone is what the cosine saves: step t's values survive the optimizer's in-place update
        # of W_Ω, and the graph reaches W_Ω through CloneBackward when step t+1 back-propagates it.
        head_now = head_w.clone()
        aux_now = [self.aux.last_layer(m).weight.detach().clone() for m in self.modalities]
        self.pending_gm = self._weight_gm(balance, aux_now, head_now, state)
        self.pending_values = {"head": head_now.detach(), "aux": aux_now, "balance": balance.detach().clone()}
        return gm

    def _weight_gm(
        self,
        balance: torch.Tensor,
        aux_ws: list[torch.Tensor],
        head_w: torch.Tensor,
        state: StepState | None = None,
    ) -> torch.Tensor:
        cos = torch.stack([flat_cos(w, head_w) for w in aux_ws])  # (M,)
        if state is not None:
            state.scalars.update({f"cos_w/{m}": c.detach() for m, c in zip(self.modalities, cos, strict=True)})
        return gm_loss(balance, cos)

    def _rebuild_pending(self, values: Mapping[str, Any]) -> torch.Tensor:
        head_w = self.model.head_last_layer().weight
        head_then = values["head"] + (head_w - head_w.detach())  # value W_Ω(t), gradient into W_Ω
        return self._weight_gm(values["balance"], list(values["aux"]), head_then)

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        coef: dict[str, torch.Tensor | float] = {}
        for i, m in enumerate(self.modalities):
            params = self.model.encoder_body_params(m) if self.variant == "reference" else self.model.encoder_params(m)
            b = self.balance[i]
            scale_grads_(params, self.rho * b)
            coef[m] = b
        return coef

    def state_dict(self) -> dict[str, Any]:
        return {
            "prev_eps": self.prev_eps,
            "eps_window": self.eps_window,
            "balance": self.balance,
            "pending_values": self.pending_values,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.prev_eps = state.get("prev_eps")
        self.eps_window = state.get("eps_window")
        self.balance = state["balance"]
        self.pending_values = state.get("pending_values")
        self.pending_gm = None  # rebuilt from pending_values at the next step
