"""Progress and ETA of a run, from the logged epochs and steps against the config's epochs."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .decode import Series

EPOCH_KEY = "epoch"  # logged with each validation: value = epochs done, at the global step


@dataclass
class Progress:
    epoch: int = 0
    epoch1_step: int | None = None  # the global step at which epoch 1 ended = steps per epoch
    step: int = -1
    epoch_last: int | None = None  # last step of the epoch key already counted

    def track(self, series: Mapping[str, Series]) -> None:
        """Fold new points in: the highest step of any key, and epochs from the `epoch` key."""
        for s in series.values():
            if len(s):
                self.step = max(self.step, s.steps[-1])
        ep = series.get(EPOCH_KEY)
        if ep is None or not len(ep):
            return
        ep = ep.after(self.epoch_last) if self.epoch_last is not None else ep
        for step, v in zip(ep.steps, ep.values, strict=False):
            if math.isfinite(v):
                self.epoch = max(self.epoch, int(v))
                if int(v) == 1 and self.epoch1_step is None:
                    self.epoch1_step = step
        if len(ep):
            self.epoch_last = ep.steps[-1]

    def fraction(self, config: Mapping[str, Any]) -> tuple[float | None, str]:
        """(fraction done or None, text).

        Steps per epoch come from the step at which epoch 1 ended, or before that from
        train_size / batch_size when the dataset has a train_size setting.
        """
        epochs = config.get("epochs")
        step = max(self.step, 0)
        per_epoch = self.epoch1_step
        if per_epoch is None and config.get("train_size") and config.get("batch_size"):
            per_epoch = math.ceil(config["train_size"] / config["batch_size"])
        if not isinstance(epochs, int) or epochs <= 0:
            return None, f"step {step}"
        if per_epoch:
            total = per_epoch * epochs
            return min(step / total, 1.0), f"epoch {self.epoch}/{epochs} · step {step}/{total}"
        return self.epoch / epochs, f"epoch {self.epoch}/{epochs} · step {step}"


def run_timing(run: Mapping[str, Any], fraction: float | None, now: float | None = None) -> str:
    """'elapsed 0:01:05 · ETA 0:00:30' (ETA only while running).

    A `lost` run stopped at its last heartbeat: its elapsed time ends there, and the text says
    since when nothing has been heard from its worker.
    """
    start = run.get("started_at")
    if not start:
        return "not started"
    now = now if now is not None else time.time()
    lost = run.get("status") == "lost"
    end = run.get("ended_at") or (run.get("heartbeat_at") if lost else None) or now
    elapsed = max(end - start, 0.0)
    text = f"elapsed {hms(elapsed)}"
    if run.get("status") == "running" and fraction and 0 < fraction < 1:
        text += f" · ETA {hms(elapsed * (1 - fraction) / fraction)}"
    if lost:
        worker = run.get("worker") or "its worker"
        beat = run.get("heartbeat_at")
        if beat:
            at = time.strftime("%H:%M:%S", time.localtime(beat))
            text += f" · lost: no heartbeat from {worker} since {at} ({hms(max(now - beat, 0.0))} ago)"
        else:
            text += f" · lost: {worker} never sent a heartbeat"
    return text


def hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
