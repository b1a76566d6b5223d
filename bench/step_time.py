"""Training-step time of every method as a ratio to `joint`, and the probe's overhead.

Same model, same batch, one process: methods are timed round-robin (repeats interleaved) so that
machine noise hits all of them alike. On the CPU the clock is this process's CPU time (one torch
thread), which other processes on the machine barely disturb, and the minimum over repeats is
reported (noise only ever adds time); on CUDA it is wall time after a synchronize.

    python bench/step_time.py [--model mlp|transformer|segnet] [--size NAME] [--batch N]
                              [--device cpu|cuda] [--repeats 7] [--steps 30] [--flops]

`--model` picks the workload of bench/workloads.py (the transformer on synthetic_seq batches, the
segnet on synthetic_seg batches; `mlp`, the default, on random vectors) and `--size` its size.
`--flops` first prints each part's share of a `joint` step's FLOPs (encoders, fusion + head, aux
heads), counted by torch's FlopCounterMode over each part's forward and backward run alone; their
sum is checked against the whole step's count. `bare` is the step with no aux heads at all
(bench/workloads.py: BareStepper), so `joint / bare` is what the aux heads cost.

On CUDA the script also reports peak memory (`torch.cuda.max_memory_allocated`) of a step
without aux heads (`bare`), with them (`joint`) and of `cggm paper`, each on a fresh model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import SIZES, BareStepper, Workload, workload

from cggm_core.batch import Batch
from cggm_core.methods import METHODS
from cggm_core.step import Stepper

NO_LOG = 10**9  # a log_every that never logs: the bare method
PROBE_EVERY = 50  # the log_every whose overhead the goal is about
DEFAULT_BATCH = {"mlp": 64, "transformer": 64, "segnet": 32}


class Steps(Protocol):
    def step_batch(self, batch: Batch) -> dict[str, float]: ...


def variants(steps: int) -> list[tuple[str, str, dict[str, object], int]]:
    """(label, method, settings, log_every). Probe rows at K = 50 only when every timed window of
    `steps` steps holds the same number of logging steps (steps a multiple of 50): otherwise the
    minimum over windows picks one with no logging step and shows no overhead at all."""
    out: list[tuple[str, str, dict[str, object], int]] = [("joint", "joint", {}, NO_LOG)]
    for v in ("paper", "reference", "stable"):
        out.append((f"cggm[{v}]", "cggm", {"variant": v}, NO_LOG))
    for name in METHODS:
        if name not in ("joint", "cggm", "unimodal"):
            out.append((name, name, {}, NO_LOG))
    if steps % PROBE_EVERY == 0:
        out.append((f"joint+probe@{PROBE_EVERY}", "joint", {}, PROBE_EVERY))
        out.append((f"cggm[paper]+probe@{PROBE_EVERY}", "cggm", {"variant": "paper"}, PROBE_EVERY))
    out.append(("joint+probe@1", "joint", {}, 1))
    out.append(("cggm[paper]+probe@1", "cggm", {"variant": "paper"}, 1))
    return out


def make_stepper(
    wl: Workload,
    device: torch.device,
    method: str,
    settings: dict[str, object],
    log_every: int,
    precision: str = "fp32",
) -> Steps:
    """`precision` (fp32 | bf16 | fp16, cggm_core.amp) applies to the Stepper; `bare` is always fp32."""
    net = wl.build(device)
    if method == "bare":
        return BareStepper(net, wl.task)
    return Stepper(net, wl.task, method, settings, log_every=log_every, aux=wl.make_aux(net), precision=precision)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_round_robin(
    steppers: dict[str, Steps], batch: Batch, device: torch.device, repeats: int, steps: int
) -> dict[str, float]:
    """Seconds per step of each stepper: the minimum over `repeats` windows of `steps` steps."""
    times: dict[str, list[float]] = {k: [] for k in steppers}
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    for _ in range(repeats):
        for label, st in steppers.items():
            sync(device)
            t0 = clock()
            for _ in range(steps):
                st.step_batch(batch)
            sync(device)
            times[label].append((clock() - t0) / steps)
    return {k: min(v) for k, v in times.items()}


def count_flops(fn: Callable[[], None]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def flop_shares(wl: Workload, device: torch.device) -> dict[str, float]:
    """FLOPs of one `joint` step and the share of each part (each part's forward + backward alone).

    FlopCounterMode counts matmuls and convolutions (not elementwise ops). On the CPU, attention
    with dropout (training mode, the official dropouts) runs as explicit bmm and is counted; the
    fused attention kernel (no dropout) is not.
    """
    net = wl.build(device)
    aux = wl.make_aux(net)
    b, task = wl.batch, wl.task
    net.train()

    def encoders() -> None:
        feats = net.encode(b.xs, b.masks)
        torch.autograd.backward(list(feats.values()), [torch.ones_like(f) for f in feats.values()])

    with torch.no_grad():
        fixed = net.encode(b.xs, b.masks)

    def fusion_head() -> None:  # gradient reaches the features, as in the real step
        feats = {m: f.clone().requires_grad_() for m, f in fixed.items()}
        task.loss(net.fuse(feats, masks=b.masks), b.y).backward()

    def aux_heads() -> None:  # detached input: no gradient into the encoders
        torch.stack([task.loss(z, b.y) for z in aux(fixed, b.masks).values()]).sum().backward()

    st = Stepper(net, task, "joint", {}, log_every=NO_LOG, aux=aux)
    total = count_flops(lambda: st.step_batch(b))
    parts = {
        "encoders": count_flops(encoders),
        "fusion+head": count_flops(fusion_head),
        "aux heads": count_flops(aux_heads),
    }
    return {
        "total_gflop": total / 1e9,
        **{k: v / total for k, v in parts.items()},
        "parts/total": sum(parts.values()) / total,
    }


def cuda_peak_memory(wl: Workload, device: torch.device, steps: int = 3) -> dict[str, dict[str, float]]:
    """Peak CUDA memory (MiB) of `steps` training steps: bare (no aux heads), joint, cggm paper.

    Each case runs on a fresh model after the previous one is freed; the peak is counted from the
    state after building (model, aux heads and batch resident), and reported beside it.
    """
    out: dict[str, dict[str, float]] = {}
    for label, method, settings in (
        ("bare (no aux heads)", "bare", {}),
        ("joint", "joint", {}),
        ("cggm[paper]", "cggm", {"variant": "paper"}),
    ):
        torch.cuda.empty_cache()
        st = make_stepper(wl, device, method, settings, NO_LOG)
        torch.cuda.synchronize(device)
        resident = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(steps):
            st.step_batch(wl.batch)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        out[label] = {"resident_mib": resident / 2**20, "peak_mib": peak / 2**20}
        del st
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--model",
        default="mlp",
        choices=sorted(SIZES),
        help="mlp | transformer (synthetic_seq) | segnet (synthetic_seg)",
    )
    sizes = "; ".join(f"{k}: {', '.join(v)}" for k, v in SIZES.items())
    ap.add_argument("--size", help=f"workload size (default: the first) per model: {sizes}")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=50, help="steps per timed window (a multiple of 50 times probe@50)")
    ap.add_argument("--warmup", type=int, default=5, help="steps per variant before timing")
    ap.add_argument("--batch", type=int, help=f"batch size (default {DEFAULT_BATCH})")
    ap.add_argument("--width", type=int, help="mlp only: encoder input and hidden width (default 512)")
    ap.add_argument("--flops", action="store_true", help="print the FLOP share of encoders, fusion + head, aux heads")
    ap.add_argument("--no-bare", action="store_true", help="do not time the step without aux heads")
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    device = torch.device(args.device)
    batch = args.batch or DEFAULT_BATCH[args.model]
    if args.width is not None:
        if args.model != "mlp":
            raise SystemExit("--width is for --model mlp; the other models take --size")
        SIZES["mlp"]["default"]["width"] = args.width
    wl = workload(args.model, args.size, batch, device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (1 thread)"
    result: dict[str, Any] = {"device": card, "workload": wl.describe(), "batch": batch}
    print(f"device: {card}; {wl.describe()}")
    if args.flops:
        shares = flop_shares(wl, device)
        result["flops"] = shares
        print(
            f"joint step: {shares['total_gflop']:.2f} GFLOP; encoders {shares['encoders']:.1%}, "
            f"fusion+head {shares['fusion+head']:.1%}, aux heads {shares['aux heads']:.1%} "
            f"(parts sum to {shares['parts/total']:.3f} of the whole step)"
        )

    plan = variants(args.steps)
    if not args.no_bare:
        plan.insert(1, ("bare (no aux heads)", "bare", {}, NO_LOG))
    steppers: dict[str, Steps] = {}
    for label, method, settings, log_every in plan:
        st = make_stepper(wl, device, method, settings, log_every)
        for _ in range(args.warmup):  # allocator, kernels, Adam state
            st.step_batch(wl.batch)
        steppers[label] = st
    best = time_round_robin(steppers, wl.batch, device, args.repeats, args.steps)
    base = best["joint"]
    print(f"{args.repeats} interleaved repeats x {args.steps} steps; min ms/step (CPU time on cpu, wall time on cuda)")
    print("| variant | ms/step | ratio to joint |\n|---|---|---|")
    for k, v in best.items():
        print(f"| {k} | {v * 1e3:.2f} | {v / base:.3f} |")
    # A logging step costs what a probe@1 step costs and the others what the bare method's do, so
    # the overhead at K is (t@1 / t − 1) / K; measured directly too when the windows allow it.
    for name, ref in (("joint", "joint"), ("cggm[paper]", "cggm[paper]")):
        derived = (best[f"{name}+probe@1"] / best[ref] - 1) / PROBE_EVERY
        line = f"probe overhead at --log-every {PROBE_EVERY} ({name}): {derived * 100:+.2f}% from the probe@1 cost"
        measured = best.get(f"{name}+probe@{PROBE_EVERY}")
        if measured is not None:
            line += f"; measured {(measured / best[ref] - 1) * 100:+.1f}%"
        print(line)
    result["ms_per_step"] = {k: v * 1e3 for k, v in best.items()}
    if device.type == "cuda":
        del steppers, st  # free the timed models before measuring peaks on fresh ones
        mem = cuda_peak_memory(wl, device)
        result["cuda_memory"] = mem
        print("| step | resident MiB | peak MiB |\n|---|---|---|")
        for k, v in mem.items():
            print(f"| {k} | {v['resident_mib']:.1f} | {v['peak_mib']:.1f} |")
        bare = mem["bare (no aux heads)"]["peak_mib"]
        print(
            f"aux heads add {mem['joint']['peak_mib'] - bare:+.1f} MiB of peak (joint), cggm paper {mem['cggm[paper]']['peak_mib'] - bare:+.1f} MiB"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
