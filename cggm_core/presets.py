"""The official training recipes, one preset per data set of the paper (a job's `preset`).

    {"dataset": "mosi", "method": "cggm", "preset": "mosi", "path": "mosi/mosi_data.pkl", "seed": 1}

A preset holds values for settings by name: the trainer's (optimizer, lr, batch size, epochs,
clip, schedule, ...), each method's (only `cggm` has official values: ρ, λ) and each model's
(the transformer's sizes and dropouts). `config.resolve` applies it between the defaults and the
job's own settings: **an explicit setting wins over the preset**; a method's or model's values
apply only when the job uses that method or model (`joint` takes the trainer recipe, not ρ). A
preset is for the data sets it names; any other is refused. The resolved config stores every final
value (and the preset's name, for the record), so a run never depends on this table again.

Where each value comes from, in the official repository (github.com/zrguo/CGGM):

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

This module imports nothing but the standard library: the backend serves the presets in the
catalog. `config._check_presets` checks every value against its setting at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    help: str
    datasets: tuple[str, ...]  # the data sets it is for
    trainer: Mapping[str, Any]
    methods: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # method name → its settings
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # model name → its settings

    def values_for(self, method: str, model: str) -> dict[str, Any]:
        """Every value this preset sets for a job of this method and model, by setting name."""
        return {**self.trainer, **self.methods.get(method, {}), **self.models.get(model, {})}

    def describe(self) -> dict[str, Any]:
        """The catalog entry (JSON-ready)."""
        return {
            "name": self.name,
            "help": self.help,
            "datasets": list(self.datasets),
            "trainer": dict(self.trainer),
            "methods": {k: dict(v) for k, v in self.methods.items()},
            "models": {k: dict(v) for k, v in self.models.items()},
        }


# The official recipe shared by the three transformer workloads (src/msatrain.py, src/foodtrain.py).
_PLATEAU = {"scheduler": "plateau", "plateau_patience": 10, "plateau_factor": 0.1}
_ADAM_1E3 = {"lr": 1e-3, "aux_lr_ratio": 0.5, "aux_optimizer": "same", "clip": 0.8, **_PLATEAU}


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
    )
}
