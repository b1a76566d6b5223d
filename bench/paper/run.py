"""Reproduce the paper's table on your own files: `joint` and `cggm` with the official recipe, 3 seeds.

    python bench/paper/run.py --dataset mosi --path mosi/mosi_data.pkl [--seeds 0,1,2] [--device cuda]

`--path` is relative to the data root ($CGGM_DATA_DIR, default ./data/datasets), as every job's.
Each (method, seed) trains with `preset=<dataset>` (cggm_core/presets.py: the official
optimizer, lr, batch, epochs, clip, schedule, ρ, λ, model sizes) and writes its run folder
(config.json, metrics.jsonl, summary.json, checkpoint.pt) under `--out`/<dataset>/<method>-seed<k>;
a finished run with the same config is kept, an interrupted one resumes from its checkpoint. The
table (test metric of the final model, mean ± sample std over the seeds, beside the paper's
number; and the best validation epoch's) is printed and written to `--out`/<dataset>/results.md
and results.json.

The official scripts print the best validation epoch's metric (Food-101 validates on its test
split); we report the final model on the test split, so expect it at or a little below the paper.
When the files are absent it refuses with one line naming what it looked for (exit 2).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cggm_core.data.files import brats_cases, food101, iemocap, mosi
from cggm_core.data.files.root import DATA_DIR_ENV, DataPathError, data_root, resolve_under_root

METHODS = ("joint", "cggm")


class Refusal(Exception):
    """Why the benchmark cannot run; printed as one line."""


@dataclass(frozen=True)
class Metric:
    key: str  # in the run summary's "test" / "best" (without the split prefix): "mae", "dice/wt"
    label: str
    paper: float  # the paper's CGGM result, in `scale` units
    scale: float = 1.0  # 100: shown in percent, as the paper


@dataclass(frozen=True)
class Target:
    dataset: str  # the dataset registry name (and its preset's)
    title: str
    kind: str  # "file" or "folder"
    layout: str
    required: tuple[str, ...]  # entries a folder must hold before a run is worth starting
    metrics: tuple[Metric, ...]
    lower_is_better: bool = False


TARGETS: dict[str, Target] = {
    t.dataset: t
    for t in (
        Target("mosi", "CMU-MOSI", "file", mosi.LAYOUT, (), (Metric("mae", "MAE", 0.747),), lower_is_better=True),
        Target(
            "iemocap",
            "IEMOCAP",
            "folder",
            iemocap.LAYOUT,
            ("A/comparE.h5", "A/comparE_mean_std.h5", "V/denseface.h5", "L/bert_large.h5", "target"),
            (Metric("acc", "acc %", 75.38, 100.0),),
        ),
        Target(
            "food101",
            "UPMC-Food-101",
            "folder",
            food101.LAYOUT,
            ("train.json", "test.json"),
            (Metric("acc", "acc %", 92.94, 100.0),),
        ),
        Target(
            "brats",
            "BraTS 2021",
            "folder",
            f"{brats_cases.H5_LAYOUT}, or {brats_cases.NIFTI_LAYOUT}",
            (),
            (
                Metric("dice/wt", "Dice WT %", 76.94, 100.0),
                Metric("dice/tc", "Dice TC %", 72.75, 100.0),
                Metric("dice/et", "Dice ET %", 72.14, 100.0),
            ),
        ),
    )
}
NO_TARGET = {
    "mosei": "the paper reports no CMU-MOSEI result and the official code has no MOSEI recipe (no preset)",
}


def find_files(target: Target, path: str, root: Path) -> Path:
    """The data set's file or folder under the root, or a Refusal naming what was looked for."""
    try:
        real = resolve_under_root(path, root)
    except DataPathError as e:
        raise Refusal(str(e)) from None
    where = f"{DATA_DIR_ENV}={root}"
    if target.kind == "file" and not real.is_file():
        raise Refusal(f"no {target.title} file at {real} ({where}); expected {target.layout}")
    if target.kind == "folder" and not real.is_dir():
        raise Refusal(f"no {target.title} folder at {real} ({where}); expected {target.layout}")
    missing = [r for r in target.required if not (real / r).exists()]
    if missing:
        raise Refusal(f"{real} has no {', '.join(missing)} ({where}); expected {target.layout}")
    return real


# -- the table ---------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    if not values:
        return math.nan, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize(target: Target, summaries: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Per method and metric: the test values of each seed and their mean ± std (in the paper's units),
    and the same for the best validation epoch."""
    out: dict[str, Any] = {"dataset": target.dataset, "title": target.title, "methods": {}}
    for method, runs in summaries.items():
        row: dict[str, Any] = {"seeds": len(runs)}
        for m in target.metrics:
            test = [float(r["test"][f"test/{m.key}"]) * m.scale for r in runs]
            best = [float(r["best"][f"val/{m.key}"]) * m.scale for r in runs]
            (tm, ts), (bm, bs) = mean_std(test), mean_std(best)
            row[m.key] = {"test": test, "test_mean": tm, "test_std": ts, "val_best_mean": bm, "val_best_std": bs}
        out["methods"][method] = row
    return out


def _pm(mean: float, std: float | None, digits: int) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def format_table(target: Target, result: Mapping[str, Any]) -> str:
    """A markdown table: per method, each metric's test mean ± std, the best-val mean ± std, the paper's."""
    digits = 3 if all(m.scale == 1.0 for m in target.metrics) else 2
    better = "lower" if target.lower_is_better else "higher"
    counts = sorted({row["seeds"] for row in result["methods"].values()})
    seeds = f"{'/'.join(map(str, counts))} seed{'' if counts == [1] else 's'}"
    head = ["method"]
    for m in target.metrics:
        head += [f"test {m.label}", f"best val {m.label}", f"paper {m.label}"]
    lines = [
        f"{target.title}: final model on the test split, mean ± std over {seeds} "
        f"({better} is better); paper = CGGM in the paper",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for method, row in result["methods"].items():
        cells = [method]
        for m in target.metrics:
            v = row[m.key]
            paper = f"{m.paper:.{digits}f}" if method == "cggm" else "—"
            cells += [
                _pm(v["test_mean"], v["test_std"], digits),
                _pm(v["val_best_mean"], v["val_best_std"], digits),
                paper,
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the runs ----------------------------------------------------------------------------------
def run_one(config: dict[str, Any], out_dir: Path, device: str, progress: bool) -> dict[str, Any]:
    """Train one job (or keep the finished run with the same config, or resume its checkpoint)."""
    from cggm_core.config import resolve
    from cggm_core.trainer import train

    job = resolve(config)
    wanted = json.loads(json.dumps(job.flat()))
    summary_file, config_file, ckpt = out_dir / "summary.json", out_dir / "config.json", out_dir / "checkpoint.pt"
    same = config_file.is_file() and json.loads(config_file.read_text()) == wanted
    if same and summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if summary.get("status") == "finished":
            print(f"  kept {out_dir} (finished, same config)", file=sys.stderr)
            return summary
    resume = ckpt if same and ckpt.is_file() else None
    print(f"  {'resuming' if resume else 'training'} {out_dir}", file=sys.stderr)
    result = train(job, out_dir=out_dir, device=device, resume=resume, progress=progress)
    if result.status != "finished":
        raise RuntimeError(f"{out_dir}: the run ended {result.status}")
    return result.summary


def parse_sets(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise Refusal(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, help=f"one of {', '.join(TARGETS)}")
    ap.add_argument("--path", required=True, help=f"the data set's file or folder, relative to ${DATA_DIR_ENV}")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default joint,cggm)")
    ap.add_argument(
        "--cggm-variant",
        default="reference",
        choices=("reference", "paper", "stable"),
        help="CGGM's variant (default reference: the official code's behaviour, which made the paper's numbers)",
    )
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda:K")
    ap.add_argument("--out", default="runs/paper", help="where the runs and the table go (default runs/paper)")
    ap.add_argument("--epochs", type=int, help="override the preset's epochs (a quick look, not the paper's run)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="any other setting")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = ap.parse_args(argv)
    try:
        if args.dataset in NO_TARGET:
            raise Refusal(f"--dataset {args.dataset}: {NO_TARGET[args.dataset]}")
        if args.dataset not in TARGETS:
            raise Refusal(f"--dataset {args.dataset!r}: the paper's data sets are {', '.join(TARGETS)}")
        target = TARGETS[args.dataset]
        root = data_root()
        find_files(target, args.path, root)
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise Refusal(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        extra: dict[str, Any] = parse_sets(args.sets)
        if args.epochs is not None:
            extra["epochs"] = args.epochs
        from cggm_core.config import resolve
        from cggm_core.data import DATASETS
        from cggm_core.settings import SettingError

        if target.dataset not in DATASETS:
            raise Refusal(f"this install has no dataset {target.dataset!r} (registered: {', '.join(DATASETS)})")
        configs = {
            (m, s): {
                "dataset": target.dataset,
                "method": m,
                "preset": target.dataset,
                "path": args.path,
                **({"variant": args.cggm_variant} if m == "cggm" and "variant" not in extra else {}),
                **extra,
                "seed": s,
            }
            for m in methods
            for s in seeds
        }
        try:
            for c in configs.values():
                resolve(c)  # every job checked before the first one trains
        except SettingError as e:
            raise Refusal(str(e)) from None
    except Refusal as e:
        print(f"bench/paper: {e}", file=sys.stderr)
        return 2

    out = Path(args.out) / target.dataset
    summaries: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for (m, s), config in configs.items():
        summaries[m].append(run_one(config, out / f"{m}-seed{s}", args.device, not args.no_progress))
    result = summarize(target, summaries)
    table = format_table(target, result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")
    (out / "results.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out}/results.md and results.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
