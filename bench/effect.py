"""Effect of each balancing method: the fused test metric and each modality's linear-probe metric.

3 seeds (seed = data_seed = 0, 1, 2: new initialisation, shuffling and split each time). CGGM runs
log every step so that the blow-up hazard of the raw balance formula (|B| > 10, B < 0) and the
cosine term can be counted.

    python bench/effect.py [--seeds 0,1,2] [--setups NAME,...] [--out bench/results/effect.json]

Setups: the synthetic default and UCI mfeat view sets (MLP, accuracy); `synthetic_seq` (the
transformer; accuracy, or MAE and sign accuracy for the regression setup) and `synthetic_seg` (the
segnet; Dice avg, per volume). The sequence and segmentation setups take their data and model
sizes from the imbalance tests (tests/test_synthetic_seq.py, tests/test_synthetic_seg.py), where
the jointly trained weak encoder is measured to probe worse than the same encoder trained alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cggm_core.config import resolve
from cggm_core.data import DATASETS
from cggm_core.methods import METHODS
from cggm_core.tracking import MemorySink
from cggm_core.trainer import train

SETUPS: dict[str, dict[str, object]] = {
    "synthetic (default)": {"dataset": "synthetic", "epochs": 15},
    "mfeat kar+mor": {"dataset": "mfeat", "views": "kar,mor", "epochs": 30},
    "mfeat fou+fac": {"dataset": "mfeat", "views": "fou,fac", "epochs": 30},
}

NO_DROPOUT = {"attn_dropout": 0.0, "relu_dropout": 0.0, "embed_dropout": 0.0, "res_dropout": 0.0, "out_dropout": 0.0}
# tests/test_synthetic_seq.py IMBALANCE: m0 says what (a shortcut), m1 only when (timing).
SEQ = {
    "dataset": "synthetic_seq",
    "epochs": 12,
    "lr": 0.003,
    "shapley": False,
    "train_size": 1000,
    "val_size": 100,
    "test_size": 500,
    "probe_steps": 200,
    "d_model": 16,
    "heads": 2,
    "enc_layers": 2,
    "fusion_layers": 1,
    "aux_layers": 1,
    **NO_DROPOUT,
}
# tests/test_synthetic_seg.py IMBALANCE: flair shows the whole tumour plainly, t1 is the weakest.
SEG = {
    "dataset": "synthetic_seg",
    "seg_size": 24,
    "segnet_width": 8,
    "segnet_dec_width": 16,
    "batch_size": 32,
    "lr": 0.003,
    "epochs": 10,
    "shapley": False,
    "probe_steps": 100,
    "probe_max_samples": 256,
}
SETUPS.update(
    {
        "synthetic_seq classification": {**SEQ, "task": "classification"},
        "synthetic_seq regression": {**SEQ, "task": "regression"},
        "synthetic_seg": SEG,
    }
)


def modalities_of(base: Mapping[str, object]) -> list[str]:
    job = resolve({**base, "method": "joint"})
    return DATASETS[job.dataset].modality_names(job.data)


def method_list(modalities: list[str], alone: list[str]) -> list[tuple[str, dict[str, object]]]:
    out: list[tuple[str, dict[str, object]]] = [("joint", {"method": "joint"})]
    for v in ("paper", "reference", "stable"):
        out.append((f"cggm {v}", {"method": "cggm", "variant": v}))
    for name in METHODS:  # every registered baseline
        if name not in ("joint", "cggm", "unimodal"):
            out.append((name, {"method": name}))
    for m in alone:
        out.append((f"unimodal {m}", {"method": "unimodal", "modality": m}))
    return out


def coef_stats(sink: MemorySink, modalities: list[str]) -> dict[str, float]:
    by_step: dict[int, list[float]] = {}
    cos: dict[str, list[float]] = {m: [] for m in modalities}
    for p in sink.points:
        if p.key.startswith("coef/"):
            by_step.setdefault(p.step, []).append(p.value)
        elif p.key.startswith("cos/"):
            cos[p.key[4:]].append(p.value)
    steps = list(by_step.values())
    n = max(len(steps), 1)
    return {
        "frac_blowup": sum(any(abs(b) > 10 for b in bs) for bs in steps) / n,
        "frac_negative": sum(any(b < 0 for b in bs) for bs in steps) / n,
        **{f"mean_cos/{m}": statistics.fmean(v) if v else float("nan") for m, v in cos.items()},
    }


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def run_one(base: Mapping[str, object], cfg: Mapping[str, object], seed: int, modalities: list[str]) -> dict[str, Any]:
    is_cggm = cfg["method"] == "cggm"
    sink = MemorySink() if is_cggm else None
    job = {**base, **cfg, "seed": seed, "data_seed": seed, "log_every": 1 if is_cggm else 10}
    t0 = time.time()
    s = train(job, device="cpu", sink=sink).summary
    row: dict[str, Any] = {
        "seed": seed,
        "metric": s["metric"],
        "test": s["test"][f"test/{s['metric']}"],
        "test_all": s["test"],
        "probe_metric": s["batch_metric"],
        "probe": {m: s["probe"][f"probe/{s['batch_metric']}/{m}"] for m in modalities},
        "elapsed_s": time.time() - t0,
    }
    if sink is not None:
        row["coef"] = coef_stats(sink, modalities)
    return row


def print_tables(results: Mapping[str, Mapping[str, list[dict[str, Any]]]]) -> None:
    for setup, by_method in results.items():
        first = next(iter(by_method.values()))[0]
        mods = list(first["probe"])
        print(f"#### {setup}\n")
        print(
            f"| method | fused test {first['metric']} | "
            + " | ".join(f"probe {first['probe_metric']} {m}" for m in mods)
            + " |"
        )
        print("|---|---|" + "---|" * len(mods))
        for label, runs in by_method.items():
            print(
                f"| {label} | {fmt([r['test'] for r in runs])} | "
                + " | ".join(fmt([r["probe"][m] for r in runs]) for m in mods)
                + " |"
            )
        print(
            "\n| CGGM variant | steps with some \\|B\\| > 10 | steps with some B < 0 | "
            + " | ".join(f"mean cos {m}" for m in mods)
            + " |"
        )
        print("|---|---|---|" + "---|" * len(mods))
        for label, runs in by_method.items():
            if label.startswith("cggm"):
                c = [r["coef"] for r in runs]
                print(
                    f"| {label} | {fmt([x['frac_blowup'] for x in c])} | {fmt([x['frac_negative'] for x in c])} | "
                    + " | ".join(fmt([x[f"mean_cos/{m}"] for x in c]) for m in mods)
                    + " |"
                )
        print()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated; allowed: {', '.join(SETUPS)}")
    ap.add_argument("--unimodal", help="modalities to run `unimodal` on, comma-separated (default: every one)")
    ap.add_argument("--out", default="bench/results/effect.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    t_start = time.time()
    for setup in args.setups.split(","):
        if setup not in SETUPS:
            raise SystemExit(f"unknown setup {setup!r}; allowed: {', '.join(SETUPS)}")
        base = SETUPS[setup]
        modalities = modalities_of(base)
        alone = modalities if args.unimodal is None else [m for m in args.unimodal.split(",") if m in modalities]
        results[setup] = {}
        t_setup = time.time()
        probe_job = resolve({**base, "method": "joint"})
        task = DATASETS[probe_job.dataset].task_name(probe_job.data)
        for label, cfg in method_list(modalities, alone):
            served = METHODS[str(cfg["method"])].tasks
            if served is not None and task not in served:
                print(f"{setup:30s} {label:16s} not run: the method does not serve {task}", flush=True)
                continue
            runs = [run_one(base, cfg, seed, modalities) for seed in seeds]
            results[setup][label] = runs
            print(
                f"{setup:30s} {label:16s} test {fmt([r['test'] for r in runs])}  "
                + "  ".join(f"probe {m} {fmt([r['probe'][m] for r in runs])}" for m in modalities)
                + f"  ({sum(r['elapsed_s'] for r in runs):.0f} s)",
                flush=True,
            )
        print(f"{setup}: {time.time() - t_setup:.0f} s", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))  # after each setup: a partial run keeps its results
    print(f"\n{len(seeds)} seeds, {time.time() - t_start:.0f} s total\n")
    print_tables(results)


if __name__ == "__main__":
    main()
