"""The cost of streaming metrics on the training step: HttpSink on vs off.

    .venv/bin/python bench/backend_sink.py [--repeats 9] [--steps 200] [--json PATH]

The same model and batch as bench/step_time.py (two MLP encoders 512-512-512-128, batch 64, one
torch thread, `joint`, the cheapest method, so any overhead weighs most), stepped by
`cggm_core.step.Stepper` with `sink=None` or with an `HttpSink` posting to a real `cggm serve`
subprocess on 127.0.0.1 (fresh SQLite file). Variants at log_every=1 (the Trainer's default) and
log_every=50, timed round-robin in one process. Each window is `--steps` steps, then (sink
variants) `sink.flush()`, so that the sender thread's work never leaks into the next variant's
window. CPU time (`time.process_time`: the training thread plus the sink's sender thread) is read
after the flush, so it counts all the sink's work for those points; wall time is read before it,
over the steps alone (what training waits for). The minimum and the median over repeats are given, and the median of per-repeat on/off ratios
(adjacent windows, so that slow phases of the machine hit both). Last, the sink's CPU per logged
step is measured in isolation (log() + flush with no training), which divided by the step's CPU
time is a noise-free estimate of the overhead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend_common import create_external_run, machine_state, start_cggm

from cggm_core.http_sink import HttpSink
from cggm_core.models import build_mlp_net
from cggm_core.step import Stepper
from cggm_core.tasks import classification
from cggm_core.tracking import log_dict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--method", default="joint")
    ap.add_argument(
        "--iso-steps",
        type=int,
        default=4_000,
        help="logged steps for the isolated sink cost (below max_queue: no spooling)",
    )
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(machine_state(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="cggm-bench-sink-"))
    server = start_cggm(work / "sink.db", log_path=work / "serve.log")
    names, classes = ["a", "b"], 10
    torch.manual_seed(0)
    xs = {m: torch.randn(args.batch, args.width) for m in names}
    y = torch.randint(0, classes, (args.batch,))
    steppers: dict[str, Stepper] = {}
    sinks: dict[str, HttpSink] = {}
    try:
        with httpx.Client(timeout=30) as c:
            for log_every in (1, 50):
                for on in (False, True):
                    label = f"log_every={log_every}, sink {'on' if on else 'off'}"
                    sink = None
                    if on:
                        rid = create_external_run(c, server.url, f"sink-le{log_every}")
                        sink = HttpSink(server.url, rid, spool_path=work / f"spool-{rid}.jsonl")
                        sinks[label] = sink
                    torch.manual_seed(0)
                    net = build_mlp_net({m: args.width for m in names}, args.width, 128, 64, classes)
                    st = Stepper(net, classification(classes), args.method, {}, log_every=log_every, sink=sink)
                    for _ in range(5):  # warm-up: lazy aux heads, allocator, the sink's connection
                        st.step(xs, y)
                    if sink is not None:
                        sink.flush()
                    steppers[label] = st
        points_per_log = len(next(iter(steppers.values())).last)
        cpu: dict[str, list[float]] = {k: [] for k in steppers}
        wall: dict[str, list[float]] = {k: [] for k in steppers}
        for _ in range(args.repeats):
            for label, st in steppers.items():
                sink = sinks.get(label)
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(args.steps):
                    st.step(xs, y)
                w1 = time.perf_counter()
                if sink is not None:
                    sink.flush()
                cpu[label].append((time.process_time() - c0) / args.steps)
                wall[label].append((w1 - w0) / args.steps)
        # The sink's own CPU per logged step, isolated from training: log() the same 17-ish values
        # `--iso-steps` times and flush; process time covers log(), the sender thread and httpx.
        with httpx.Client(timeout=30) as c:
            rid = create_external_run(c, server.url, "sink-isolated")
        iso_sink = HttpSink(server.url, rid, spool_path=work / "spool-iso.jsonl")
        values = dict(next(iter(steppers.values())).last)
        log_dict(iso_sink, values, 0)
        iso_sink.flush()
        c0 = time.process_time()
        for step in range(1, args.iso_steps + 1):
            log_dict(iso_sink, values, step)
        iso_sink.flush()
        iso_cpu = (time.process_time() - c0) / args.iso_steps
        sinks["isolated"] = iso_sink
        delivered = {}
        for label, sink in sinks.items():
            sink.close()
            delivered[label] = {"accepted": sink.accepted, "spooled": sink.spooled, "rejected": sink.rejected}
    finally:
        server.stop()

    out: dict[str, Any] = {"machine": machine_state(), "args": vars(args), "points_per_logging_step": points_per_log}
    print(
        f"{args.method}, batch {args.batch}, encoders {args.width}-{args.width}-{args.width}-128, 1 torch thread; "
        f"{args.repeats} round-robin repeats x {args.steps} steps; {points_per_log} points per logging step"
    )
    print("| variant | CPU ms/step min | median | wall ms/step min | median |\n|---|---|---|---|---|")
    for label in steppers:
        print(
            f"| {label} | {min(cpu[label]) * 1e3:.2f} | {statistics.median(cpu[label]) * 1e3:.2f} | "
            f"{min(wall[label]) * 1e3:.2f} | {statistics.median(wall[label]) * 1e3:.2f} |"
        )
    out["cpu_ms"] = {k: [x * 1e3 for x in v] for k, v in cpu.items()}
    out["wall_ms"] = {k: [x * 1e3 for x in v] for k, v in wall.items()}
    out["overhead"] = {}
    for log_every in (1, 50):
        off, on = f"log_every={log_every}, sink off", f"log_every={log_every}, sink on"
        o = {
            "cpu_min": min(cpu[on]) / min(cpu[off]) - 1,
            "cpu_median": statistics.median(cpu[on]) / statistics.median(cpu[off]) - 1,
            "wall_min": min(wall[on]) / min(wall[off]) - 1,
            "wall_median": statistics.median(wall[on]) / statistics.median(wall[off]) - 1,
        }
        o["cpu_paired_median"] = statistics.median(a / b for a, b in zip(cpu[on], cpu[off], strict=True)) - 1
        o["wall_paired_median"] = statistics.median(a / b for a, b in zip(wall[on], wall[off], strict=True)) - 1
        o["isolated_estimate"] = iso_cpu / log_every / min(cpu[off])
        out["overhead"][log_every] = o
        print(
            f"sink overhead at log_every={log_every}: CPU {o['cpu_min'] * 100:+.1f}% (min) "
            f"{o['cpu_median'] * 100:+.1f}% (median); wall {o['wall_min'] * 100:+.1f}% (min) "
            f"{o['wall_median'] * 100:+.1f}% (median); paired per repeat: CPU {o['cpu_paired_median'] * 100:+.1f}%, "
            f"wall {o['wall_paired_median'] * 100:+.1f}%; isolated sink CPU / step CPU: "
            f"{o['isolated_estimate'] * 100:+.2f}%"
        )
    out["isolated_sink_cpu_us_per_logged_step"] = iso_cpu * 1e6
    print(
        f"isolated: the sink costs {iso_cpu * 1e6:.0f} us of CPU per logged step of {points_per_log} points "
        f"({iso_cpu / points_per_log * 1e6:.1f} us per point; log() + sender thread + HTTP client)"
    )
    out["delivered"] = delivered
    print(f"delivered: {delivered}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
