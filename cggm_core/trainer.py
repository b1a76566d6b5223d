"""Trainer: setup → fit → validate, seeded and deterministic on CPU, checkpoint per epoch, resume.

Outputs in `out_dir` (when given): config.json, metrics.jsonl, summary.json and checkpoint.pt
(model, aux heads, optimizers, lr schedule, method state, RNG state, the job config), rewritten atomically
after every epoch. Resuming from checkpoint.pt continues at the next epoch and appends to
metrics.jsonl; a resumed run reproduces the uninterrupted one on CPU.

Several processes (`dist`, cggm_core/distributed.py; `cggm train --nproc-per-node`, torchrun, a
worker's GPU slot): every rank loads the data, builds the model from the same seed and takes rank
0's weights; `batch_size` is the global batch, each rank steps on its slice of each global batch
(`Stepper.step_batch`), so the batches are those of one process. Rank 0 alone has sinks, writes the
outputs and the checkpoint (with every rank's RNG state) and polls `should_stop`, whose answer it
broadcasts every step; every rank validates (the same weights, the same figures: the schedule
needs them); only rank 0 tests and probes at the end. A resumed run loads the checkpoint on every
rank.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from . import probe
from .amp import compile_encoders
from .batch import Batch
from .config import JobConfig, resolve
from .data import DATASETS, MultimodalData
from .data.base import DataSplit, LoaderSplit, Split, holdout_split
from .distributed import LOCAL, Dist, slice_shares
from .methods import METHODS
from .methods.base import EpochContext
from .models import MODELS
from .schedules import Schedule, make_schedule
from .step import Stepper, make_optimizer
from .system import SystemSampler
from .tracking import JsonlSink, MultiSink, Sink, json_safe, log_dict


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return torch.device(device)


@dataclass
class TrainResult:
    status: str  # "finished" | "stopped"
    summary: dict[str, Any]
    out_dir: Path | None = None
    logged_points: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


class CountingSink:
    """Counts points on their way to the real sink (the worker tests compare stored vs logged)."""

    def __init__(self, inner: Sink | None) -> None:
        self.inner = inner
        self.count = 0

    def log(self, points: Any) -> None:
        pts = list(points)
        self.count += len(pts)
        if self.inner is not None:
            self.inner.log(pts)

    def flush(self) -> None:
        if self.inner is not None:
            self.inner.flush()

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


class Trainer:
    def __init__(
        self,
        job: JobConfig,
        out_dir: str | Path | None = None,
        device: str = "auto",
        sink: Sink | None = None,
        progress: bool = True,
        should_stop: Callable[[], bool] | None = None,
        dist: Dist | None = None,
    ) -> None:
        self.dist = dist or LOCAL
        self.job = job
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = pick_device(device)
        self.extra_sink = sink if self.dist.is_main else None  # rank 0 alone logs
        self.progress = progress and self.dist.is_main
        self.should_stop = should_stop or (lambda: False)
        self.start_epoch = 1
        self.best: dict[str, Any] = {}
        self.history: list[dict[str, float]] = []

    # -- setup ---------------------------------------------------------------------------------
    def setup(self, resume: str | Path | None = None, append: bool = False) -> None:
        t = self.job.trainer
        torch.manual_seed(t.seed)
        self.data: MultimodalData = DATASETS[self.job.dataset].load(self.job.data, t.data_seed)
        self.data.task = self.data.task.with_settings(t)
        method_cls = METHODS[self.job.method]
        method_cls.check(self.job.method_settings, self.data.modalities)
        for split in (self.data.train, self.data.val, self.data.test):
            if isinstance(split, LoaderSplit):  # file-backed: the trainer's DataLoader settings
                split.num_workers, split.pin_memory, split.seed = t.num_workers, t.pin_memory, t.seed
        # A method's held-out part of train (G-Blending) is never trained on; seeded by the data seed.
        self.heldout_split: DataSplit | None = None
        holdout = method_cls.holdout_fraction(self.job.method_settings)
        if holdout > 0:
            if not isinstance(self.data.train, (Split, LoaderSplit)):
                raise ValueError(
                    f"method {self.job.method!r} holds out part of the training split, but dataset "
                    f"{self.job.dataset!r} gives a {type(self.data.train).__name__}, which cannot be subset"
                )
            self.data.train, heldout = holdout_split(self.data.train, holdout, t.data_seed)
            self.heldout_split = heldout.to(self.device)
        self.train_split = self.data.train.to(self.device)
        self.val_split = self.data.val.to(self.device)
        self.test_split = self.data.test.to(self.device)
        task = self.data.task
        self.model = MODELS[self.job.model].build(self.job.model_settings, self.data)
        self.model.to(self.device)
        self.compiled = compile_encoders(self.model, self.device) if t.compile else None  # cggm_core.amp
        sinks: list[Sink] = []
        dist = self.dist
        if self.out_dir is not None and dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(self.job.flat(), indent=2) + "\n")
            sinks.append(JsonlSink(self.out_dir / "metrics.jsonl", append=append or resume is not None))
        if self.extra_sink is not None:
            sinks.append(self.extra_sink)
        self.sink = CountingSink(MultiSink(*sinks))
        self.stepper = Stepper.from_job(self.model, task, self.job, sink=self.sink, dist=dist)
        self.system = SystemSampler(self.device, t.system_every_s)  # GPU memory/utilisation, process memory
        self.steps_per_epoch = math.ceil(len(self.train_split) / t.batch_size)
        self.schedule: Schedule = make_schedule(t, self.stepper.optimizer, self.steps_per_epoch)
        torch.manual_seed(t.seed + 1)  # aux heads drawn from their own stream, the same in every run
        aux = self.model.make_aux()  # built eagerly: every model knows its aux heads' shapes
        if resume is not None:
            ckpt = torch.load(resume, map_location=self.device, weights_only=False)
            self.stepper.load_state_dict(ckpt["stepper"], aux)
            self.schedule.load_state_dict(ckpt.get("schedule", {"name": "none"}))
            self.start_epoch = int(ckpt["epoch"]) + 1
            self.best = ckpt.get("best", {})
            ranks = ckpt.get("rng_ranks")  # every rank's own stream, when the run had several
            same_world = ranks is not None and len(ranks) == dist.world
            torch.set_rng_state(ranks[dist.rank] if same_world else ckpt["rng_cpu"])
            if torch.cuda.is_available() and ckpt.get("rng_cuda") is not None:
                torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
        else:
            self.stepper.attach_aux(aux)
            if dist.rank > 0:
                # Each rank draws its own dropout masks; rank 0 keeps the one-process stream.
                torch.manual_seed(t.seed + 1 + 7919 * dist.rank)
        # Rank 0's weights on every rank, as DDP's constructor (the same seed built the same ones).
        dist.broadcast_module(self.model)
        dist.broadcast_module(aux)

    # -- fit -----------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        t = self.job.trainer
        epochs = t.epochs
        batch_size = t.batch_size
        per_epoch = self.steps_per_epoch
        started = time.time()
        bar = tqdm(
            total=epochs * per_epoch,
            initial=(self.start_epoch - 1) * per_epoch,
            desc=f"{self.job.method} on {self.job.dataset}",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        status = "finished"
        metric = self.data.task.metric_name
        primary = self.data.task.primary
        method = self.stepper.method
        assert method is not None
        for epoch in range(self.start_epoch, epochs + 1):
            method.set_epoch(epoch)  # epoch-windowed methods (OGM-GE, AGM)
            # Shuffle order depends only on (seed, epoch): a resumed run sees the same batches.
            gen = torch.Generator().manual_seed(t.seed * 1_000_003 + epoch)
            if isinstance(self.train_split, LoaderSplit):
                self.train_split.set_epoch(epoch)  # e.g. BraTS draws new training slices per epoch
            self.method_epoch_start(epoch)
            for batch, share in self.local_batches(batch_size, gen):
                self.schedule.before_step(self.stepper.global_step)
                values = self.stepper.step(batch.xs, batch.y, batch.masks, share=share)
                if self.dist.is_main and self.system.due():  # rank 0 logs (its own device)
                    log_dict(self.sink, self.system.sample(), self.stepper.global_step)
                bar.update(1)
                if values:
                    bar.set_postfix(
                        loss=f"{values['train/loss']:.3f}", acc=f"{values[f'train/{metric}']:.3f}", refresh=False
                    )
                # Rank 0 asks; every rank gets its answer (one tiny broadcast per step).
                if self.dist.broadcast_flag(self.dist.is_main and self.should_stop()):
                    status = "stopped"
                    break
            if status == "stopped":
                break
            # Rank 0's buffers (BatchNorm statistics, computed per rank on its slices), as DDP does.
            aux_heads = self.stepper.aux
            assert aux_heads is not None
            self.dist.broadcast_tensors([*self.model.buffers(), *aux_heads.buffers()])
            val = self.validate(epoch)
            self.schedule.after_epoch(val["val/loss"])  # before the checkpoint: it holds the next epoch's lr
            bar.set_postfix(val=f"{val[f'val/{primary}']:.3f}", refresh=False)
            self.save_checkpoint(epoch)
            self.sink.flush()
        bar.close()
        summary = self.finish(status, time.time() - started)
        return TrainResult(status, summary, self.out_dir, self.sink.count, self.history)

    def local_batches(self, batch_size: int, gen: torch.Generator) -> Iterator[tuple[Batch, float]]:
        """This rank's part of each global batch and its share n_r / N (one process: the batch, 1.0).
        A file-backed split reads only the rank's samples; an in-memory one is sliced."""
        split, dist = self.train_split, self.dist
        if dist.enabled and isinstance(split, LoaderSplit):
            shares = slice_shares(len(split), batch_size, dist.world, dist.rank)
            yield from zip(split.batches(batch_size, generator=gen, shard=(dist.rank, dist.world)), shares, strict=True)
            return
        for batch in split.batches(batch_size, generator=gen):
            yield dist.shard(batch)

    def method_epoch_start(self, epoch: int) -> None:
        """The method's epoch hook (PMR's prototypes, G-Blending's weights); logs what it returns."""
        t = self.job.trainer
        method = self.stepper.method
        assert method is not None
        ctx = EpochContext(
            epoch=epoch,
            epochs=t.epochs,
            train=self.train_split,
            heldout=self.heldout_split,
            batch_size=t.batch_size,
            seed=t.seed,
            clip=t.clip,
            optimizer=self.stepper.optimizer,
            make_optimizer=lambda params: make_optimizer(t.optimizer, params, t.lr, t.weight_decay, t.momentum),
        )
        values = method.on_epoch_start(ctx)
        if values:
            log_dict(self.sink, values, self.stepper.global_step)

    # -- validate ------------------------------------------------------------------------------
    def active_modalities(self) -> list[str]:
        """What the fused model is evaluated with: the modalities the method trains it on.

        A `unimodal` run's head never saw the other modalities (they were zero-masked in every
        step), so val/test/Shapley mask them too. Each aux head and each linear probe still reads
        its own encoder, so `val/<metric>/<m>` and `probe/<metric>/<m>` cover every modality.
        """
        method = self.stepper.method
        assert method is not None
        return list(method.active_modalities)

    def validate(self, epoch: int) -> dict[str, float]:
        t = self.job.trainer
        task = self.data.task
        aux = self.stepper.aux
        assert aux is not None
        active = self.active_modalities()
        fuse = self.stepper.method.predict if self.stepper.method is not None else None
        scores = probe.evaluate(self.model, aux, task, self.val_split, keep=active, fuse=fuse)
        values = {f"val/{k}": v for k, v in scores.items()}
        if t.shapley:
            contrib = probe.contributions(
                self.model, aux, task, self.val_split, t.shapley_max_modalities, active=active, fuse=fuse
            )
            values.update({f"val/contrib/{m}": v for m, v in contrib.items()})
        values["epoch"] = float(epoch)
        log_dict(self.sink, values, self.stepper.global_step)
        self.history.append(values)
        key = f"val/{task.primary}"
        if not self.best or task.better(values[key], self.best[key]):
            self.best = {**values, "step": self.stepper.global_step}
        return values

    def save_checkpoint(self, epoch: int) -> None:
        if self.out_dir is None:
            return
        rng_ranks = self.dist.gather_objects(torch.get_rng_state())  # every rank takes part
        if not self.dist.is_main:
            return
        ckpt = {
            "config": self.job.flat(),
            "epoch": epoch,
            "stepper": self.stepper.state_dict(),
            "schedule": self.schedule.state_dict(),
            "best": self.best,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        if self.dist.world > 1:
            ckpt["rng_ranks"] = rng_ranks
        tmp = self.out_dir / "checkpoint.pt.tmp"
        torch.save(ckpt, tmp)
        os.replace(tmp, self.out_dir / "checkpoint.pt")

    def finish(self, status: str, elapsed_s: float) -> dict[str, Any]:
        if not self.dist.is_main:  # rank 0 tests, probes and reports; the others are done
            self.sink.close()
            return {"status": status, "rank": self.dist.rank, "steps": self.stepper.global_step}
        t = self.job.trainer
        task = self.data.task
        aux = self.stepper.aux
        assert aux is not None
        fuse = self.stepper.method.predict if self.stepper.method is not None else None
        scores = probe.evaluate(self.model, aux, task, self.test_split, keep=self.active_modalities(), fuse=fuse)
        test = {f"test/{k}": v for k, v in scores.items()}
        values = dict(test)
        probe_acc: dict[str, float] = {}
        if t.linear_probe:
            probe_acc = probe.linear_probe(
                self.model, task, self.train_split, self.test_split, t.probe_steps, t.seed, t.probe_max_samples
            )
            values.update({f"probe/{task.metric_name}/{m}": v for m, v in probe_acc.items()})
        log_dict(self.sink, values, self.stepper.global_step)
        self.sink.flush()
        final = self.history[-1] if self.history else {}
        summary = {
            "status": status,
            "dataset": self.job.dataset,
            "method": self.job.method,
            "modalities": self.data.modalities,
            "metric": task.primary,
            "higher_is_better": task.higher_is_better,
            "batch_metric": task.metric_name,
            "task": task.name,
            "model": self.job.model,
            "precision": t.precision,
            **({"compile": self.compiled} if self.compiled is not None else {}),
            "steps": self.stepper.global_step,
            "epochs_done": int(final.get("epoch", self.start_epoch - 1)),
            "elapsed_s": round(elapsed_s, 3),
            "final": final,
            "best": self.best,
            "test": test,
            "probe": {f"probe/{task.metric_name}/{m}": v for m, v in probe_acc.items()},
            "last_step": self.stepper.last,
        }
        if self.out_dir is not None:
            (self.out_dir / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
        self.sink.close()
        return summary


def train(
    config: dict[str, Any] | JobConfig,
    out_dir: str | Path | None = None,
    device: str = "auto",
    sink: Sink | None = None,
    resume: str | Path | None = None,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
    dist: Dist | None = None,
) -> TrainResult:
    job = config if isinstance(config, JobConfig) else resolve(config)
    trainer = Trainer(job, out_dir, device, sink, progress, should_stop, dist)
    trainer.setup(resume=resume)
    return trainer.fit()
