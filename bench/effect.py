"""Effect of each balancing method: fused test accuracy and each modality's linear-probe accuracy.

3 seeds (seed = data_seed = 0, 1, 2: new initialisation, shuffling and split each time) on the
synthetic default and on UCI mfeat view sets. CGGM runs log every step so that the blow-up hazard
of the raw balance formula (|B| > 10, B < 0) and the cosine term can be counted.

    python bench/effect.py [--seeds 0,1,2] [--out bench/results/effect.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cggm_core.methods import METHODS
from cggm_core.tracking import MemorySink
from cggm_core.trainer import train

SETUPS = {
    "synthetic (default)": {"dataset": "synthetic", "epochs": 15},
    "mfeat kar+mor": {"dataset": "mfeat", "views": "kar,mor", "epochs": 30},
    "mfeat fou+fac": {"dataset": "mfeat", "views": "fou,fac", "epochs": 30},
}


def method_list(modalities: list[str]) -> list[tuple[str, dict[str, object]]]:
    out: list[tuple[str, dict[str, object]]] = [("joint", {"method": "joint"})]
    for v in ("paper", "reference", "stable"):
        out.append((f"cggm {v}", {"method": "cggm", "variant": v}))
    for name in ("ogm_ge", "agm", "mmpareto"):
        if name in METHODS:
            out.append((name, {"method": name}))
    for m in modalities:
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--out", default="bench/results/effect.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, dict[str, list[dict[str, object]]]] = {}
    t_start = time.time()
    for setup in args.setups.split(","):
        base = SETUPS[setup]
        modalities = ["m0", "m1"] if base["dataset"] == "synthetic" else str(base["views"]).split(",")
        results[setup] = {}
        for label, cfg in method_list(modalities):
            runs = []
            for seed in seeds:
                is_cggm = cfg["method"] == "cggm"
                sink = MemorySink() if is_cggm else None
                job = {**base, **cfg, "seed": seed, "data_seed": seed, "log_every": 1 if is_cggm else 10}
                s = train(job, device="cpu", sink=sink).summary
                row: dict[str, object] = {
                    "seed": seed,
                    "test_acc": s["test"]["test/acc"],
                    **{m: s["probe"][f"probe/acc/{m}"] for m in modalities},
                }
                if sink is not None:
                    row.update(coef_stats(sink, modalities))
                runs.append(row)
            results[setup][label] = runs
            print(
                f"{setup:22s} {label:18s} test {fmt([r['test_acc'] for r in runs])}  "
                + "  ".join(f"probe {m} {fmt([r[m] for r in runs])}" for m in modalities),
                flush=True,
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\n{len(seeds)} seeds, {time.time() - t_start:.0f} s total\n")
    for setup, by_method in results.items():
        mods = [
            k
            for k in next(iter(by_method.values()))[0]
            if k not in ("seed", "test_acc") and "/" not in k and not k.startswith("frac")
        ]
        print(f"#### {setup}\n")
        print("| method | fused test acc | " + " | ".join(f"probe acc {m}" for m in mods) + " |")
        print("|---|---|" + "---|" * len(mods))
        for label, runs in by_method.items():
            print(
                f"| {label} | {fmt([r['test_acc'] for r in runs])} | "
                + " | ".join(fmt([r[m] for r in runs]) for m in mods)
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
                print(
                    f"| {label} | {fmt([r['frac_blowup'] for r in runs])} | {fmt([r['frac_negative'] for r in runs])} | "
                    + " | ".join(fmt([r[f"mean_cos/{m}"] for r in runs]) for m in mods)
                    + " |"
                )
        print()


if __name__ == "__main__":
    main()
