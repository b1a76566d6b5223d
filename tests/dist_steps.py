"""The Stepper of every method over a few global batches, as one rank of a process group or alone.

    python -m tests.dist_steps OUT      # under RANK/WORLD_SIZE/MASTER_*: one rank (gloo); else alone

Writes OUT/rank-<r>.pt: per method, every step's logged values and the final weights of the model
and the aux heads. tests/test_distributed.py runs it with 2 real processes and in-process with
one, and compares. The batches are uneven on purpose: 33 → slices 17/16, 31 → 16/15, and a last
batch of one sample (97 = 3·32 + 1), which the second rank runs as a borrowed sample of weight 0.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from cggm_core.data.base import Split
from cggm_core.distributed import LOCAL, Dist, from_env
from cggm_core.step import Stepper
from cggm_core.tasks import classification

from .utils import random_batch, tiny_net

NAMES = ["a", "b"]
N_SAMPLES = 97
EPOCH_BATCHES = (33, 32)  # epoch 1: 33, 33, 31; epoch 2: 32, 32, 32, 1
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("joint", "joint", {}),
    ("cggm-paper", "cggm", {"variant": "paper", "rho": 1.3, "lam": 0.2}),
    ("cggm-stable", "cggm", {"variant": "stable", "slope_window": 4, "slope_z": 0.0}),
    ("cggm-reference", "cggm", {"variant": "reference"}),
    ("ogm_ge", "ogm_ge", {}),
    ("agm", "agm", {}),
    ("mmpareto", "mmpareto", {}),
    ("uniform", "uniform", {}),
    ("pmr", "pmr", {}),
    ("mla", "mla", {}),
    ("mslr", "mslr", {"mslr_lr_scales": "a=3"}),
    ("unimodal", "unimodal", {"modality": "a"}),
]


def data() -> Split:
    torch.manual_seed(0)
    xs, y = random_batch(NAMES, N_SAMPLES, 3)
    xs["a"] = xs["a"] + torch.nn.functional.one_hot(y, 3).float()  # `a` carries the label: B moves
    return Split(xs, y)


def run(dist: Dist, cases: list[tuple[str, str, dict[str, Any]]] = CASES) -> dict[str, Any]:
    split = data()
    out: dict[str, Any] = {}
    for label, method, settings in cases:
        torch.manual_seed(1)
        net, aux = tiny_net(NAMES)
        stepper = Stepper(net, classification(3), method, settings, lr=0.05, log_every=1, aux=aux, dist=dist)
        values: list[dict[str, float]] = []
        for epoch, batch_size in enumerate(EPOCH_BATCHES, start=1):
            assert stepper.method is not None
            stepper.method.set_epoch(epoch)
            for batch in split.batches(batch_size, generator=torch.Generator().manual_seed(epoch)):
                values.append(stepper.step_batch(batch))
        out[label] = {"values": values, "model": net.state_dict(), "aux": aux.state_dict()}
    return out


def main() -> int:
    folder = Path(sys.argv[1])
    torch.set_num_threads(1)
    dist = from_env(torch.device("cpu"))
    try:
        result = run(dist)
    finally:
        dist.close()
    torch.save(result, folder / f"rank-{dist.rank}.pt")
    return 0


if __name__ == "__main__":
    assert LOCAL.world == 1
    sys.exit(main())
