"""CGGM: Classifier-Guided Gradient Modulation (Guo et al., NeurIPS 2024), DESIGN §4.

Three variants of one method:

* `paper` — the paper's algorithm. Balance B_m = (S − Δ_m)/S with S = Σ_k Δ_k, where
  Δ_m = ε_m(t) − ε_m(t−1) is the change of aux head m's batch metric (ε_m(0) = 0). The paper
  gives no rule for S = 0, so the raw formula is evaluated as the official code does
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
* `reference` — the official code's behaviour: the cosine is taken between the last-layer
  *weights* W_fm and W_Ω, the L_gm built from step t's B is added to the loss of step t+1, and
  only the encoder bodies are scaled.
* `stable` — ours: ε smoothed by an EMA, B = (M−1)/M (the value every B takes when all
  modalities improve equally) whenever |S| < s_min, and B clamped to [0, b_max].

Hazard of the raw formula (kept on purpose in `paper` and `reference`, and shown by the probe):
Δ are multiples of 1/batch_size, so S is often exactly 0; then B_m = 1 − Δ_m·1e8, some B are
negative (gradient ascent on that encoder), and only the gradient clip keeps the step finite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
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


def raw_balance(delta: torch.Tensor, guard: float = GUARD) -> torch.Tensor:
    """B_m = (S + guard − Δ_m)/(S + guard) for Δ of shape (M,), as the official code computes it.

    Σ_m B_m = M − S/(S + guard): M − 1 whenever |S| ≫ guard, and M when S = 0.
    """
    s_guarded = delta.sum() + guard
    return (s_guarded - delta) / s_guarded


def stable_balance(delta: torch.Tensor, s_min: float, b_max: float) -> torch.Tensor:
    """Our guarded B: neutral (M−1)/M when |S| < s_min, otherwise the raw ratio clamped to [0, b_max]."""
    m = delta.numel()
    s = delta.sum()
    neutral = torch.full_like(delta, (m - 1) / m)
    safe_s = torch.where(s.abs() < s_min, torch.ones_like(s), s)
    ratio = ((s - delta) / safe_s).clamp(0.0, b_max)
    return torch.where(s.abs() < s_min, neutral, ratio)


def gm_loss(balance: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """L_gm = (1/M) Σ_m (|B_m| − B_m·cos_m); B is a constant, cos carries the graph. Both (M,)."""
    b = balance.detach().to(cos.dtype)  # B is float64; the term trains in the model's dtype
    return (b.abs() - b * cos).mean()


def flat_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.reshape(1, -1), b.reshape(1, -1), dim=1, eps=1e-12)[0]


_STABLE_ONLY = ("eps_ema", "s_min", "b_max")


class CGGM(Method):
    name = "cggm"
    help = "Classifier-Guided Gradient Modulation (NeurIPS 2024): magnitude by B_m, direction by L_gm"
    settings = [
        Setting(
            "variant",
            "str",
            "paper",
            "paper: as published; reference: the official code's behaviour; stable: guarded B (ours)",
            choices=("paper", "reference", "stable"),
        ),
        Setting("rho", "float", 1.3, "ρ: encoder gradients are scaled by ρ·B_m", min=0.0, max=100.0),
        Setting("lam", "float", 0.2, "λ: weight of the direction term L_gm", min=0.0, max=100.0),
        Setting("eps_ema", "float", 0.9, "stable: EMA decay applied to ε before differencing", min=0.0, max=0.999),
        Setting("s_min", "float", 0.01, "stable: |S| below this gives the neutral B = (M−1)/M", min=0.0, max=1.0),
        Setting("b_max", "float", 2.0, "stable: upper clamp of B", min=0.0, max=100.0),
    ]
    # Only `stable` reads these: forms hide them under the other variants (catalog: "shown_when").
    settings = [
        replace(s, extra={"shown_when": {"variant": ["stable"]}}) if s.name in _STABLE_ONLY else s for s in settings
    ]

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        self.variant: str = self.cfg["variant"]
        self.rho: float = self.cfg["rho"]
        self.lam: float = self.cfg["lam"]
        M = len(self.modalities)
        self.prev_eps: torch.Tensor | None = None  # ε(t−1) (smoothed for `stable`); None means ε(0) = 0
        self.ema_eps: torch.Tensor | None = None
        self.balance: torch.Tensor = torch.full((M,), (M - 1) / M, dtype=torch.float64)  # B of the current step
        self.pending_balance: torch.Tensor | None = None  # reference: B(t−1), used for step t's L_gm
        self.last_gm: torch.Tensor | None = None  # the L_gm that entered this step's loss

    # -- magnitude -------------------------------------------------------------------------
    def update_balance(self, eps: torch.Tensor) -> torch.Tensor:
        """Feed ε(t) of shape (M,); returns B(t) (float64) and remembers ε(t) for the next step."""
        eps = eps.detach().double()  # the official code's Δ and S are Python floats (module docstring)
        if self.variant == "stable":
            beta = self.cfg["eps_ema"]
            self.ema_eps = eps if self.ema_eps is None else beta * self.ema_eps + (1 - beta) * eps
            current = self.ema_eps
        else:
            current = eps
        prev = torch.zeros_like(current) if self.prev_eps is None else self.prev_eps
        delta = current - prev
        self.prev_eps = current
        if self.variant == "stable":
            balance = stable_balance(delta, self.cfg["s_min"], self.cfg["b_max"])
        else:
            balance = raw_balance(delta)
        self.balance = balance
        return balance

    # -- direction ---------------------------------------------------------------------------
    def before_backward(self, state: StepState) -> torch.Tensor | None:
        eps = torch.stack([state.eps[m] for m in self.modalities])  # (M,)
        balance = self.update_balance(eps)
        head_w = self.model.head_last_layer().weight
        aux_ws = [self.aux.last_layer(m).weight for m in self.modalities]
        if self.variant == "reference":
            # cos between last-layer weights; the term built from B(t−1) is what step t trains on.
            cos = torch.stack([flat_cos(w.detach(), head_w) for w in aux_ws])
            for m, c in zip(self.modalities, cos, strict=True):
                state.scalars[f"cos_w/{m}"] = c.detach()
            gm = None if self.pending_balance is None else gm_loss(self.pending_balance, cos)
            self.pending_balance = balance.detach().clone()
        else:
            g_head = torch.autograd.grad(state.task_loss, head_w, create_graph=True)[0]  # (C, H)
            cos_list = []
            for m, w in zip(self.modalities, aux_ws, strict=True):
                g_aux = torch.autograd.grad(state.aux_losses[m], w, retain_graph=True)[0].detach()
                cos_list.append(flat_cos(g_aux, g_head))
            cos = torch.stack(cos_list)  # (M,)
            state.cos.update({m: c.detach() for m, c in zip(self.modalities, cos, strict=True)})
            gm = gm_loss(balance, cos)
        self.last_gm = None if gm is None else gm.detach()
        if gm is None:
            state.scalars["loss/gm"] = torch.zeros(())
            return None
        state.scalars["loss/gm"] = gm.detach()
        return self.lam * gm

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
            "ema_eps": self.ema_eps,
            "balance": self.balance,
            "pending_balance": self.pending_balance,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.prev_eps = state.get("prev_eps")
        self.ema_eps = state.get("ema_eps")
        self.balance = state["balance"]
        self.pending_balance = state.get("pending_balance")
