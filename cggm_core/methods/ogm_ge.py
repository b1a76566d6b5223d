"""OGM-GE: On-the-fly Gradient Modulation with Generalisation Enhancement (Peng et al., CVPR 2022).

Per batch, each modality's own prediction is scored and the dominant one is slowed down:

* Unimodal logits. When the task head is a single `nn.Linear` on concatenated features
  (`ConcatFusion`), the fused logits split exactly: logits_m = h_m W[:, block_m]ᵀ + b/M, and
  Σ_m logits_m equals the fused logits (the official code's decomposition). Any other head gets
  the zero-masked response Ω(0…h_m…0). Both are computed under no_grad on detached features.
* Score. Classification: s_m = Σ_i softmax(logits_m)_i[y_i]. OGM-GE is defined for
  classification only; its natural extension to our other tasks is the task's per-sample score
  (`Task.sample_scores`): for regression s_m = −Σ_i |pred_m,i − y_i| (higher is better), for
  segmentation the per-slice mean softmax probability of each pixel's true class, summed over the
  batch (the classification score with a pixel as the unit, averaged per slice).
* Coefficient. The dominant modality d = argmax_m s_m; ratio = s_d / mean_{m≠d} s_m (s_d/s_other
  for M = 2). For negative (regression) scores the same dominance reads mean_{m≠d} s_m / s_d, i.e.
  the others' mean error over the dominant's error. When ratio > 1, k_d = 1 − tanh(α·ratio), and
  every other k_m = 1. The official code applies tanh to relu(ratio), i.e. to the ratio itself
  (not ratio − 1), so the dominant modality is always cut to at most 1 − tanh(α).
* Modulation. Every encoder m's gradient ← k_m·grad, then (GE, `ge_noise`) plus N(0, std(grad))
  noise per parameter tensor, the std taken of the unmodulated gradient and the noise added to every
  encoder (dominant or not), as the official code does. The noise comes from the method's own
  generator (seeded from the global torch RNG at construction, saved in `state_dict`) so a resumed
  run draws the same noise.

α default 0.8: the official code has no default (`--alpha` is required); its README recommends
0.1 for VGGSound and 0.8 for CREMA-D. We pick the CREMA-D value because our benchmarks are small
datasets of CREMA-D's size, not VGGSound's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..models import AuxHeads, MultimodalNet
else:
    from .._lazy import nn, torch

from ..settings import Setting
from ..tasks import Task
from .base import Method, StepState, scale_grads_

TINY = 1e-12  # keeps ratios finite when every score is 0


def unimodal_outputs(
    model: MultimodalNet, feats: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Each modality's own prediction: exact decomposition for a linear head, else zero-masking."""
    with torch.no_grad():
        return _unimodal_outputs(model, feats, masks)


def _unimodal_outputs(
    model: MultimodalNet, feats: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    from ..models import ConcatFusion  # models needs torch: imported when OGM-GE runs, not with the registry

    detached = {m: f.detach() for m, f in feats.items()}
    head = model.head
    if isinstance(head, nn.Linear) and isinstance(model.fusion, ConcatFusion):
        out: dict[str, torch.Tensor] = {}
        start = 0
        n = len(model.modalities)
        for m in model.modalities:
            h = detached[m]  # (B, D_m)
            width = h.shape[1]
            w = head.weight[:, start : start + width]  # (C, D_m)
            bias = 0.0 if head.bias is None else head.bias / n
            out[m] = h @ w.T + bias  # (B, C)
            start += width
        return out
    return {m: model.fuse(detached, keep=[m], masks=masks) for m in model.modalities}


def ogm_score(pred: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    """s_m (0-d tensor): the batch sum of the task's per-sample scores (`Task.sample_scores`)."""
    return task.sample_scores(pred, y).sum()


def ogm_coefficients(scores: Mapping[str, torch.Tensor | float], alpha: float) -> dict[str, torch.Tensor]:
    """k_m from the scores s_m: 1 − tanh(α·ratio) for the dominant modality when ratio > 1, else 1."""
    names = list(scores)
    s = torch.stack([torch.as_tensor(scores[m], dtype=torch.float32) for m in names])  # (M,)
    dom = s.argmax()
    s_dom = s[dom]
    mean_others = (s.sum() - s_dom) / (len(names) - 1)
    # s ≥ 0 (classification, segmentation): s_d / mean_others. s ≤ 0 (regression): mean_others / s_d,
    # the error ratio.
    ratio = torch.where(
        s_dom > 0,
        s_dom / mean_others.clamp_min(TINY),
        mean_others / s_dom.clamp_max(-TINY),
    )
    k_dom = torch.where(ratio > 1, 1 - torch.tanh(alpha * ratio), torch.ones_like(ratio))
    is_dom = torch.arange(len(names), device=s.device) == dom
    k = torch.where(is_dom, k_dom, torch.ones_like(s))
    return dict(zip(names, k, strict=True))


class OGMGE(Method):
    name = "ogm_ge"
    help = "OGM-GE (CVPR 2022): slow the dominant modality's encoder by 1 − tanh(α·ratio), plus gradient noise"
    settings = [
        Setting("ogm_alpha", "float", 0.8, "α: dominant encoder's gradient × (1 − tanh(α·ratio))", min=0.0, max=100.0),
        Setting("ge_noise", "bool", True, "GE: add N(0, std(grad)) noise to every encoder gradient"),
    ]

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        self.alpha: float = self.cfg["ogm_alpha"]
        self.ge_noise: bool = self.cfg["ge_noise"]
        self.seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        self.generator: torch.Generator | None = None  # made on the gradients' device at first use
        # A restored generator state waits here until the gradients' device is known.
        self._pending_state: torch.Tensor | None = None
        self._pending_device_type: str | None = None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self.generator is None or self.generator.device != device:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            # A CPU and a CUDA generator state are not interchangeable: resuming on another kind of
            # device restarts the noise stream from the seed instead.
            if self._pending_state is not None and self._pending_device_type == device.type:
                gen.set_state(self._pending_state)
            self._pending_state = None
            self.generator = gen
        return self.generator

    def coefficients(self, state: StepState) -> dict[str, torch.Tensor]:
        outputs = unimodal_outputs(self.model, state.feats, state.masks)
        scores = {m: ogm_score(outputs[m], state.y, self.task) for m in self.modalities}
        if state.log:
            state.scalars.update({f"ogm/score/{m}": s for m, s in scores.items()})
        return ogm_coefficients(scores, self.alpha)

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        k = self.coefficients(state)
        for m in self.modalities:
            params = self.model.encoder_params(m)
            if not self.ge_noise:
                scale_grads_(params, k[m])
                continue
            for p in params:
                g = p.grad
                if g is None:
                    continue
                # std of the unmodulated gradient, as the official code; a 1-element tensor has none.
                std = g.std() if g.numel() > 1 else torch.zeros((), device=g.device)
                noise = torch.randn(g.shape, generator=self._generator(g.device), device=g.device, dtype=g.dtype)
                g.mul_(k[m].to(g.device)).add_(noise * std)
        return dict(k)

    def state_dict(self) -> dict[str, Any]:
        if self.generator is not None:
            return {"seed": self.seed, "generator": self.generator.get_state(), "device": self.generator.device.type}
        return {"seed": self.seed, "generator": self._pending_state, "device": self._pending_device_type}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.generator = None
        gen_state = state.get("generator")
        # Checkpoints are loaded with map_location; a generator state must be a CPU ByteTensor.
        self._pending_state = None if gen_state is None else gen_state.cpu()
        self._pending_device_type = state.get("device")
