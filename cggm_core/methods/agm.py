"""AGM: Adaptive Gradient Modulation (Li et al., ICCV 2023), in our own reading of the paper.

The paper measures each modality's response by zero-masking the others (a Shapley-style
decomposition) and pushes every modality's dominance back towards its running average. Exactly
what we compute at step t (the definitions are ours; the paper leaves several of them open):

* Unimodal response: ŷ_m = Ω(0…h_m…0), the fused model with every other modality zero-masked,
  under no_grad on detached features.
* Score: s_m = ℓ(ŷ_m, y), the batch-mean task loss (`task.loss`): CE for classification, L1 for
  regression.
* Dominance: r_m = mean_{k≠m} s_k − s_m, positive when m's loss is lower than the others', i.e.
  when m dominates. For M = 2, r_1 = s_2 − s_1 = −r_2.
* Coefficient: c_m = exp(α · min(r̄_m − r_m, 10)), with r̄_m the running mean *before* this
  step's update (r̄ starts at the first r, so c = 1 at the first step). A modality more dominant
  than usual (r_m > r̄_m) gets c_m < 1, a less dominant one c_m > 1; the cap of 10 bounds the boost.
* Running mean: r̄_m ← μ·r̄_m + (1 − μ)·r_m after the coefficient is taken (μ = `agm_momentum`).
* Modulation: encoder m's gradient × c_m after the one backward. The paper instead scales the
  branch's contribution in the forward pass; DESIGN §5 asks for the gradient scale, which keeps
  the fused prediction (and so every method's probe) untouched.
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
from .base import Method, StepState, scale_grads_

MAX_EXPONENT = 10.0  # DESIGN §5: exp(α · min(r̄ − r, 10))


def agm_dominance(scores: torch.Tensor) -> torch.Tensor:
    """r_m = mean_{k≠m} s_k − s_m for losses s of shape (M,)."""
    m = scores.numel()
    mean_others = (scores.sum() - scores) / (m - 1)
    return mean_others - scores


def agm_coefficients(running: torch.Tensor, dominance: torch.Tensor, alpha: float) -> torch.Tensor:
    """c_m = exp(α · min(r̄_m − r_m, 10)); both (M,)."""
    return torch.exp(alpha * (running - dominance).clamp_max(MAX_EXPONENT))


class AGM(Method):
    name = "agm"
    help = "AGM (ICCV 2023): scale each encoder by exp(α·(r̄_m − r_m)), r = zero-masked loss dominance"
    settings = [
        Setting("agm_alpha", "float", 1.0, "α: coefficient exp(α·min(r̄_m − r_m, 10))", min=0.0, max=100.0),
        Setting("agm_momentum", "float", 0.9, "μ: running mean r̄ ← μ·r̄ + (1 − μ)·r", min=0.0, max=0.999),
    ]

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        self.alpha: float = self.cfg["agm_alpha"]
        self.momentum: float = self.cfg["agm_momentum"]
        self.running: torch.Tensor | None = None  # r̄, (M,); None until the first step

    def update(self, scores: torch.Tensor) -> torch.Tensor:
        """Feed s(t) of shape (M,); returns c(t) and folds r(t) into the running mean."""
        r = agm_dominance(scores.detach().float())
        prev = r if self.running is None else self.running.to(r.device)
        coef = agm_coefficients(prev, r, self.alpha)
        self.running = self.momentum * prev + (1 - self.momentum) * r
        return coef

    def unimodal_losses(self, state: StepState) -> torch.Tensor:
        feats = {m: f.detach() for m, f in state.feats.items()}
        with torch.no_grad():
            return torch.stack(
                [self.task.loss(self.model.fuse(feats, keep=[m], masks=state.masks), state.y) for m in self.modalities]
            )

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        scores = self.unimodal_losses(state)  # (M,)
        coef = self.update(scores)
        if state.log:
            state.scalars.update({f"agm/loss/{m}": s for m, s in zip(self.modalities, scores, strict=True)})
        for m, c in zip(self.modalities, coef, strict=True):
            scale_grads_(self.model.encoder_params(m), c)
        return dict(zip(self.modalities, coef, strict=True))

    def state_dict(self) -> dict[str, Any]:
        return {"running": self.running}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.running = state.get("running")
