"""`uniform`: the multimodal loss plus every unimodal loss, summed, nothing else.

    L = L_task + w · Σ_m ℓ(f_m(h_m), y)

where f_m is aux head m applied to the encoder's features *with* their graph, so ℓ(f_m(h_m), y)
trains encoder m. Its gradient on encoder m is exactly MMPareto's g_uni (cggm_core/methods/
mmpareto.py builds the same loss and takes its gradient with respect to the encoder), and L's
gradient on encoder m is g_mm + w·g_uni: MMPareto with the Pareto step (the min-norm weights and
the ×γ rescaling) taken out. The audit (issue 12) found that all of MMPareto's gain on our tasks
comes from this extra loss; `uniform` is the baseline that says so, and tests/test_uniform.py
checks the equivalence step by step.

Which unimodal prediction: the aux heads, not the model's own zero-masked response Ω(0…h_m…0),
because (1) that is what makes the comparison with MMPareto exact, (2) the official baselines
of the MMPareto repository use a separate linear head per modality (GeWu-Lab/MMPareto_ICML2024 at
a339db3, code/models/models.py `head_audio`, `head_video`; code/uniform_baseline.py line 79:
`loss = loss_mm + loss_a + loss_v`), which is what our aux heads are, and (3) every model has aux
heads (a decoder per modality for segmentation), while Ω(0…h_m…0) is a response of a head that
was never trained on such inputs.

Where we depart from that official uniform baseline: its unimodal heads are trained by the same
summed loss and optimizer as the model; ours stay the probe's aux heads, trained by their own
(detached) aux loss with the aux optimizer. The unimodal loss here therefore holds the head's
parameters constant (`torch.func.functional_call` with detached parameters): it reaches encoder
m only, as MMPareto's g_uni does, and the aux heads learn exactly as under every other method.
`w` (`uniform_weight`) is 1 in the official baseline. coef/<m> is 1: nothing is rescaled.
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


def unimodal_losses(
    aux: AuxHeads,
    task: Task,
    feats: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    masks: Mapping[str, torch.Tensor],
    modalities: list[str],
) -> dict[str, torch.Tensor]:
    """ℓ(f_m(h_m), y) per modality, with h_m's graph and f_m's parameters held constant: the loss's
    gradient reaches encoder m only (MMPareto's g_uni), never the aux head."""
    out: dict[str, torch.Tensor] = {}
    for m in modalities:
        head = aux.heads[m]
        frozen = {name: p.detach() for name, p in head.named_parameters()}
        kwargs = {} if masks.get(m) is None else {"mask": masks[m]}
        z = torch.func.functional_call(head, frozen, (feats[m],), kwargs)
        out[m] = task.loss(z, y)
    return out


class Uniform(Method):
    name = "uniform"
    help = "the multimodal loss plus every unimodal loss (aux heads on the encoders' features): MMPareto without Pareto"
    settings = [
        Setting(
            "uniform_weight", "float", 1.0, "w: L = L_task + w·Σ_m ℓ(f_m(h_m), y) (official: 1)", min=0.0, max=100.0
        ),
    ]

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        self.weight: float = self.cfg["uniform_weight"]

    def before_backward(self, state: StepState) -> torch.Tensor | None:
        losses = unimodal_losses(self.aux, self.task, state.feats, state.y, state.masks, self.modalities)
        if state.log:
            state.slice_means.update({f"uniform/loss_uni/{m}": loss.detach() for m, loss in losses.items()})
        return self.weight * torch.stack(list(losses.values())).sum()
