"""The effect benchmark of issue 12: every method against `joint`, paired by seed, with 95 % CIs.

Each seed s runs every method with seed = data_seed = s (one initialisation, shuffling and data
draw or split, shared by every method of that seed), so method − `joint` is a paired difference.
The interval is Student t over the n paired differences (n − 1 degrees of freedom), not a
bootstrap: with 5 pairs a bootstrap's percentiles are too coarse to mean anything.

    python bench/effect_grid.py [--tasks NAME,...] [--methods NAME,...] [--optimizers adam,official]
                                [--seeds 0,1,2,3,4] [--out bench/results/effect_grid]
    python bench/effect_grid.py --report [--out ...] [--figures bench/figures]   # tables + SVGs only

Optimizers: `adam` is the common one (the trainer's defaults: Adam lr 1e-3, aux heads 5e-4, clip
0.8), with the task's epochs. `official` runs each method under its authors' whole recipe, the
preset `cggm_core.presets.official_preset(method)` (optimizer, lr, momentum, weight decay, clip,
schedule, batch size and epochs: their SGD at lr 1e-4–3e-3 barely moves in the tasks' 10–30
epochs, so the preset's 30–130 epochs are kept; the task's data and model settings stay). A
method with no official recipe (`mslr`) has no `official` row. Under `official`, `joint` is run
once per distinct recipe (`joint@<preset>`; presets with equal trainer values share one) and each
method is paired with the `joint` of its own recipe, so a Δ measures the method, not the
optimizer or the epochs. The runs are resumable: each finished run is written at once to its
task's JSON (`<out>/<task>.json` for Adam, `<out>/<task>__official.json`: processes running
different tasks or optimizers never write the same file) and a cell already there is skipped:
stop and restart at will.

Tasks (`TASKS`): `synthetic` with 2, 3 and 4 modalities at two imbalance levels, the three
sequence/segmentation setups of bench/effect.py, and mfeat view sets on a small training split
(val and test fractions 0.4 each: 400 training digits, 40 a class), where the data is easy
enough that every method would otherwise reach the same ceiling. Nothing is reshaped to favour a
method. The "weak" modality of a task is the one whose linear probe is lowest under `joint`
(mean over seeds), read from the results, not chosen by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from effect import SEG, SEQ

from cggm_core.methods import METHODS as REGISTRY
from cggm_core.tracking import MemorySink
from cggm_core.trainer import train

NEVER = 10**6  # a log_every that never logs
CGGM_LOG_EVERY = 5  # CGGM logs its coefficients every 5 steps, for the B statistics
FAST = {"shapley": False, "probe_steps": 150}

# Synthetic: m0 is the linear shortcut, m1… need a non-linear (4-cluster) boundary. "mild" keeps
# the default strengths (the imbalance is structural only); "strong" makes the shortcut stronger
# and the others weaker.
_SYN = {"dataset": "synthetic", "epochs": 10, "train_size": 1000, "val_size": 300, "test_size": 1000, **FAST}


def _syn(m: int, strong: bool) -> dict[str, Any]:
    strengths = ",".join(["4.0"] + ["2.0"] * (m - 1)) if strong else "3.0"
    return {**_SYN, "modalities": m, "strengths": strengths}


_MFEAT = {"dataset": "mfeat", "epochs": 30, "val_fraction": 0.4, "test_fraction": 0.4, **FAST}
TASKS: dict[str, dict[str, Any]] = {
    "synthetic M=2 mild": _syn(2, False),
    "synthetic M=2 strong": _syn(2, True),
    "synthetic M=3 mild": _syn(3, False),
    "synthetic M=3 strong": _syn(3, True),
    "synthetic M=4 mild": _syn(4, False),
    "synthetic M=4 strong": _syn(4, True),
    "mfeat fou+fac": {**_MFEAT, "views": "fou,fac"},
    "mfeat pix+mor": {**_MFEAT, "views": "pix,mor"},
    "mfeat fou+kar+mor": {**_MFEAT, "views": "fou,kar,mor"},
    "mfeat all 6": {**_MFEAT, "views": "fou,fac,kar,pix,zer,mor"},
    "synthetic_seq classification": {**SEQ, "task": "classification", "shapley": False},
    "synthetic_seq regression": {**SEQ, "task": "regression", "shapley": False},
    "synthetic_seg": {**SEG, "shapley": False},
}

METHODS: dict[str, dict[str, Any]] = {
    "joint": {"method": "joint"},
    "cggm paper": {"method": "cggm", "variant": "paper"},
    "cggm reference": {"method": "cggm", "variant": "reference"},
    "cggm stable": {"method": "cggm", "variant": "stable"},
    **{m: {"method": m} for m in ("ogm_ge", "agm", "mmpareto", "uniform", "gblending", "pmr", "mslr", "mla")},
}
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
LOWER_IS_BETTER = {"mae", "loss"}


def official_optimizer(method: str) -> str | None:
    """The name of the method's official preset, or None (it has none)."""
    from cggm_core.presets import official_preset

    return official_preset(method)


def recipe_group(preset: str) -> str:
    """The first method preset (by name) whose trainer values equal this one's: the recipe its
    `joint` is run under."""
    from cggm_core.presets import PRESETS

    def values(name: str) -> dict[str, Any]:
        return dict(PRESETS[name].trainer)

    return min(n for n in PRESETS if PRESETS[n].method is not None and values(n) == values(preset))


def supported(task: Mapping[str, Any], method: str) -> bool:
    from cggm_core.config import resolve
    from cggm_core.data import DATASETS

    job = resolve({**task, "method": "joint"})
    served = REGISTRY[METHODS[method]["method"]].tasks
    return served is None or DATASETS[job.dataset].task_name(job.data) in served


def plan(methods: list[str], optimizer: str) -> list[tuple[str, str, str | None]]:
    """(label, method, preset) of every run of one task and seed."""
    if optimizer == "adam":
        return [(m, m, None) for m in methods]
    out: list[tuple[str, str, str | None]] = []
    for m in methods:
        preset = official_optimizer(METHODS[m]["method"]) if m != "joint" else None
        if preset is not None:
            group = recipe_group(preset)
            if ("joint@" + group, "joint", group) not in out:
                out.append(("joint@" + group, "joint", group))
            out.append((m, m, preset))
    return out


def job_of(task: str, method: str, preset: str | None, seed: int) -> dict[str, Any]:
    cfg = METHODS[method]
    job: dict[str, Any] = {**TASKS[task], **cfg, "seed": seed, "data_seed": seed}
    job["log_every"] = CGGM_LOG_EVERY if cfg["method"] == "cggm" else NEVER
    if preset is not None:
        job["preset"] = preset
        del job["epochs"]  # the recipe's (an explicit setting would win over the preset)
    return job


def coef_stats(sink: MemorySink, modalities: list[str]) -> dict[str, Any]:
    per: dict[str, list[float]] = {m: [] for m in modalities}
    for p in sink.points:
        if p.key.startswith("coef/") and p.key[5:] in per:
            per[p.key[5:]].append(p.value)
    neutral = (len(modalities) - 1) / len(modalities)
    first = per[modalities[0]]
    return {
        "median_b": {m: statistics.median(v) for m, v in per.items() if v},
        "frac_neutral": sum(abs(v - neutral) < 1e-9 for v in first) / max(len(first), 1),
    }


def run_one(task: str, method: str, preset: str | None, seed: int) -> dict[str, Any]:
    job = job_of(task, method, preset, seed)
    sink = MemorySink() if METHODS[method]["method"] == "cggm" else None
    t0 = time.process_time()
    s = train(job, device="cpu", sink=sink).summary
    metric, bm = s["metric"], s["batch_metric"]
    row: dict[str, Any] = {
        "metric": metric,
        "test": s["test"][f"test/{metric}"],
        "test_all": s["test"],
        "probe_metric": bm,
        "probe": {k.rsplit("/", 1)[1]: v for k, v in s["probe"].items() if k.startswith(f"probe/{bm}/")},
        "cpu_s": time.process_time() - t0,
        "preset": preset,
    }
    if sink is not None:
        row["coef"] = coef_stats(sink, list(row["probe"]))
    return row


def save(path: Path, k: str, row: dict[str, Any]) -> None:
    """Add one cell: the file is read again just before the write, so that cells another process
    added meanwhile are kept (the window between read and replace is a few milliseconds)."""
    results = json.loads(path.read_text()) if path.exists() else {}
    results[k] = row
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=0, sort_keys=True))
    os.replace(tmp, path)


def key(task: str, optimizer: str, method: str, seed: int) -> str:
    return f"{task} | {optimizer} | {method} | {seed}"


def slug(task: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in task).strip("_")


def load_all(out: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for f in sorted(out.glob("*.json")):
        results.update(json.loads(f.read_text()))
    return results


def run_grid(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    t_start = time.time()
    for task in args.tasks.split(","):
        for optimizer in args.optimizers.split(","):
            path = out / (f"{slug(task)}.json" if optimizer == "adam" else f"{slug(task)}__{optimizer}.json")
            for seed in seeds:  # seed-major: a stopped run leaves whole seeds of every method
                for label, method, preset in plan(args.methods.split(","), optimizer):
                    k = key(task, optimizer, label, seed)
                    if not supported(TASKS[task], method):
                        continue
                    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
                    if k in results:
                        continue
                    row = run_one(task, method, preset, seed)
                    save(path, k, row)
                    print(
                        f"{time.time() - t_start:7.0f}s {k}: test {row['test']:.4f} ({row['cpu_s']:.1f} cpu s)",
                        flush=True,
                    )


# -- report --------------------------------------------------------------------------------


def mean_ci(values: list[float]) -> tuple[float, float]:
    n = len(values)
    if n < 2:
        return values[0], float("nan")
    return statistics.fmean(values), T_975[n - 1] * statistics.stdev(values) / math.sqrt(n)


def collect(results: Mapping[str, Any]) -> dict[str, dict[str, dict[str, dict[int, dict[str, Any]]]]]:
    """task → optimizer → method → seed → row."""
    out: dict[str, dict[str, dict[str, dict[int, dict[str, Any]]]]] = {}
    for k, row in results.items():
        if row is None:
            continue
        task, opt, method, seed = (p.strip() for p in k.split(" | "))
        out.setdefault(task, {}).setdefault(opt, {}).setdefault(method, {})[int(seed)] = row
    return out


def weak_modality(joint: Mapping[int, Mapping[str, Any]]) -> str:
    mods = list(next(iter(joint.values()))["probe"])
    return min(mods, key=lambda m: statistics.fmean(r["probe"][m] for r in joint.values()))


def paired(rows: Mapping[int, Any], base: Mapping[int, Any], get: Any) -> tuple[float, float, int] | None:
    seeds = sorted(set(rows) & set(base))
    if not seeds:
        return None
    d = [get(rows[s]) - get(base[s]) for s in seeds]
    m, h = mean_ci(d)
    return m, h, len(seeds)


def fmt_ci(x: tuple[float, float, int] | None, scale: float = 100.0) -> str:
    if x is None:
        return "—"
    m, h, _ = x
    sig = not math.isnan(h) and abs(m) > h
    digits = 1 if scale == 100.0 else 3  # points of a fraction; a raw metric (MAE) to 3 places
    cell = f"{m * scale:+.{digits}f} ± {h * scale:.{digits}f}"
    return f"**{cell}**" if sig else cell


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


SUMMARY_KEYS = {
    "acc": ["acc", "f1_macro"],
    "mae": ["mae", "corr", "acc2"],
    "dice/avg": ["dice/avg", "dice/wt", "dice/tc", "dice/et"],
}


def summary_tables(results: Mapping[str, Any], optimizer: str = "adam") -> str:
    """Issue 10's effect tables: mean ± std over seeds of the test metrics and of every modality's
    probe, per method, for the sequence and segmentation tasks."""
    lines: list[str] = []
    grid = collect(results)
    for task in TASKS:
        if not task.startswith("synthetic_se") or task not in grid or optimizer not in grid[task]:
            continue
        by_method = grid[task][optimizer]
        first = next(iter(next(iter(by_method.values())).values()))
        keys, mods, pm = SUMMARY_KEYS[first["metric"]], list(first["probe"]), first["probe_metric"]
        lines.append(f"#### {task} ({optimizer})\n")
        lines.append(
            "| method | seeds | "
            + " | ".join(f"test {k}" for k in keys)
            + " | "
            + " | ".join(f"probe {pm} {m}" for m in mods)
            + " |"
        )
        lines.append("|---|---|" + "---|" * (len(keys) + len(mods)))
        for method in METHODS:
            rows = list(by_method.get(method, {}).values())
            if not rows:
                continue
            cells = [mean_std([r["test_all"][f"test/{k}"] for r in rows]) for k in keys]
            cells += [mean_std([r["probe"][m] for r in rows]) for m in mods]
            lines.append(f"| {method} | {len(rows)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def scoreboard(results: Mapping[str, Any], optimizer: str = "adam", min_seeds: int = 3) -> str:
    """Per method, over the tasks with at least `min_seeds` paired seeds: in how many its Δ against
    `joint` is significantly better (+), significantly worse (−) or neither (0), for the test metric
    (better = lower for MAE) and for the weak modality's probe."""
    grid = collect(results)
    counts: dict[str, dict[str, list[int]]] = {}
    tasks_used: list[str] = []
    for task in TASKS:
        by_opt = grid.get(task, {})
        joint = by_opt.get("adam", {}).get("joint")
        if not joint or optimizer not in by_opt:
            continue
        weak = weak_modality(joint)
        lower = next(iter(joint.values()))["metric"] in LOWER_IS_BETTER
        used = False
        for method, rows in by_opt[optimizer].items():
            if method.startswith("joint"):
                continue
            base = base_of(by_opt, optimizer, rows)
            if base is None:
                continue
            for which, get in (("test", lambda r: r["test"]), ("weak", lambda r, w=weak: r["probe"][w])):
                d = paired(rows, base, get)
                if d is None or d[2] < min_seeds:
                    continue
                used = True
                m, h, _ = d
                better = -m if (which == "test" and lower) else m
                cell = counts.setdefault(method, {"test": [0, 0, 0], "weak": [0, 0, 0]})[which]
                cell[0 if better > h else 1 if better < -h else 2] += 1
        if used:
            tasks_used.append(task)
    lines = [
        f"Tasks with ≥ {min_seeds} paired seeds ({optimizer}): {', '.join(tasks_used)}\n",
        "| method | test metric: better / worse / neither | weak modality's probe: better / worse / neither |",
        "|---|---|---|",
    ]
    for method in METHODS:
        if method in counts:
            t, w = counts[method]["test"], counts[method]["weak"]
            lines.append(f"| {method} | {t[0]} / {t[1]} / {t[2]} | {w[0]} / {w[1]} / {w[2]} |")
    return "\n".join(lines) + "\n"


def report(results: Mapping[str, Any], figures: Path | None) -> str:
    lines: list[str] = []
    grid = collect(results)
    for task in TASKS:
        if task not in grid:
            continue
        by_opt = grid[task]
        joint_adam = by_opt.get("adam", {}).get("joint")
        if not joint_adam:  # the weak modality and the metric are read from joint under Adam
            continue
        weak = weak_modality(joint_adam)
        first = next(iter(joint_adam.values()))
        metric, pm = first["metric"], first["probe_metric"]
        scale = 1.0 if metric in LOWER_IS_BETTER else 100.0
        unit = "" if scale == 1.0 else " (points)"
        lines.append(f"#### {task} — weak modality {weak}\n")
        lines.append(
            f"| method | optimizer | seeds | test {metric} | Δ test {metric} vs joint{unit} | "
            f"Δ probe {pm} {weak} vs joint (points) | median B (CGGM) |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        official_joints = sorted(k for k in by_opt.get("official", {}) if k.startswith("joint@"))
        for method in [*METHODS, *official_joints]:
            for opt in ("adam", "official"):
                rows = by_opt.get(opt, {}).get(method)
                if not rows:
                    continue
                base = base_of(by_opt, opt, rows)
                is_base = method == "joint" or method.startswith("joint@")
                d_test = None if is_base or base is None else paired(rows, base, lambda r: r["test"])
                d_weak = None if is_base or base is None else paired(rows, base, lambda r, w=weak: r["probe"][w])
                coef = [r["coef"]["median_b"] for r in rows.values() if "coef" in r]
                med = (
                    ", ".join(f"{m} {statistics.fmean(c[m] for c in coef):.2f}" for m in coef[0])
                    if coef and coef[0]
                    else "—"
                )
                recipe = "adam" if opt == "adam" else str(next(iter(rows.values()))["preset"])
                lines.append(
                    f"| {method} | {recipe} | {len(rows)} | {mean_std([r['test'] for r in rows.values()])} | "
                    f"{fmt_ci(d_test, scale)} | {fmt_ci(d_weak)} | {med} |"
                )
        lines.append("")
        if figures is not None:
            figures.mkdir(parents=True, exist_ok=True)
            name = f"effect_{slug(task)}.svg"
            (figures / name).write_text(forest_svg(task, by_opt, weak, metric, pm, scale))
            lines.append(f"Figure: `bench/figures/{name}`\n")
    return "\n".join(lines)


def base_of(by_opt: Mapping[str, Any], opt: str, rows: Mapping[int, Any]) -> Mapping[int, Any] | None:
    """The `joint` runs a method's runs are paired with: Adam's, or the `joint` of its own recipe."""
    if opt == "adam":
        base: Mapping[int, Any] | None = by_opt["adam"].get("joint")
        return base
    preset = next(iter(rows.values()))["preset"]
    return by_opt.get("official", {}).get("joint@" + recipe_group(preset))


def forest_svg(task: str, by_opt: Mapping[str, Any], weak: str, metric: str, pm: str, scale: float) -> str:
    """Two panels (Δ test metric, Δ weak probe), one row per method, a dot and its 95 % CI per
    optimizer (blue: Adam, red: official), a zero line; hand-written SVG, no plotting library."""
    rows: list[tuple[str, str, tuple[float, float, int] | None, tuple[float, float, int] | None]] = []
    for method in METHODS:
        if method == "joint":
            continue
        for opt in ("adam", "official"):
            r = by_opt.get(opt, {}).get(method)
            if not r:
                continue
            base = base_of(by_opt, opt, r)
            if base is None:
                continue
            rows.append(
                (method, opt, paired(r, base, lambda x: x["test"]), paired(r, base, lambda x: x["probe"][weak]))
            )
    left, pw, gap, top, rh = 130, 300, 40, 40, 16
    height = top + rh * len(rows) + 40
    width = left + 2 * pw + gap + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="8" y="16" font-size="13">{task}: method − joint, paired by seed, 95 % t CI '
        '(<tspan fill="#1f77b4">Adam</tspan>, <tspan fill="#d62728">official optimizer</tspan>)</text>',
    ]
    for col, (title, idx, sc) in enumerate(
        (
            (f"Δ test {metric}" + ("" if scale == 1.0 else " (points)"), 2, scale),
            (f"Δ probe {pm} {weak} (points)", 3, 100.0),
        )
    ):
        x0 = left + col * (pw + gap)
        vals = [abs(r[idx][0]) + (r[idx][1] if not math.isnan(r[idx][1]) else 0) for r in rows if r[idx]]
        span = max([*vals, 1e-6]) * sc * 1.05
        out.append(f'<text x="{x0}" y="{top - 8}">{title}</text>')

        def sx(v: float, x0: float = x0, span: float = span) -> float:
            return x0 + pw / 2 + v / span * pw / 2

        out.append(f'<line x1="{sx(0):.1f}" y1="{top}" x2="{sx(0):.1f}" y2="{height - 30}" stroke="#999"/>')
        out.append(f'<text x="{x0}" y="{height - 14}">{-span:.2g}</text>')
        out.append(f'<text x="{x0 + pw - 30}" y="{height - 14}">{span:.2g}</text>')
        for i, (method, opt, *ds) in enumerate(rows):
            y = top + rh * i + rh / 2
            if col == 0:
                out.append(f'<text x="8" y="{y + 4:.1f}">{method}</text>')
            d = ds[idx - 2]
            if d is None:
                continue
            color = "#1f77b4" if opt == "adam" else "#d62728"
            m, h = d[0] * sc, (0.0 if math.isnan(d[1]) else d[1] * sc)
            out.append(
                f'<line x1="{sx(m - h):.1f}" y1="{y:.1f}" x2="{sx(m + h):.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="1.5"/>'
            )
            out.append(f'<circle cx="{sx(m):.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
    out.append("</svg>\n")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"allowed: {', '.join(TASKS)}")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"allowed: {', '.join(METHODS)}")
    ap.add_argument("--optimizers", default="adam,official")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--out", default="bench/results/effect_grid", help="a folder: one JSON per task")
    ap.add_argument("--report", action="store_true", help="print the tables (and write the figures) only")
    ap.add_argument("--figures", default="bench/figures", help="where --report writes one SVG per task")
    args = ap.parse_args()
    for t in args.tasks.split(","):
        if t not in TASKS:
            raise SystemExit(f"unknown task {t!r}; allowed: {', '.join(TASKS)}")
    for m in args.methods.split(","):
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; allowed: {', '.join(METHODS)}")
    torch.set_num_threads(1)
    if args.report:
        results = load_all(Path(args.out))
        print(scoreboard(results, "adam"))
        print(scoreboard(results, "official"))
        print(summary_tables(results))
        print(report(results, Path(args.figures) if args.figures else None))
        return
    run_grid(args)


if __name__ == "__main__":
    main()
