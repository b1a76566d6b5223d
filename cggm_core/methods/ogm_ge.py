"""OGM-GE: On-the-fly Gradient Modulation with Generalisation Enhancement (Peng et al., CVPR 2022).

Official code: github.com/GeWu-Lab/OGM-GE_CVPR2022 at 343dc1d (file:line references below are to
that commit's main.py). Per batch, each modality's own prediction is scored and the dominant one is
slowed down:

* Unimodal logits. When the task head is a single `nn.Linear` on concatenated features
  (`ConcatFusion`), the fused logits split exactly: logits_m = h_m W[:, block_m]ᵀ + b/M, and
  Σ_m logits_m equals the fused logits (the official decomposition, main.py:88-93). Any other head
  gets the zero-masked response Ω(0…h_m…0). Both are computed under no_grad on detached features.
* Score. Classification: s_m = Σ_i softmax(logits_m)_i[y_i] (main.py:105-106). OGM-GE is defined
  for classification only; its natural extension to our other tasks is the task's per-sample score
  (`Task.sample_scores`): for regression s_m = −Σ_i |pred_m,i − y_i| (higher is better), for
  segmentation the per-slice mean softmax probability of each pixel's true class, summed over the
  batch (the classification score with a pixel as the unit, averaged per slice).
* Coefficient. The dominant modality d = argmax_m s_m (the first on a tie); ratio = s_d /
  mean_{m≠d} s_m (s_d/s_other for M = 2). For negative (regression) scores the same dominance reads
  mean_{m≠d} s_m / s_d, the others' mean error over the dominant's error. k_d = 1 − tanh(α·ratio)
  whenever ratio ≥ 1, every other k_m = 1 (Eq. 10, main.py:108-124). The official applies tanh to
  relu(ratio), i.e. to the ratio itself (not ratio − 1), so the dominant modality is always cut to
  at most 1 − tanh(α); on a tie (ratio = 1) it takes its `else` branch and slows audio, the first
  modality, which is what argmax's first index does here.
* Modulation window (`ogm_modulation_starts` … `ogm_modulation_ends`, both included): outside it
  nothing is touched, no coefficient and no noise (main.py:132-150). The official counts epochs
  from 0 (`for epoch in range(args.epochs)`, main.py:275) and modulates epochs 0-50 of 100
  (main.py:34, 41-42); our epochs count from 1 as the trainer logs them, so the same window is
  1-51, our defaults.
* Which parameters. The official modulates the parameters of `audio_net`/`visual_net` whose
  gradient is 4-D (main.py:133-148): the convolution kernels of its ResNet-18 encoders, i.e. every
  encoder weight except the BatchNorm affine parameters (its convolutions have no bias). Our
  encoders are also MLPs and transformers, so the natural extension is every encoder parameter
  with at least 2 dimensions (linear weights, convolution kernels, embeddings); biases and norm
  parameters (1-D) are left alone. The fusion and head are never modulated.
* GE. Each such gradient becomes k_m·grad + N(0, std(grad) + 1e-8), the std taken of the
  unmodulated gradient (main.py:138-139, 145-146), the noise added to every modality's encoder
  (dominant or not). A 1-element tensor has no std (torch gives NaN): its std counts as 0. The noise
  comes from the method's own generator (seeded from the global torch RNG at construction, saved in
  `state_dict`) so a resumed run draws the same noise; the official draws from the global RNG.

α default 0.8: the official code has no default (`--alpha` is required, main.py:43); its README
recommends 0.1 for VGGSound and 0.8 for CREMA-D (README.md:151). We pick the CREMA-D value
because our benchmarks are small datasets of CREMA-D's size, not VGGSound's.

Official recipe (for the presets): SGD, lr 1e-3, momentum 0.9, weight decay 1e-4 (main.py:37,
246), StepLR every 70 epochs × 0.1 (main.py:38-39, 247), batch 64 (main.py:33), 100 epochs
(main.py:34), no gradient clipping (none in main.py), window 0-50 (0-based).
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

from ..settings import Setting, SettingError
from ..tasks import Task
from .base import Method, StepState, scale_grads_

TINY = 1e-12  # keeps ratios finite when every score is 0
STD_EPS = 1e-8  # main.py:139: normal_(0, grad.std() + 1e-8)


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

    # In the head's dtype: under mixed precision (cggm_core.amp) the features are bf16/fp16, and
    # this runs after the backward, outside autocast, where the head is float32.
    dtype = next(model.head.parameters()).dtype
    detached = {m: f.detach().to(dtype) for m, f in feats.items()}
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
    """k_m from the scores s_m: 1 − tanh(α·ratio) for the dominant modality when ratio ≥ 1, else 1."""
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
    k_dom = torch.where(ratio >= 1, 1 - torch.tanh(alpha * ratio), torch.ones_like(ratio))
    is_dom = torch.arange(len(names), device=s.device) == dom
    k = torch.where(is_dom, k_dom, torch.ones_like(s))
    return dict(zip(names, k, strict=True))


class OGMGE(Method):
    name = "ogm_ge"
    help = "OGM-GE (CVPR 2022): slow the dominant modality's encoder by 1 − tanh(α·ratio), plus gradient noise"
    settings = [
        Setting("ogm_alpha", "float", 0.8, "α: dominant encoder's gradient × (1 − tanh(α·ratio))", min=0.0, max=100.0),
        Setting("ge_noise", "bool", True, "GE: add N(0, std(grad) + 1e-8) noise to every encoder weight's gradient"),
        Setting(
            "ogm_modulation_starts", "int", 1, "first epoch with modulation (epochs count from 1)", min=1, max=100_000
        ),
        Setting(
            "ogm_modulation_ends",
            "int",
            51,
            "last epoch modulated, included (official 0-50 from 0)",
            min=1,
            max=100_000,
        ),
    ]

    @classmethod
    def check(cls, cfg: Mapping[str, Any], modalities: list[str] | None = None) -> None:
        if cfg["ogm_modulation_starts"] > cfg["ogm_modulation_ends"]:
            raise SettingError(
                f"setting 'ogm_modulation_starts': {cfg['ogm_modulation_starts']} is after "
                f"ogm_modulation_ends={cfg['ogm_modulation_ends']}; expected starts <= ends"
            )
        if modalities is not None and len(modalities) < 2:
            raise SettingError(f"method 'ogm_ge' needs at least 2 modalities; the dataset has {len(modalities)}")

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        self.alpha: float = self.cfg["ogm_alpha"]
        self.ge_noise: bool = self.cfg["ge_noise"]
        self.starts: int = self.cfg["ogm_modulation_starts"]
        self.ends: int = self.cfg["ogm_modulation_ends"]
        self.epoch = 1  # a Stepper driven without epochs is in its first one
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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def in_window(self) -> bool:
        return self.starts <= self.epoch <= self.ends

    def modulated_params(self, m: str) -> list[torch.nn.Parameter]:
        """Encoder m's parameters with ≥ 2 dimensions (the official: its conv kernels, see above)."""
        return [p for p in self.model.encoder_params(m) if p.ndim >= 2]

    def coefficients(self, state: StepState) -> dict[str, torch.Tensor]:
        outputs = unimodal_outputs(self.model, state.feats, state.masks)
        scores = {m: ogm_score(outputs[m], state.y, self.task) for m in self.modalities}
        if self.dist.enabled:  # batch sums: the global batch's is the sum over ranks
            summed = self.dist.sum(torch.stack(list(scores.values())), state.share)
            scores = dict(zip(scores, summed.unbind(), strict=True))
        if state.log:
            state.scalars.update({f"ogm/score/{m}": s for m, s in scores.items()})
        return ogm_coefficients(scores, self.alpha)

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        if not self.in_window:  # main.py:132-150: outside the window no coefficient and no noise
            if state.log:
                self.coefficients(state)  # the scores are still logged
            return {m: 1.0 for m in self.modalities}
        k = self.coefficients(state)
        for m in self.modalities:
            params = self.modulated_params(m)
            if not self.ge_noise:
                scale_grads_(params, k[m])
                continue
            for p in params:
                g = p.grad
                if g is None:
                    continue
                # std of the unmodulated gradient + 1e-8, as the official; a 1-element tensor has none.
                std = g.std() if g.numel() > 1 else torch.zeros((), device=g.device, dtype=g.dtype)
                noise = torch.randn(g.shape, generator=self._generator(g.device), device=g.device, dtype=g.dtype)
                g.mul_(k[m].to(g.device)).add_(noise * (std + STD_EPS))
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
