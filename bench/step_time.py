"""Training-step time of every method as a ratio to `joint`, and the probe's overhead.

Same model, same batch, one process: methods are timed round-robin (repeats interleaved) so that
machine noise hits all of them alike. On the CPU the clock is this process's CPU time (one torch
thread), which other processes on the machine barely disturb, and the minimum over repeats is
reported (noise only ever adds time); on CUDA it is wall time after a synchronize. The model's
encoders dominate the FLOPs (as real encoders do), so the ratio reflects the method's own cost.

    python bench/step_time.py [--device cpu|cuda] [--repeats 7] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cggm_core.methods import METHODS
from cggm_core.models import build_mlp_net
from cggm_core.step import Stepper
from cggm_core.tasks import classification

NO_LOG = 10**9  # a log_every that never logs: the bare method


def variants() -> list[tuple[str, str, dict[str, object], int]]:
    out: list[tuple[str, str, dict[str, object], int]] = [("joint", "joint", {}, NO_LOG)]
    for v in ("paper", "reference", "stable"):
        out.append((f"cggm[{v}]", "cggm", {"variant": v}, NO_LOG))
    for name in METHODS:
        if name not in ("joint", "cggm", "unimodal"):
            out.append((name, name, {}, NO_LOG))
    out.append(("joint+probe@50", "joint", {}, 50))
    out.append(("cggm[paper]+probe@50", "cggm", {"variant": "paper"}, 50))
    out.append(("joint+probe@1", "joint", {}, 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=512, help="encoder input and hidden width")
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    device = torch.device(args.device)
    names = ["a", "b"]
    classes = 10
    torch.manual_seed(0)
    xs = {m: torch.randn(args.batch, args.width, device=device) for m in names}
    y = torch.randint(0, classes, (args.batch,), device=device)
    steppers = {}
    for label, method, settings, log_every in variants():
        torch.manual_seed(0)
        net = build_mlp_net({m: args.width for m in names}, args.width, 128, 64, classes).to(device)
        st = Stepper(net, classification(classes), method, settings, log_every=log_every)
        for _ in range(5):  # warm-up: lazy aux heads, allocator, kernels
            st.step(xs, y)
        steppers[label] = st
    times: dict[str, list[float]] = {k: [] for k in steppers}
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    for _ in range(args.repeats):
        for label, st in steppers.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = clock()
            for _ in range(args.steps):
                st.step(xs, y)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[label].append((clock() - t0) / args.steps)
    med = {k: min(v) for k, v in times.items()}
    base = med["joint"]
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (1 thread)"
    print(
        f"device: {card}; batch {args.batch}; encoders {args.width}-{args.width}-{args.width}-128; "
        f"{args.repeats} interleaved repeats x {args.steps} steps; min ms/step (CPU time on cpu, wall time on cuda)"
    )
    print("| variant | ms/step | ratio to joint |\n|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v * 1e3:.2f} | {v / base:.3f} |")
    probe50 = med["joint+probe@50"] / base - 1
    print(f"probe overhead at --log-every 50 (joint): {probe50 * 100:+.1f}%")
    print(
        f"probe overhead at --log-every 50 (cggm paper): {(med['cggm[paper]+probe@50'] / med['cggm[paper]'] - 1) * 100:+.1f}%"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": card, "ms_per_step": {k: v * 1e3 for k, v in med.items()}}, indent=2)
        )


if __name__ == "__main__":
    main()
