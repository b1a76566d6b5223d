"""MSLR: modality-specific learning rates (Yao & Mihalcea, "Modality-specific Learning Rates for
Effective Multimodal Additive Late-fusion", Findings of ACL 2022).

Each encoder trains at its own learning rate: lr_m = lr · s_m, with s_m from `mslr_lr_scales`
("audio=1,video=10"; a modality not named keeps s = 1). The fusion module and the task head train
at the base lr. The paper's point is that the best unimodal models of different modalities train
at very different learning rates, so one global rate under-trains some of them; s_m is how you
carry each modality's own rate (e.g. the lr its `unimodal` run did best with, over the base lr)
into the joint run. coef/<m> = s_m every step; mslr/lr/<m> logs the rate encoder m's optimizer
group actually has at the start of each epoch (after any schedule).

How the rates are applied: as optimizer parameter groups (`Method.lr_groups`; the Stepper builds
the model's optimizer with one group per encoder whose multiplier is not 1 and the rest in group
0, each group's multiplier recorded as `lr_scale`). Not as a gradient scale: under Adam a constant gradient factor
cancels in m̂/√v̂ and the step is unchanged (NOTES.md: OGM-GE's suppressed encoder moved 1.04× as far
as under `joint` with Adam), while a group's lr multiplies Adam's step directly. Under SGD the two
would agree; the group is right under both.

Sources and departures. We found no official code for MSLR (none linked from the paper's
anthology page, none among the repositories searchable here; a third-party re-implementation
exists but is not a source). The paper builds its late-fusion model from fine-tuned unimodal models
and sums their predictions; our models fuse features into one head and train from scratch, so the
head keeps the base rate. The paper investigates three strategies for assigning the rates during
training; we implement the static assignment only (each encoder a fixed rate for the whole run):
the adaptive strategies' exact rules could not be checked against the paper's text or official
code from here, and we do not ship a guess. Under a schedule (`scheduler`), a schedule that sets
every group's lr must multiply by the group's `lr_scale` to keep the ratios.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ..models import AuxHeads, MultimodalNet

from ..settings import Setting, SettingError
from ..tasks import Task
from .base import EpochContext, Method, StepState


def parse_lr_scales(text: str) -> dict[str, float]:
    """ "audio=1,video=10" → {"audio": 1.0, "video": 10.0}; raises SettingError naming the bad part."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            scale = float(value)
        except ValueError:
            scale = float("nan")
        if not sep or not name or not (0.0 < scale < 1e6):
            raise SettingError(
                f"setting 'mslr_lr_scales': {part!r} is not modality=multiplier with a multiplier in (0, 1e6), "
                "e.g. 'audio=1,video=10'"
            )
        if name in out:
            raise SettingError(f"setting 'mslr_lr_scales': modality {name!r} is given twice")
        out[name] = scale
    return out


class MSLR(Method):
    name = "mslr"
    help = "MSLR (ACL Findings 2022): each encoder trains at its own learning rate, lr × its multiplier"
    settings = [
        Setting(
            "mslr_lr_scales",
            "str",
            "",
            "per-encoder lr multipliers, modality=multiplier,… (unnamed modalities: 1; e.g. each modality's best "
            "unimodal lr over the base lr)",
            pattern_help="modality=multiplier pairs separated by commas, e.g. audio=1,video=10",
        ),
    ]

    @classmethod
    def check(cls, cfg: Mapping[str, Any], modalities: list[str] | None = None) -> None:
        scales = parse_lr_scales(cfg["mslr_lr_scales"])
        unknown = sorted(set(scales) - set(modalities)) if modalities is not None else []
        if unknown:
            raise SettingError(
                f"setting 'mslr_lr_scales': {', '.join(map(repr, unknown))} is not a modality of this dataset; "
                f"allowed: {', '.join(modalities or [])}"
            )

    @classmethod
    def scales(cls, cfg: Mapping[str, Any], modalities: list[str]) -> dict[str, float]:
        given = parse_lr_scales(cfg["mslr_lr_scales"])
        return {m: given.get(m, 1.0) for m in modalities}

    @classmethod
    def lr_groups(cls, cfg: Mapping[str, Any], model: MultimodalNet) -> list[tuple[list[torch.nn.Parameter], float]]:
        cls.check(cfg, model.modalities)
        return [(model.encoder_params(m), s) for m, s in cls.scales(cfg, model.modalities).items() if s != 1.0]

    def __init__(self, cfg: Mapping[str, Any], model: MultimodalNet, aux: AuxHeads, task: Task) -> None:
        super().__init__(cfg, model, aux, task)
        self.lr_scale = self.scales(self.cfg, self.modalities)

    def on_epoch_start(self, ctx: EpochContext) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in self.modalities:
            first = self.model.encoder_params(m)[:1]
            for group in ctx.optimizer.param_groups:
                if first and any(p is first[0] for p in group["params"]):
                    out[f"mslr/lr/{m}"] = float(group["lr"])
        return out

    def modulate(self, state: StepState) -> dict[str, torch.Tensor | float]:
        return dict(self.lr_scale)
