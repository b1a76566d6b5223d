"""CGGM variants against `joint`, paired by seed: the weak modality's probe and the fused metric.

Each seed sets seed = data_seed (one initialisation, shuffling and data draw, shared by every
method of that seed), so method − joint is a paired difference. Mean and 95 % CI over seeds
(Student t, n − 1 degrees of freedom). CGGM runs log every step, and the table also gives how
often B is neutral ((M − 1)/M) and the strong modality's median B.

    python bench/cggm_paired.py [--seeds 0,1,2,3,4] [--optimizers adam,sgd] [--out bench/results/cggm_paired.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cggm_core.tracking import MemorySink
from cggm_core.trainer import train

# setup → (job settings, strong modality, weak modality); the data sets as they are, not reshaped.
SETUPS: dict[str, tuple[dict[str, Any], str, str]] = {
    "synthetic": ({"dataset": "synthetic", "epochs": 15}, "m0", "m1"),
    "mfeat kar+mor": ({"dataset": "mfeat", "views": "kar,mor", "epochs": 30}, "kar", "mor"),
}
METHODS: dict[str, dict[str, Any]] = {
    "joint": {"method": "joint"},
    "cggm paper": {"method": "cggm", "variant": "paper"},
    "cggm reference": {"method": "cggm", "variant": "reference"},
    "cggm stable": {"method": "cggm", "variant": "stable"},
}
# The official BraTS run's SGD (momentum 0.9, peak lr 1e-2); Adam as the trainer's default.
OPTIMIZERS: dict[str, dict[str, Any]] = {"adam": {}, "sgd": {"optimizer": "sgd", "lr": 1e-2}}
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t interval (up to 11 values: the t table above)."""
    n = len(values)
    if n < 2:
        return values[0], float("nan")
    return statistics.fmean(values), T_975[n - 1] * statistics.stdev(values) / math.sqrt(n)


def coef_stats(sink: MemorySink, strong: str, modalities: int) -> dict[str, float]:
    b = [p.value for p in sink.points if p.key == f"coef/{strong}"]
    neutral = (modalities - 1) / modalities
    return {"frac_neutral": sum(abs(v - neutral) < 1e-12 for v in b) / len(b), "median_b_strong": statistics.median(b)}


def run(setup: str, method: str, optimizer: str, seed: int) -> dict[str, float]:
    base, strong, weak = SETUPS[setup]
    cfg = METHODS[method]
    is_cggm = cfg["method"] == "cggm"
    sink = MemorySink() if is_cggm else None
    job = {**base, **cfg, **OPTIMIZERS[optimizer], "seed": seed, "data_seed": seed, "log_every": 1 if is_cggm else 50}
    summary = train(job, device="cpu", sink=sink).summary
    row = {
        "fused": summary["test"]["test/acc"],
        "probe_weak": summary["probe"][f"probe/acc/{weak}"],
        "probe_strong": summary["probe"][f"probe/acc/{strong}"],
    }
    if sink is not None:
        row.update(coef_stats(sink, strong, 2))
    return row


def fmt(mean: float, half: float) -> str:
    return f"{mean:+.4f} ± {half:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    ap.add_argument("--out", default="bench/results/cggm_paired.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, Any] = {}
    t0 = time.time()
    for setup in args.setups.split(","):
        for opt in args.optimizers.split(","):
            key = f"{setup} / {opt}"
            results[key] = {m: [run(setup, m, opt, s) for s in seeds] for m in METHODS}
            print(f"{key}: done at {time.time() - t0:.0f} s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seeds": seeds, "results": results}, indent=1))
    print(f"\n{len(seeds)} seeds, {time.time() - t0:.0f} s\n")
    print(
        "| task / optimizer | method | fused test acc | Δ fused vs joint | Δ weak probe vs joint | Δ strong probe "
        "vs joint | steps B neutral | median B strong |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for key, by_method in results.items():
        joint = by_method["joint"]
        for m, runs in by_method.items():
            cells = [f"{statistics.fmean(r['fused'] for r in runs):.4f}"]
            for metric in ("fused", "probe_weak", "probe_strong"):
                diffs = [r[metric] - j[metric] for r, j in zip(runs, joint, strict=True)]
                cells.append("—" if m == "joint" else fmt(*mean_ci(diffs)))
            if "frac_neutral" in runs[0]:
                cells.append(f"{statistics.fmean(r['frac_neutral'] for r in runs):.2f}")
                cells.append(f"{statistics.fmean(r['median_b_strong'] for r in runs):.3f}")
            else:
                cells += ["—", "—"]
            print(f"| {key} | {m} | " + " | ".join(cells) + " |")
    print("\n| task / optimizer | stable − paper: fused | weak probe | strong probe |\n|---|---|---|---|")
    for key, by_method in results.items():
        pairs = list(zip(by_method["cggm stable"], by_method["cggm paper"], strict=True))
        cells = [fmt(*mean_ci([s[k] - p[k] for s, p in pairs])) for k in ("fused", "probe_weak", "probe_strong")]
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
