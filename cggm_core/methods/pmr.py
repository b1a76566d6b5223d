"""PMR: Prototypical Modal Rebalance (Fan, Xu, Wang, Wang & Guo, CVPR 2023).

Each modality gets a non-parametric classifier: class prototypes c_k^m, the mean encoder feature of
the class-k samples. Its prediction for a sample is the softmax of the negative Euclidean
distances to the prototypes, p^m = softmax(−‖h^m − c_k^m‖), and its prototypical cross-entropy is
L_PCE^m = CE(−‖h^m − c^m‖, y). The modality whose prototypes classify worse is the slow learner,
and its PCE is added to the loss, pulling its features towards their class prototypes:

    s_m   = Σ_i p^m_i[y_i]                          (batch sum, as the official score_a_p)
    ρ_m   = s_m / mean_{k≠m} s_k                    (for two modalities: s_a / s_v, the official ratio)
    β_m   = α if ρ_m < 1 else 0                     (so for two: α for the weaker, 0 for both if equal)
    L     = L_task + Σ_m β_m · L_PCE^m  [− μ · Σ_{m: ρ_m > 1} H̄(p^m) while epoch < E_r]

inside the modulation window pmr_starts ≤ epoch ≤ pmr_ends (0-based epoch indices, as the
official `modulation_starts <= epoch <= modulation_ends`). coef/<m> = β_m: 0 when m gets no
prototype loss (and outside the window); diagnostics pmr/score/<m>, pmr/ratio/<m>,
pmr/loss_pce/<m>, pmr/entropy/<m>.

Prototypes, as the official `calculate_prototype`: recomputed at every epoch boundary with the
model in evaluation mode and no gradient, from the first ⌊pmr_proto_fraction · batches⌋ (at least
one) batches of a seeded shuffle of the training split (official: `all_num // 10` batches of the
train loader), then blended with the previous ones, c ← (1 − μ_p)·c_new + μ_p·c_old
(`pmr_momentum`, official `momentum_coef`, default 0.2). The official computes them once before
training and after every epoch, and its `epoch <= 0` test leaves the computation after the first
epoch without momentum; at the start of our (1-based) epoch E that is: no momentum for E ≤ 2,
momentum from E = 3 on. A class absent from the sampled batches keeps its previous prototype
(zeros before the first); the official divides by a zero count there (NaN).

Sources: fanyunfeng-bit/Modal-Imbalance-PMR at 3615e48, main_Prototype_grad.py: EU_dist (lines
69–75), the scores, ratio and coefficients (lines 152–178: β = α·[ρ < 1] for audio, λ = α·[ρ > 1]
for visual, `loss = criterion(out, label) + beta * loss_proto_a + lam * loss_proto_v`), the window
(line 156), calculate_prototype (lines 383–441), defaults (lines 22–60: alpha 1.0, momentum_coef
0.2, modulation 0–100 of 150 epochs, SGD lr 1e-4; its runs also use Adam and AdaGrad, bash.sh).

Where we depart, and why:
* More than two modalities: the official handles two; ρ_m against the mean of the others (as our
  OGM-GE generalises its ratio) reduces to it exactly for two.
* The entropy regulariser. The paper adds a prototype-based entropy term in the early epochs to
  keep the dominant modality from converging prematurely; the official repository does not have
  it (bash.sh runs a main_Proto_PER.py that is not in the repository). Ours, from the paper's
  description: −μ · mean_i H(p^m_i) for each modality with ρ_m > 1 (maximising the entropy of the
  dominant modality's prototype distribution), while the 0-based epoch < E_r
  (`pmr_entropy_epochs`), μ = `pmr_mu`. μ defaults to 0, the official code's behaviour.
* Features: the official uses each encoder's pooled output vector; we use `probe_features` (vectors
  as they are, sequences as the masked mean over time). For segmentation (feature maps
  (B, C, h, w)) every feature-map pixel is a sample, labelled by the nearest-downsampled label
  map: prototypes are per-class mean pixel features and the PCE is the per-pixel mean.
* Regression is refused: prototypes are per-class means, and regression has no classes.
* Outside the trainer (a user's own Stepper loop with no epoch hook) the first step's batch
  provides the prototypes, and the epoch stays 0.
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
from ..tasks import Task
from .base import EpochContext, Method, StepState


def prototype_logits(feats: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """−‖h_i − c_k‖₂ for features (N, D) and prototypes (K, D): (N, K), the official −EU_dist."""
    return -torch.cdist(feats, prototypes.to(feats.dtype))


def prototype_score(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """s = Σ_i softmax(logits)_i[y_i] (0-d, no gradient)."""
    with torch.no_grad():
        return logits.softmax(dim=1).gather(1, y.reshape(-1, 1)).sum()


def pmr_ratios(scores: Mapping[str, torch.Tensor | float]) -> dict[str, torch.Tensor]:
    """ρ_m = s_m / mean_{k≠m} s_k (s_a / s_v for two modalities)."""
    names = list(scores)
    s = torch.stack([torch.as_tensor(scores[m], dtype=torch.float64) for m in names])  # (M,)
    others = (s.sum() - s) / (len(names) - 1)
    return dict(zip(names, s / others.clamp_min(1e-300), strict=True))


def pmr_coefficients(ratios: Mapping[str, torch.Tensor], alpha: float) -> dict[str, float]:
    """β_m = α for a modality whose prototypes score below the others' mean (ρ_m < 1), else 0."""
    return {m: (alpha if float(r) < 1.0 else 0.0) for m, r in ratios.items()}


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """mean_i H(softmax(logits_i)) over the rows of (N, K), with graph."""
    logp = logits.log_softmax(dim=1)
    return -(logp.exp() * logp).sum(dim=1).mean()


class PMR(Method):
    name = "pmr"
    help = "PMR (CVPR 2023): add the prototypical cross-entropy of the modality whose class prototypes classify worse"
    tasks = frozenset({"classification", "segmentation"})
    tasks_why = "its prototypes are per-class mean features, and regression has no classes"
    settings = [
        Setting(
            "pmr_alpha",
            "float",
            1.0,
            "α: weight of the weaker modality's prototypical CE (official: 1.0)",
            min=0.0,
            max=100.0,
        ),
        Setting(
            "pmr_momentum",
            "float",
            0.2,
            "prototype momentum: c ← (1 − μ)·c_new + μ·c_old (official: 0.2)",
            min=0.0,
            max=0.999,
        ),
        Setting(
            "pmr_proto_fraction",
            "float",
            0.1,
            "fraction of the training batches the prototypes are computed from each epoch (official: 1/10)",
            min=0.001,
            max=1.0,
        ),
        Setting("pmr_starts", "int", 0, "first 0-based epoch PMR modulates (official: 0)", min=0, max=100_000),
        Setting("pmr_ends", "int", 100, "last 0-based epoch PMR modulates (official: 100)", min=0, max=100_000),
        Setting(
            "pmr_mu",
            "float",
            0.0,
            "μ: entropy regulariser on the dominant modality (0 = off, as the official code)",
            min=0.0,
            max=100.0,
        ),
        Setting(
            "pmr_entropy_epochs",
            "int",
            10,
            "E_r: the entropy regulariser acts while the 0-based epoch < E_r",
            min=0,
            max=100_000,
        ),
    ]

    @classmethod
    def check(cls, cfg: Mapping[str, Any], modalities: list[str] | None = None) -> None:
        if cfg["pmr_starts"] > cfg["pmr_ends"]:
            raise SettingError(
                f"setting 'pmr_starts': {cfg['pmr_starts']} is after pmr_ends={cfg['pmr_ends']}; the window would be empty"
            )

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        self.alpha: float = self.cfg["pmr_alpha"]
        self.classes = int(task.num_outputs)
        self.prototypes: dict[str, torch.Tensor] | None = None  # m → (K, D)
        self.epoch_index = 0  # 0-based, as the official's window and E_r
        self.beta: dict[str, float] = dict.fromkeys(self.modalities, 0.0)  # this step's β_m

    # -- per-sample features and labels ---------------------------------------------------------
    def samples(
        self, m: str, feat: torch.Tensor, mask: torch.Tensor | None, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) features and (N,) labels: one row per sample, or per feature-map pixel."""
        f = self.model.probe_features(m, feat, mask)
        if f.ndim == 4:  # (B, C, h, w): each pixel is a sample, with the nearest label
            _, c, h, w = f.shape
            labels = F.interpolate(y[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()  # (B, h, w)
            return f.permute(0, 2, 3, 1).reshape(-1, c), labels.reshape(-1)
        return f.reshape(f.shape[0], -1), y.reshape(-1)

    # -- prototypes -----------------------------------------------------------------------------
    def class_means(self, sums: torch.Tensor, counts: torch.Tensor, old: torch.Tensor | None) -> torch.Tensor:
        """Per-class mean (K, D); a class with no sample keeps `old` (zeros when there is none)."""
        seen = counts > 0
        means = sums / counts.clamp_min(1).unsqueeze(1)
        fallback = torch.zeros_like(means) if old is None else old.to(means.dtype)
        return torch.where(seen.unsqueeze(1), means, fallback)

    def accumulate(
        self,
        feats: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor],
        y: torch.Tensor,
        acc: dict[str, list[torch.Tensor]],
    ) -> None:
        for m in self.modalities:
            f, labels = self.samples(m, feats[m].detach(), masks.get(m), y)
            f = f.double()
            if m not in acc:  # [Σ features per class (K, D), count per class (K,)]
                sums = torch.zeros(self.classes, f.shape[1], dtype=f.dtype, device=f.device)
                acc[m] = [sums, torch.zeros(self.classes, dtype=f.dtype, device=f.device)]
            acc[m][0].index_add_(0, labels, f)
            acc[m][1].index_add_(0, labels, torch.ones_like(labels, dtype=f.dtype))

    def on_epoch_start(self, ctx: EpochContext) -> dict[str, float]:
        self.epoch_index = ctx.epoch - 1
        n_batches = math.ceil(len(ctx.train) / ctx.batch_size)
        take = max(1, math.floor(self.cfg["pmr_proto_fraction"] * n_batches))
        gen = torch.Generator().manual_seed(ctx.seed * 1_000_003 + ctx.epoch + 500_000)
        acc: dict[str, list[torch.Tensor]] = {}
        self.model.eval()
        with torch.no_grad():
            for i, batch in enumerate(ctx.train.batches(ctx.batch_size, generator=gen)):
                if i >= take:
                    break
                self.accumulate(self.model.encode(batch.xs, batch.masks), batch.masks, batch.y, acc)
        self.model.train()
        old = self.prototypes
        fresh = {m: self.class_means(s, c, None if old is None else old[m]) for m, (s, c) in acc.items()}
        # The official leaves its first two computations without momentum (module docstring).
        if old is not None and ctx.epoch >= 3:
            mu = self.cfg["pmr_momentum"]
            fresh = {m: (1 - mu) * c + mu * old[m].to(c.dtype) for m, c in fresh.items()}
        # Every rank computes them from the same batches; rank 0's are taken, so that a
        # non-deterministic kernel (CUDA) cannot leave the ranks with different prototypes.
        self.dist.broadcast_tensors(list(fresh.values()))
        self.prototypes = fresh
        missing = sum(int((c == 0).sum()) for _, c in acc.values())
        return {"pmr/proto_missing_classes": float(missing)}

    # -- the loss -------------------------------------------------------------------------------
    def in_window(self) -> bool:
        return self.cfg["pmr_starts"] <= self.epoch_index <= self.cfg["pmr_ends"]

    def before_backward(self, state: StepState) -> torch.Tensor | None:
        if self.prototypes is None:  # no epoch hook (a user's own loop): this batch gives them
            acc: dict[str, list[torch.Tensor]] = {}
            self.accumulate(state.feats, state.masks, state.y, acc)
            acc = {
                m: [self.dist.sum(s, state.share), self.dist.sum(c, state.share)] for m, (s, c) in acc.items()
            }  # the global batch's
            self.prototypes = {m: self.class_means(s, c, None) for m, (s, c) in acc.items()}
        logits: dict[str, torch.Tensor] = {}
        labels: dict[str, torch.Tensor] = {}
        scores: dict[str, torch.Tensor] = {}
        for m in self.modalities:
            f, lab = self.samples(m, state.feats[m], state.masks.get(m), state.y)
            logits[m] = prototype_logits(f, self.prototypes[m])  # (N, K), graph into encoder m
            labels[m] = lab
            scores[m] = prototype_score(logits[m], lab)
        if self.dist.enabled:  # batch sums: the global batch's is the sum over ranks
            summed = self.dist.sum(torch.stack(list(scores.values())), state.share)
            scores = dict(zip(scores, summed.unbind(), strict=True))
        ratios = pmr_ratios(scores)
        active = self.in_window()
        self.beta = pmr_coefficients(ratios, self.alpha) if active else dict.fromkeys(self.modalities, 0.0)
        terms: list[torch.Tensor] = []
        for m in self.modalities:
            if self.beta[m] > 0 or state.log:
                pce = F.cross_entropy(logits[m], labels[m])
                if self.beta[m] > 0:
                    terms.append(self.beta[m] * pce)
                if state.log:
                    state.slice_means[f"pmr/loss_pce/{m}"] = pce.detach()
        mu = self.cfg["pmr_mu"]
        per = active and mu > 0 and self.epoch_index < self.cfg["pmr_entropy_epochs"]
        for m in self.modalities:
            if per and float(ratios[m]) > 1.0:
                entropy = mean_entropy(logits[m])
                terms.append(-mu * entropy)
                if state.log:
                    state.slice_means[f"pmr/entropy/{m}"] = entropy.detach()
        if state.log:
            state.scalars.update({f"pmr/score/{m}": s for m, s in scores.items()})
            state.scalars.update({f"pmr/ratio/{m}": r for m, r in ratios.items()})
        return torch.stack(terms).sum() if terms else None

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        return dict(self.beta)

    def state_dict(self) -> dict[str, Any]:
        return {"prototypes": self.prototypes, "epoch_index": self.epoch_index}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.prototypes = state.get("prototypes")
        self.epoch_index = int(state.get("epoch_index", 0))
