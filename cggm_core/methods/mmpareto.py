"""MMPareto: boosting multimodal learning with innocent unimodal assistance (Wei & Hu, ICML 2024).

Each encoder receives two gradients: the multimodal one, g_mm (what the main backward of the task
loss leaves in its `.grad`), and a unimodal one, g_uni = ∂ℓ(f_m(h_m), y)/∂θ_m, where f_m is aux head
m applied to the *non-detached* features (so, unlike the probe's aux loss, it reaches the encoder).
Per encoder, with all its parameter gradients flattened into one vector:

* cos = cos(g_mm, g_uni). If cos < 0 the two conflict and we take the two-task MGDA min-norm point
  w_mm = clamp(((g_uni − g_mm)·g_uni) / ‖g_mm − g_uni‖², 0, 1), w_uni = 1 − w_mm; otherwise
  w_mm = w_uni = 1/2.
* d = w_mm·g_mm + w_uni·g_uni; the final gradient is d/‖d‖ · ‖g_mm + g_uni‖ · γ: the min-norm
  direction with the magnitude of the summed gradient, × γ (DESIGN §5: γ = 1.5).
* coef/<m> = 2·w_mm (1 without conflict).

Zero norms are guarded: d = 0 gives a zero gradient, and a zero g_mm or g_uni counts as no conflict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ..models import AuxHeads, MultimodalNet
else:
    from .._lazy import torch

from ..settings import Setting
from ..tasks import Task
from .base import Method, StepState

TINY = 1e-12


def pareto_combine(
    g_mm: torch.Tensor, g_uni: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(final gradient, w_mm, cos) for two flat gradients of the same shape (N,)."""
    dot = g_mm @ g_uni
    norm_mm = torch.linalg.vector_norm(g_mm)
    norm_uni = torch.linalg.vector_norm(g_uni)
    cos = dot / (norm_mm * norm_uni).clamp_min(TINY)
    diff_sq = torch.linalg.vector_norm(g_mm - g_uni).square()
    # Two-task min-norm: argmin_w ‖w·g_mm + (1 − w)·g_uni‖².
    w_min_norm = ((norm_uni.square() - dot) / diff_sq.clamp_min(TINY)).clamp(0.0, 1.0)
    w_mm = torch.where(cos < 0, w_min_norm, torch.full_like(w_min_norm, 0.5))
    d = w_mm * g_mm + (1 - w_mm) * g_uni
    target = torch.linalg.vector_norm(g_mm + g_uni) * gamma
    final = d * (target / torch.linalg.vector_norm(d).clamp_min(TINY))
    return final, w_mm, cos


def flat_grads(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """All parameter gradients as one vector (N,); a missing gradient counts as zeros."""
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params])


class MMPareto(Method):
    name = "mmpareto"
    help = "MMPareto (ICML 2024): per encoder, min-norm combination of multimodal and unimodal gradients"
    settings = [
        Setting("pareto_gamma", "float", 1.5, "γ: final gradient norm = γ·‖g_mm + g_uni‖", min=0.0, max=100.0),
    ]

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        self.gamma: float = self.cfg["pareto_gamma"]
        self.uni_grads: dict[str, torch.Tensor] = {}  # g_uni per encoder for the current step, (N_m,)

    def before_backward(self, state: StepState) -> torch.Tensor | None:
        self.uni_grads = {}
        for m in self.modalities:
            params = self.model.encoder_params(m)
            # Aux head on the features *with* graph: the unimodal loss's gradient reaches the encoder.
            loss_uni = self.task.loss(self.aux.head_forward(m, state.feats[m], state.masks.get(m)), state.y)
            grads = torch.autograd.grad(loss_uni, params, retain_graph=True, allow_unused=True)
            self.uni_grads[m] = torch.cat(
                [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads, strict=True)]
            ).detach()
        if self.dist.enabled:  # g_uni of the global batch (one all-reduce for every encoder)
            sizes = [g.numel() for g in self.uni_grads.values()]
            reduced = self.dist.mean(torch.cat(list(self.uni_grads.values())), state.share)
            self.uni_grads = dict(zip(self.uni_grads, reduced.split(sizes), strict=True))
        return None

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        coef: dict[str, torch.Tensor | float] = {}
        for m in self.modalities:
            params = self.model.encoder_params(m)
            g_uni = self.uni_grads[m]
            final, w_mm, cos = pareto_combine(flat_grads(params), g_uni, self.gamma)
            for p, g in zip(params, final.split([p.numel() for p in params]), strict=True):
                if p.grad is None:
                    p.grad = g.view_as(p).clone()
                else:
                    p.grad.copy_(g.view_as(p))
            coef[m] = 2 * w_mm
            if state.log:
                state.scalars[f"pareto/cos/{m}"] = cos
                state.scalars[f"pareto/grad_norm_uni/{m}"] = torch.linalg.vector_norm(g_uni)
        self.uni_grads = {}
        return coef
