"""The prepared GPU check of issue 13: one script for a machine with CUDA, run end to end.

    python bench/gpu_check.py [--json PATH] [--steps 50] [--repeats 5] [--sections a,b,...]
    python bench/gpu_check.py --cpu-smoke        # tiny sizes on the CPU: shows the script runs

Sections (each guarded: one that fails prints its error and the others still run; the exit
status is 1 if any failed):

* `ratios`: step time of every method as a ratio to `joint`, on the transformer (official MOSI
  size) and the segnet (default size), with bench/step_time.py's interleaved round robin (CUDA
  wall time after a synchronize; CPU time on the CPU).
* `precision`: bf16 and fp16 (cggm_core.amp) against fp32, for `joint` and `cggm[paper]`, same
  round robin and same models, so the ratio is measured in one process.
* `memory`: peak CUDA memory of a step without aux heads (`bare`), with them (`joint`) and of
  `cggm[paper]` (bench/step_time.py: cuda_peak_memory), at fp32 and bf16. CUDA only.
* `ddp`: when two GPUs exist (on the CPU smoke: always, with gloo) and this checkout's
  `cggm train` has `--nproc-per-node`: the same small job with 1 and with 2 processes, wall time
  and exit status of each. Skipped, with the reason, otherwise.

Sized for the device budget: at the defaults the whole check should take a few minutes on one H200-class
GPU (an estimate: not yet run on one; most of it the 2 × ~16 variants of `ratios`); `--sections` runs a subset.

On this workplace's lent H200 (its python3 holds torch with CUDA, numpy, tqdm, httpx and
nvidia-ml-py; nothing needs installing), one call of the device tool, with room to rerun inside
the 15 minutes:

    PYTHONPATH=. PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --steps 30 --json $OUT/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_time import NO_LOG, Steps, cuda_peak_memory, make_stepper, time_round_robin, variants
from workloads import Workload, workload

SECTIONS = ("ratios", "precision", "memory", "ddp")
MODELS = {"transformer": ("official", 64), "segnet": ("default", 32)}
# --cpu-smoke: the same code on workloads small enough for a few seconds each on one CPU thread.
SMOKE = {
    "transformer": {"d_model": 8, "heads": 2, "enc_layers": 1, "fusion_layers": 1, "aux_layers": 1},
    "segnet": {"seg_size": 16, "segnet_width": 4, "segnet_dec_width": 8},
}
SMOKE_BATCH = {"transformer": 16, "segnet": 2}


def build_workload(model: str, device: torch.device, smoke: bool) -> Workload:
    size, batch = MODELS[model]
    if smoke:
        return workload(model, size, SMOKE_BATCH[model], device, overrides=SMOKE[model])
    return workload(model, size, batch, device)


def timed(
    wl: Workload,
    device: torch.device,
    plan: list[tuple[str, str, dict[str, object], int, str]],
    args: argparse.Namespace,
) -> dict[str, float]:
    """ms/step of each (label, method, settings, log_every, precision), interleaved."""
    steppers: dict[str, Steps] = {}
    for label, method, settings, log_every, precision in plan:
        st = make_stepper(wl, device, method, settings, log_every, precision)
        for _ in range(args.warmup):  # allocator, kernels, Adam state, the scaler's first scale
            st.step_batch(wl.batch)
        steppers[label] = st
    best = time_round_robin(steppers, wl.batch, device, args.repeats, args.steps)
    return {k: v * 1e3 for k, v in best.items()}


def table(ms: dict[str, float], base: str) -> str:
    rows = [f"| {k} | {v:.2f} | {v / ms[base]:.3f} |" for k, v in ms.items()]
    return "\n".join([f"| variant | ms/step | ratio to {base} |", "|---|---|---|", *rows])


def section_ratios(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in MODELS:
        wl = build_workload(model, device, args.cpu_smoke)
        plan = [("bare (no aux heads)", "bare", {}, NO_LOG, "fp32")]
        plan += [
            (label, method, settings, log_every, "fp32") for label, method, settings, log_every in variants(args.steps)
        ]
        ms = timed(wl, device, plan, args)
        print(f"\n### {model}: {wl.describe()}, batch {wl.batch.y.shape[0]}\n{table(ms, 'joint')}")
        out[model] = {
            "workload": wl.describe(),
            "ms_per_step": ms,
            "ratio_to_joint": {k: v / ms["joint"] for k, v in ms.items()},
        }
    return out


def section_precision(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in MODELS:
        wl = build_workload(model, device, args.cpu_smoke)
        plan = [
            (f"{label} {p}", method, settings, NO_LOG, p)
            for label, method, settings in (("joint", "joint", {}), ("cggm[paper]", "cggm", {"variant": "paper"}))
            for p in args.precisions
        ]
        ms = timed(wl, device, plan, args)
        print(f"\n### {model}: precision, {wl.describe()}\n{table(ms, 'joint fp32')}")
        ratios = {
            f"{label} {p}/fp32": ms[f"{label} {p}"] / ms[f"{label} fp32"]
            for label in ("joint", "cggm[paper]")
            for p in args.precisions
            if p != "fp32"
        }
        for k, v in ratios.items():
            print(f"{k}: {v:.3f}")
        out[model] = {"ms_per_step": ms, "ratios": ratios}
    return out


def section_memory(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    if device.type != "cuda":
        return {"skipped": "peak memory is read from torch.cuda (CUDA only)"}
    out: dict[str, Any] = {}
    for model in MODELS:
        wl = build_workload(model, device, args.cpu_smoke)
        out[model] = {"fp32": cuda_peak_memory(wl, device)}
        print(f"\n### {model}: peak CUDA memory (MiB), fp32")
        print("| step | resident MiB | peak MiB |\n|---|---|---|")
        for k, v in out[model]["fp32"].items():
            print(f"| {k} | {v['resident_mib']:.1f} | {v['peak_mib']:.1f} |")
        out[model]["bf16_joint"] = bf16_peak(wl, device)
        print(f"joint bf16 peak: {out[model]['bf16_joint']['peak_mib']:.1f} MiB")
    return out


def bf16_peak(wl: Workload, device: torch.device, steps: int = 3) -> dict[str, float]:
    torch.cuda.empty_cache()
    st = make_stepper(wl, device, "joint", {}, NO_LOG, "bf16")
    torch.cuda.synchronize(device)
    resident = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(steps):
        st.step_batch(wl.batch)
    torch.cuda.synchronize(device)
    return {"resident_mib": resident / 2**20, "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20}


def cggm_cli() -> list[str]:
    return [sys.executable, "-m", "cggm_core"]


def section_ddp(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and gpus < 2:
        return {"skipped": f"{gpus} GPU(s) here; the DDP run needs two"}
    help_text = subprocess.run([*cggm_cli(), "train", "--help"], capture_output=True, text=True, timeout=120).stdout
    if "--nproc-per-node" not in help_text:
        return {"skipped": "this checkout's `cggm train` has no --nproc-per-node (distributed training not merged)"}
    job = ["--dataset", "synthetic_seq", "--method", "cggm", "--epochs", "1", "--no-progress"]
    job += ["--set", "train_size=256" if args.cpu_smoke else "train_size=4096", "--set", "batch_size=64"]
    job += ["--set", "linear_probe=false", "--set", "shapley=false"]
    if args.cpu_smoke:
        job += [f"--set={k}={v}" for k, v in SMOKE["transformer"].items()]
    out: dict[str, Any] = {"gpus": gpus}
    for nproc in (1, 2):
        run_dir = Path(args.work_dir) / f"ddp-{nproc}"
        cmd = [
            *cggm_cli(),
            "train",
            *job,
            "--device",
            device.type,
            "--out",
            str(run_dir),
            "--nproc-per-node",
            str(nproc),
        ]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.ddp_timeout_s)
        wall = time.perf_counter() - t0
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        out[f"nproc={nproc}"] = {
            "rc": r.returncode,
            "wall_s": wall,
            "status": summary.get("status"),
            "final": summary.get("final"),
            "tail": (r.stdout + r.stderr)[-2000:] if r.returncode else "",
        }
        print(f"ddp nproc={nproc}: rc {r.returncode}, {wall:.1f} s, status {summary.get('status')}")
        if r.returncode:
            raise RuntimeError(
                f"`cggm train --nproc-per-node {nproc}` failed (rc {r.returncode}):\n{out[f'nproc={nproc}']['tail']}"
            )
    return out


RUNNERS: dict[str, Callable[[torch.device, argparse.Namespace], dict[str, Any]]] = {
    "ratios": section_ratios,
    "precision": section_precision,
    "memory": section_memory,
    "ddp": section_ddp,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--cpu-smoke", action="store_true", help="tiny sizes on the CPU (proves the script runs end to end)"
    )
    ap.add_argument("--device", help="default: cuda (cpu with --cpu-smoke)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    ap.add_argument("--steps", type=int, help="steps per timed window (default 50; 2 with --cpu-smoke)")
    ap.add_argument("--repeats", type=int, help="interleaved repeats (default 5; 1 with --cpu-smoke)")
    ap.add_argument("--warmup", type=int, help="steps per variant before timing (default 5; 1 with --cpu-smoke)")
    ap.add_argument(
        "--precisions",
        default="fp32,bf16,fp16",
        help="precision section: fp32 and these (torch 2.13 autocasts float16 on the CPU too, slowly)",
    )
    ap.add_argument("--ddp-timeout-s", type=float, default=300.0)
    ap.add_argument("--work-dir", default="runs/gpu_check", help="where the ddp runs write their outputs")
    ap.add_argument("--json", help="write every figure here as JSON")
    args = ap.parse_args()
    smoke = args.cpu_smoke
    args.precisions = ["fp32", *(p for p in args.precisions.split(",") if p.strip() and p.strip() != "fp32")]
    args.steps = args.steps or (2 if smoke else 50)
    args.repeats = args.repeats or (1 if smoke else 5)
    args.warmup = args.warmup or (1 if smoke else 5)
    device = torch.device(args.device or ("cpu" if smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --cpu-smoke on a CPU machine", file=sys.stderr)
        return 2
    if device.type == "cpu":
        torch.set_num_threads(1)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; allowed: {', '.join(SECTIONS)}")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (1 thread)"
    result: dict[str, Any] = {"device": card, "gpus": torch.cuda.device_count(), "torch": torch.__version__}
    result |= {"smoke": smoke, "steps": args.steps, "repeats": args.repeats, "errors": {}}
    print(f"device: {card}; torch {torch.__version__}; {args.repeats} repeats x {args.steps} steps")
    for name in wanted:
        t0 = time.perf_counter()
        try:
            result[name] = RUNNERS[name](device, args)
        except Exception as e:  # one section's failure must not cost the others their device time
            traceback.print_exc()
            result["errors"][name] = f"{type(e).__name__}: {e}"
        print(f"[{name}: {time.perf_counter() - t0:.1f} s]")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    if result["errors"]:
        print(f"failed sections: {', '.join(result['errors'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
