"""The official training recipes (a job's `preset`): one per data set of the paper, one per method.

    {"dataset": "mosi", "method": "cggm", "preset": "mosi", "path": "mosi/mosi_data.pkl", "seed": 1}
    {"dataset": "mfeat", "method": "ogm_ge", "preset": "ogm_ge-official", "views": "kar,mor"}

A preset holds values for settings by name: the trainer's (optimizer, lr, batch size, epochs,
clip, schedule, ...), each method's (ρ, λ for `cggm`; α and windows for the baselines) and each
model's (the transformer's sizes and dropouts). `config.resolve` applies it between the defaults
and the job's own settings: **an explicit setting wins over the preset**; a method's or model's
values apply only when the job uses that method or model (`joint` takes the trainer recipe, not ρ).
The resolved config stores every final value (and the preset's name, for the record), so a run
never depends on this table again.

Two kinds:

* **Data-set presets** (`datasets` names them; `method` is None): the CGGM paper's recipe for one
  of its data sets, for any method; any other data set is refused.
* **Method presets** (`datasets=()`: any data set; `method` names it): how a method's authors
  trained it, so a comparison can be run the way they ran it (the audit of issue 12: under Adam a
  gradient-magnitude method barely reaches the update, and the official runs of OGM-GE, AGM,
  MMPareto, PMR and MLA use SGD). A method preset is refused for another method, except for the
  baselines every method is compared against (`COMPARED_AGAINST`: joint, unimodal), which take
  its trainer values only, so that "ogm_ge under its own optimizer" has its paired `joint` run.
  `official_preset(method)` names a method's preset (None where its authors published none).

  Every official code here that has unimodal heads (MMPareto's and its uniform baseline's
  `head_audio`/`head_video`, G-Blending's extra fc heads) trains them with the model's own
  optimizer at the model's lr and weight decay; so our aux heads do the same under a method preset
  (`aux_optimizer` same, `aux_lr_ratio` 1, `aux_weight_decay` = `weight_decay`). OGM-GE, AGM, PMR
  and MLA have no aux heads: for them ours are only the probe, and they train like the model's own
  head. Epochs count from 1, as our trainer does, unless a setting says otherwise (PMR's windows
  are 0-based, as its settings declare). A method preset sets the recipe's epochs and batch size
  too; a benchmark on small data shortens them with explicit settings (a StepLR step of 70 epochs
  then never fires: that is the recipe, shortened, not a bug).

Where each data-set preset's values come from, in the official repository (github.com/zrguo/CGGM):

- mosi — run/mosi_run.py defaults and src/msatrain.py: `--optim Adam` for the model and
  (`getattr(optim, optim)`) for the aux heads, neither with weight decay; `--lr 1e-3`,
  `--cls_lr 5e-4` (aux_lr_ratio 0.5); `--batch_size 64`, `--num_epochs 30`, `--clip 0.8`;
  `ReduceLROnPlateau(mode='min', patience=when=10, factor=0.1)` stepped on the validation loss;
  `--rou 1.3`, `--lamda 0.2`; `--proj_dim 40`, `--num_heads 5`, `--nlevels 5` (the fusion
  transformer has `layers - 2` = 3, models/msamodel.py), `--cls_layers 2`; dropouts attn .15,
  relu .15, embed .2, res .1, out .1.
- iemocap — run/iemo_run.py and src/msatrain.py: as mosi, but `--nlevels 4` (fusion 2),
  res dropout .15, out dropout .2.
- food101 — run/food_run.py and src/foodtrain.py: `--optim AdamW`, the model's `weight_decay=6e-3`,
  the aux heads' AdamW `weight_decay=3e-3`; `--lr 1e-3`, `--cls_lr 5e-4`; `--batch_size 128`,
  `--num_epochs 60`, `--clip 0.8`; the same ReduceLROnPlateau; `--rou 1.3`, `--lamda 0.05`;
  `proj_dim = 40` and 5 heads (hard-coded in models/foodmodel.py and foodtrain.py), `--nlevels 4`
  (fusion 2), `--cls_layers 2`; dropouts attn .2, relu .15, embed .2, res .15, out .1.
- brats — run/brats_run.py and src/segtrain.py: SGD for the model and the aux heads, both
  `momentum=0.9`, `weight_decay=3e-4`; the model's lr set before every iteration from
  `cosine_scheduler(base_lr=0.01, final_lr=0.001, warmup_epochs=10, start_warmup_value=4e-4)`;
  the aux heads' lr fixed at `--cls_lr 6e-3` (aux_lr_ratio 0.6 of lr 0.01); `--batch_size 64`,
  `--num_epochs 75`; no clipping (brats_run.py declares `--clip 0.8`, segtrain.py never clips);
  `--rou 1.0`, `--lamda 0.1`. No model values: the official DeepLabv3+ with ResNet-101 encoders
  is not our `segnet`, whose sizes stay the job's.

No `mosei` preset: the official code has no MOSEI recipe (no run script; its data loader reads
only mosi, iemo, food and brats) and the paper reports no MOSEI result.

Where each method preset's values come from (file:line at the commit named; "StepLR" is torch's,
stepped once at the end of each training epoch, our `scheduler=step`):

- cggm-official — the recipe CGGM's authors share across their MOSI and IEMOCAP runs (the mosi
  preset above, without its data-set-specific model sizes): Adam 1e-3, aux heads Adam 5e-4, no
  weight decay, batch 64, 30 epochs, clip 0.8, plateau ×0.1 after 10 epochs, ρ 1.3, λ 0.2. Food-101
  and BraTS differ (AdamW; SGD with warm-up and cosine): use their data-set presets there.
- ogm_ge-official — GeWu-Lab/OGM-GE_CVPR2022 at 343dc1d, main.py: `optim.SGD(model.parameters(),
  lr=args.learning_rate, momentum=0.9, weight_decay=1e-4)` (line 246; the `--optimizer` flag of
  line 36 is never read), `--learning_rate 0.001` (37), `StepLR(optimizer, 70, 0.1)` (38-39, 247)
  stepped at the end of `train_epoch` (159), `--batch_size 64` (33), `--epochs 100` (34), no
  gradient clipping anywhere; `--modulation OGM_GE` (22, GE noise on), window 0-50 of epochs
  counted from 0 (41-42, 132, 275: our 1-51); α 0.8, README.md:151's recommendation for CREMA-D
  (0.1 for VGGSound; `--alpha` has no default, line 43).
- agm-official — lihong2303/AGM_ICCV2023 at 5a65542: `optim.SGD(..., momentum=0.9,
  weight_decay=1e-4)` and `StepLR(optimizer, lr_decay_step, lr_decay_ratio)` (tasks/CREMAD_task.py:
  36-37, tasks/AVMNIST_task.py:38-39), 70 and 0.1 (utils/config.py:77-78), stepped at the end of
  each training epoch (run/CREMAD_main.py:248); the only published command, README.md:42:
  `--batch_size 64 --EPOCHS 100 --learning_rate 0.0001 --alpha 2.5` (AV-MNIST); window 0-20 with
  epochs counted from 1 (utils/config.py:74-75, run/CREMAD_main.py:159, 635: our 1-20); the
  conditional clip at 1.0 (run/CREMAD_main.py:238, 243: `agm_clip`) and no other clip (trainer
  `clip` 0); the cap 10 of the CREMA-D script.
- mmpareto-official — GeWu-Lab/MMPareto_ICML2024 at a339db3, code/MMPareto.py: `--batch_size 64`
  (28), `--epochs 50` (29), `--learning_rate 0.002` (32), `optim.SGD(..., momentum=0.9,
  weight_decay=1e-4)` (296); the StepLR of line 301 (30 epochs × 0.1, lines 33-34) is built but
  never stepped (no `scheduler.step()` in the file), so the lr stays 0.002: `scheduler` none;
  `--clip_grad` (40) is declared and never read: no clip; γ = 1.5 (`gamma=1.5`, line 178);
  code/script/mmpareto.sh runs these defaults.
- uniform-official — the same repository's uniform baseline, code/uniform_baseline.py (run by
  code/script/uniform_baseline.sh with its defaults): batch 64, 50 epochs, lr 0.002 (27-28, 31),
  SGD momentum 0.9, weight decay 1e-4 (173), a StepLR never stepped (178), `loss = loss_mm +
  loss_a + loss_v` (79: `uniform_weight` 1).
- pmr-official — fanyunfeng-bit/Modal-Imbalance-PMR at 3615e48, main_Prototype_grad.py:
  `optim.SGD(..., momentum=0.9, weight_decay=1e-4)` and `StepLR(optimizer, 70, 0.1)` (lines 464-465,
  44-45) stepped after each SGD epoch (281-282), `--batch_size 64` (36). The parser's lr 1e-4,
  150 epochs, window 0-100, α 1 and prototype momentum 0.2 (37-49) are not what the authors ran:
  every main_Prototype_grad.py command in bash.sh sets the lr (1e-3, once 5e-4) and nearly all
  set the prototype momentum to 0; we take the repository's SGD concat-fusion run, bash.sh:140:
  `--epochs 130 --learning_rate 0.001 --modulation_starts 0 --modulation_ends 70 --alpha 2.0
  --momentum_coef 0.0` (AVE).
- mla-official — Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation at ab6c184,
  main.py: `optim.SGD(model.parameters(), lr=args.learning_rate, momentum=0.9, weight_decay=1e-4)`
  (749), `--learning_rate 0.001` (32), `StepLR(optimizer, 70, 0.1)` (33-34, 760) stepped at the end
  of `train_epoch` (481), batch 64 and 100 epochs (28-29; README.md:66 runs MLA with `--batch_size
  64 --epochs 100 --gs_flag --dynamic`), no clipping in main.py. The method's own choices (which
  projection, which fusion) stay its settings' defaults (cggm_core/methods/mla.py says which
  reading each is); `--set mla_projection=off` runs what the official main.py computes.
- gblending-official — the authors' code, facebookresearch/VMZ at 4cc542d, publishes no G-Blending
  run command (c2/tutorials/gradient_blending.md gives only estimated weights); its training
  script, whose `--g_blend` flag (c2/tools/train_net.py:578) turns G-Blending on, has these
  defaults: momentum SGD 0.9 (train_net.py:55-59), weight decay 0.005 (536), base lr 0.003 (528),
  lr × 0.1 (532) every 10 epochs (530; policy "step", 287-294), batch 32 (522), 50 epochs (526),
  no clipping. Where we depart: Caffe2's update is Nesterov momentum (`nesterov=1`, line 59);
  ours is torch's plain-momentum SGD.

No method preset (`official_preset` gives None):
- joint, unimodal: plain training has no authors' recipe of its own; they run under the common
  defaults, or under any method preset's trainer values for a paired comparison (above).
- mslr: no official code was found (cggm_core/methods/mslr.py says where we looked); a recipe we
  cannot check against code is not shipped. (The AGM repository runs an MSLR baseline under
  AGM's own recipe, run/CREMAD_main.py:194: that is agm-official.)

This module imports nothing but the standard library: the backend serves the presets in the
catalog. `config._check_presets` checks every value against its setting at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The baselines every method is compared against: they may run under any method preset (its trainer
# values only), so that a method under its authors' optimizer has a paired run under the same one.
COMPARED_AGAINST = ("joint", "unimodal")


@dataclass(frozen=True)
class Preset:
    name: str
    help: str
    datasets: tuple[str, ...]  # the data sets it is for; () = any data set
    trainer: Mapping[str, Any]
    methods: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # method name → its settings
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # model name → its settings
    method: str | None = None  # a method preset: the method whose authors' recipe it is; None = any method

    def __post_init__(self) -> None:
        others = sorted(set(self.methods) - {self.method}) if self.method is not None else []
        if others:
            raise RuntimeError(f"preset {self.name!r} is method {self.method!r}'s recipe but sets values for {others}")

    def for_dataset(self, dataset: str) -> bool:
        return not self.datasets or dataset in self.datasets

    def for_method(self, method: str) -> bool:
        return self.method is None or method == self.method or method in COMPARED_AGAINST

    def values_for(self, method: str, model: str) -> dict[str, Any]:
        """Every value this preset sets for a job of this method and model, by setting name."""
        return {**self.trainer, **self.methods.get(method, {}), **self.models.get(model, {})}

    def describe(self) -> dict[str, Any]:
        """The catalog entry (JSON-ready)."""
        return {
            "name": self.name,
            "help": self.help,
            "datasets": list(self.datasets),  # [] = any data set
            "method": self.method,  # None = any method
            "trainer": dict(self.trainer),
            "methods": {k: dict(v) for k, v in self.methods.items()},
            "models": {k: dict(v) for k, v in self.models.items()},
        }


# The official recipe shared by the three transformer workloads (src/msatrain.py, src/foodtrain.py).
_PLATEAU = {"scheduler": "plateau", "plateau_patience": 10, "plateau_factor": 0.1}
_ADAM_1E3 = {"lr": 1e-3, "aux_lr_ratio": 0.5, "aux_optimizer": "same", "clip": 0.8, **_PLATEAU}


def _sgd(
    *, lr: float, weight_decay: float, batch_size: int, epochs: int, step_epochs: int | None = None
) -> dict[str, Any]:
    """A method preset's trainer values: SGD with momentum 0.9 (every official code here), the aux
    heads trained as the model's own (see the docstring), no clip, and StepLR when `step_epochs`."""
    schedule: dict[str, Any] = (
        {"scheduler": "step", "lr_step_epochs": step_epochs, "lr_step_gamma": 0.1}
        if step_epochs is not None
        else {"scheduler": "none"}
    )
    return {
        "optimizer": "sgd",
        "momentum": 0.9,
        "lr": lr,
        "weight_decay": weight_decay,
        "aux_optimizer": "same",
        "aux_lr_ratio": 1.0,
        "aux_weight_decay": weight_decay,
        "batch_size": batch_size,
        "epochs": epochs,
        "clip": 0.0,
        **schedule,
    }


def _transformer(enc_layers: int, attn: float, relu: float, embed: float, res: float, out: float) -> dict[str, Any]:
    return {
        "d_model": 40,
        "heads": 5,
        "enc_layers": enc_layers,
        "fusion_layers": enc_layers - 2,  # the official fusion transformer has `layers - 2` layers
        "aux_layers": 2,
        "attn_dropout": attn,
        "relu_dropout": relu,
        "embed_dropout": embed,
        "res_dropout": res,
        "out_dropout": out,
    }


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "mosi",
            "official CMU-MOSI recipe: Adam 1e-3 (aux 5e-4), batch 64, 30 epochs, clip 0.8, "
            "plateau ×0.1 (patience 10); CGGM ρ 1.3, λ 0.2; transformer d 40, 5 heads, 5/3/2 layers",
            ("mosi",),
            {
                **_ADAM_1E3,
                "optimizer": "adam",
                "weight_decay": 0.0,
                "aux_weight_decay": 0.0,
                "batch_size": 64,
                "epochs": 30,
            },
            {"cggm": {"rho": 1.3, "lam": 0.2}},
            {"transformer": _transformer(5, attn=0.15, relu=0.15, embed=0.2, res=0.1, out=0.1)},
        ),
        Preset(
            "iemocap",
            "official IEMOCAP recipe: Adam 1e-3 (aux 5e-4), batch 64, 30 epochs, clip 0.8, "
            "plateau ×0.1 (patience 10); CGGM ρ 1.3, λ 0.2; transformer d 40, 5 heads, 4/2/2 layers",
            ("iemocap",),
            {
                **_ADAM_1E3,
                "optimizer": "adam",
                "weight_decay": 0.0,
                "aux_weight_decay": 0.0,
                "batch_size": 64,
                "epochs": 30,
            },
            {"cggm": {"rho": 1.3, "lam": 0.2}},
            {"transformer": _transformer(4, attn=0.15, relu=0.15, embed=0.2, res=0.15, out=0.2)},
        ),
        Preset(
            "food101",
            "official UPMC-Food-101 recipe: AdamW 1e-3 wd 6e-3 (aux 5e-4 wd 3e-3), batch 128, 60 epochs, "
            "clip 0.8, plateau ×0.1 (patience 10); CGGM ρ 1.3, λ 0.05; transformer d 40, 5 heads, 4/2/2 layers",
            ("food101",),
            {
                **_ADAM_1E3,
                "optimizer": "adamw",
                "weight_decay": 6e-3,
                "aux_weight_decay": 3e-3,
                "batch_size": 128,
                "epochs": 60,
            },
            {"cggm": {"rho": 1.3, "lam": 0.05}},
            {"transformer": _transformer(4, attn=0.2, relu=0.15, embed=0.2, res=0.15, out=0.1)},
        ),
        Preset(
            "brats",
            "official BraTS 2021 recipe: SGD momentum 0.9 wd 3e-4, lr 4e-4 → 1e-2 over 10 warm-up epochs then "
            "cosine to 1e-3 (aux SGD 6e-3 fixed), batch 64, 75 epochs, no clip; CGGM ρ 1.0, λ 0.1",
            ("brats",),
            {
                "optimizer": "sgd",
                "momentum": 0.9,
                "weight_decay": 3e-4,
                "aux_optimizer": "same",
                "aux_weight_decay": 3e-4,
                "lr": 1e-2,
                "aux_lr_ratio": 0.6,
                "scheduler": "warmup_cosine",
                "warmup_epochs": 10,
                "warmup_start_lr": 4e-4,
                "final_lr": 1e-3,
                "batch_size": 64,
                "epochs": 75,
                "clip": 0.0,
            },
            {"cggm": {"rho": 1.0, "lam": 0.1}},
        ),
        # -- method presets: each for any data set (see the docstring for the lines they come from)
        Preset(
            "cggm-official",
            "CGGM's authors' recipe (MOSI, IEMOCAP): Adam 1e-3 (aux 5e-4), batch 64, 30 epochs, clip 0.8, "
            "plateau ×0.1 (patience 10); ρ 1.3, λ 0.2",
            (),
            {
                **_ADAM_1E3,
                "optimizer": "adam",
                "weight_decay": 0.0,
                "aux_weight_decay": 0.0,
                "batch_size": 64,
                "epochs": 30,
            },
            {"cggm": {"rho": 1.3, "lam": 0.2}},
            method="cggm",
        ),
        Preset(
            "ogm_ge-official",
            "OGM-GE's authors' recipe: SGD 1e-3 momentum 0.9 wd 1e-4, StepLR ×0.1 every 70 epochs, batch 64, "
            "100 epochs, no clip; α 0.8, GE on, window epochs 1-51",
            (),
            _sgd(lr=1e-3, weight_decay=1e-4, batch_size=64, epochs=100, step_epochs=70),
            {
                "ogm_ge": {
                    "ogm_alpha": 0.8,
                    "ge_noise": True,
                    "ogm_modulation_starts": 1,
                    "ogm_modulation_ends": 51,
                }
            },
            method="ogm_ge",
        ),
        Preset(
            "agm-official",
            "AGM's authors' recipe: SGD 1e-4 momentum 0.9 wd 1e-4, StepLR ×0.1 every 70 epochs, batch 64, "
            "100 epochs, only AGM's conditional clip 1.0; α 2.5, window epochs 1-20",
            (),
            _sgd(lr=1e-4, weight_decay=1e-4, batch_size=64, epochs=100, step_epochs=70),
            {
                "agm": {
                    "agm_alpha": 2.5,
                    "agm_max_exponent": 10.0,
                    "agm_modulation_starts": 1,
                    "agm_modulation_ends": 20,
                    "agm_clip": 1.0,
                }
            },
            method="agm",
        ),
        Preset(
            "mmpareto-official",
            "MMPareto's authors' recipe: SGD 2e-3 momentum 0.9 wd 1e-4, constant lr (its StepLR is never "
            "stepped), batch 64, 50 epochs, no clip; γ 1.5",
            (),
            _sgd(lr=2e-3, weight_decay=1e-4, batch_size=64, epochs=50),
            {"mmpareto": {"pareto_gamma": 1.5}},
            method="mmpareto",
        ),
        Preset(
            "uniform-official",
            "the uniform baseline of MMPareto's repository: SGD 2e-3 momentum 0.9 wd 1e-4, constant lr, "
            "batch 64, 50 epochs, no clip; unimodal weight 1",
            (),
            _sgd(lr=2e-3, weight_decay=1e-4, batch_size=64, epochs=50),
            {"uniform": {"uniform_weight": 1.0}},
            method="uniform",
        ),
        Preset(
            "pmr-official",
            "PMR's authors' SGD run: SGD 1e-3 momentum 0.9 wd 1e-4, StepLR ×0.1 every 70 epochs, batch 64, "
            "130 epochs, no clip; α 2, prototype momentum 0, window 0-based epochs 0-70",
            (),
            _sgd(lr=1e-3, weight_decay=1e-4, batch_size=64, epochs=130, step_epochs=70),
            {"pmr": {"pmr_alpha": 2.0, "pmr_momentum": 0.0, "pmr_starts": 0, "pmr_ends": 70}},
            method="pmr",
        ),
        Preset(
            "mla-official",
            "MLA's authors' recipe: SGD 1e-3 momentum 0.9 wd 1e-4, StepLR ×0.1 every 70 epochs, batch 64, "
            "100 epochs, no clip",
            (),
            _sgd(lr=1e-3, weight_decay=1e-4, batch_size=64, epochs=100, step_epochs=70),
            method="mla",
        ),
        Preset(
            "gblending-official",
            "G-Blending's training script (VMZ train_net.py defaults): SGD 3e-3 momentum 0.9 wd 5e-3, "
            "lr ×0.1 every 10 epochs, batch 32, 50 epochs, no clip",
            (),
            _sgd(lr=3e-3, weight_decay=5e-3, batch_size=32, epochs=50, step_epochs=10),
            method="gblending",
        ),
    )
}

# method → its preset; a method absent here has none (the docstring says why for each).
_OFFICIAL = {p.method: p.name for p in PRESETS.values() if p.method is not None}


def official_preset(method: str) -> str | None:
    """The name of `method`'s own official preset ("ogm_ge" → "ogm_ge-official"), or None when its
    authors published no recipe we could check (joint, unimodal, mslr; see the module docstring)."""
    return _OFFICIAL.get(method)
