"""The models the step-time and memory benchmarks measure: one batch, a seeded net, its task.

    wl = workload("transformer", "official", batch=64)
    net = wl.build()                       # the same initial weights on every call
    aux = wl.make_aux(net)                 # the model's own aux heads, from their own seed

`mlp` is the original case of bench/step_time.py (two 512-wide MLP encoders on random vectors).
`transformer` and `segnet` are built exactly as a job builds them (the dataset's `load`, the
model's registry `build`), so their batches carry what training sees: padding masks for
variable-length sequences, label maps for segmentation. Each has two sizes:

* `official` / `default`: the settings a user gets. For the transformer, the official CMU-MOSI
  run (DESIGN §4.1: d_model 40, 5 heads, 5 encoder layers, 3 fusion layers, 2 aux layers, its
  dropouts) on MOSI-shaped inputs (3 modalities of 50 steps, 300, 5 and 20 features); for the
  segnet, its registry defaults on the dataset's default 32×32 slices.
* `encoder_heavy`: the encoders carry most of the FLOPs, as in the paper's models (ResNet-101 +
  ASPP per modality under one decoder on BraTS; 5-layer encoders per modality with a smaller
  fusion on MOSI). `bench/step_time.py --flops` prints each part's share to check it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cggm_core.batch import Batch
from cggm_core.config import resolve
from cggm_core.data import DATASETS
from cggm_core.models import MODELS, AuxHeads, MultimodalNet, build_mlp_net
from cggm_core.tasks import Task, classification

MOSI_SHAPES = {"modalities": 3, "lengths": "50,50,50", "widths": "300,5,20", "strengths": "1,3,3"}

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "mlp": {"default": {"width": 512}},
    "transformer": {
        "official": {
            "dataset": "synthetic_seq",
            **MOSI_SHAPES,
            "d_model": 40,
            "heads": 5,
            "enc_layers": 5,
            "fusion_layers": 3,
            "aux_layers": 2,
        },
        "encoder_heavy": {
            "dataset": "synthetic_seq",
            **MOSI_SHAPES,
            "d_model": 40,
            "heads": 5,
            "enc_layers": 8,
            "fusion_layers": 1,
            "aux_layers": 1,
        },
    },
    "segnet": {
        "default": {
            "dataset": "synthetic_seg",
            "seg_size": 32,
            "segnet_width": 16,
            "segnet_stages": 2,
            "segnet_blocks": 1,
            "segnet_dec_width": 32,
        },
        "encoder_heavy": {
            "dataset": "synthetic_seg",
            "seg_size": 32,
            "segnet_width": 16,
            "segnet_stages": 3,
            "segnet_blocks": 2,
            "segnet_dec_width": 32,
        },
    },
}


@dataclass
class Workload:
    model: str
    size: str
    settings: dict[str, Any]
    task: Task
    batch: Batch
    build_net: Callable[[], MultimodalNet]

    def build(self, device: torch.device | str = "cpu") -> MultimodalNet:
        torch.manual_seed(0)
        return self.build_net().to(device)

    def make_aux(self, net: MultimodalNet) -> AuxHeads:
        torch.manual_seed(1)  # as the trainer: aux heads from their own stream
        return net.make_aux()

    def describe(self) -> str:
        shapes = {m: tuple(x.shape) for m, x in self.batch.xs.items()}
        extra = {k: v for k, v in self.settings.items() if k != "dataset"}
        return f"{self.model} [{self.size}] {extra}; batch shapes {shapes}"


def workload(
    model: str,
    size: str | None,
    batch: int,
    device: torch.device | str = "cpu",
    overrides: dict[str, Any] | None = None,
) -> Workload:
    """`overrides`: settings that replace the size's (e.g. attn_dropout=0.0)."""
    sizes = SIZES[model]
    size = size or next(iter(sizes))
    if size not in sizes:
        raise SystemExit(f"unknown size {size!r} for {model}; allowed: {', '.join(sizes)}")
    settings = {**sizes[size], **(overrides or {})}
    if model == "mlp":
        width = int(settings["width"])
        names, classes = ["a", "b"], 10
        torch.manual_seed(0)
        xs = {m: torch.randn(batch, width) for m in names}
        y = torch.randint(0, classes, (batch,))
        return Workload(
            model,
            size,
            settings,
            classification(classes),
            Batch(xs, y).to(device),
            lambda: build_mlp_net({m: width for m in names}, width, 128, 64, classes),
        )
    data_size = (
        {"train_size": batch, "val_size": 16, "test_size": 16}
        if settings["dataset"] == "synthetic_seq"
        # Enough whole volumes (8 slices each) for one batch of training slices.
        else {"seg_train_volumes": -(-batch // 8), "seg_val_volumes": 1, "seg_test_volumes": 1}
    )
    job = resolve({"method": "joint", "model": model, **settings, **data_size})
    data = DATASETS[job.dataset].load(job.data, 0)
    first = next(iter(data.train.batches(batch)))
    spec = MODELS[job.model]
    return Workload(
        model,
        size,
        settings,
        data.task,
        first.to(device),
        lambda: spec.build(job.model_settings, data),
    )


def params_of(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class BareStepper:
    """The training step with no aux heads at all (what a plain multimodal loop does): encode,
    fuse, task loss, backward, clip, step, with the Stepper's optimizer and clip. The reference
    for what the aux heads cost in time and memory; `joint` runs them (detached) on every step."""

    def __init__(self, net: MultimodalNet, task: Task) -> None:
        from cggm_core.config import TrainerConfig
        from cggm_core.step import make_optimizer

        t = TrainerConfig()
        self.net, self.task, self.clip = net, task, t.clip
        self.optimizer = make_optimizer(t.optimizer, net.parameters(), t.lr, t.weight_decay)

    def step_batch(self, batch: Batch) -> dict[str, float]:
        self.net.train()
        feats = self.net.encode(batch.xs, batch.masks)
        loss = self.task.loss(self.net.fuse(feats, masks=batch.masks), batch.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.optimizer.step()
        return {}
