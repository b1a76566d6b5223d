"""Training steps per second of one job on 1 and on N gloo processes, the same global batch.

    python bench/ddp.py [--model mlp|transformer|segnet] [--size NAME] [--batch 256] [--method joint]
                        [--procs 1,2] [--steps 30] [--repeats 3] [--device cpu]

Each measurement is a fresh process group (cggm_core/group.py, real processes; a group of 1 is
one process on the single-process path), every rank one torch thread. Every rank builds the
workload of bench/workloads.py with the *global* batch, warms up for 3 steps, then times `steps`
`Stepper.step_batch` calls (each rank on its slice; ε and the gradients all-reduced) between two
broadcasts; rank 0 reports the wall time. Group sizes are interleaved over the repeats, so that
machine noise hits them alike, and the best repeat is kept (noise only ever adds time). Wall time,
not CPU time: N processes share the machine's cores, which is the point of the measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workloads import params_of, workload

from cggm_core.distributed import from_env
from cggm_core.group import ProcessGroupJob
from cggm_core.step import Stepper

NO_LOG = 10**9  # never a logging step: the step as training runs it between logs
WARMUP = 3


def rank_main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    device = torch.device(args.device)
    if device.type == "cuda":  # each rank its own GPU
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    dist = from_env(device)
    wl = workload(args.model, args.size, args.batch, device)
    net = wl.build(device)
    stepper = Stepper(net, wl.task, args.method, {}, log_every=NO_LOG, aux=wl.make_aux(net), dist=dist)
    for _ in range(WARMUP):
        stepper.step_batch(wl.batch)
    dist.broadcast_flag(False)  # every rank starts the clock together
    start = time.perf_counter()
    for _ in range(args.steps):
        stepper.step_batch(wl.batch)
    dist.broadcast_flag(False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    if dist.is_main:
        record = {"elapsed_s": elapsed, "params": params_of(net), "describe": wl.describe()}
        Path(args.rank_out).write_text(json.dumps(record))
    dist.close()


def measure(args: argparse.Namespace, procs: int, folder: Path) -> dict[str, float]:
    out = folder / f"rank0-{procs}.json"
    argv = [sys.executable, __file__, "--rank-out", str(out), "--model", args.model, "--batch", str(args.batch)]
    argv += ["--method", args.method, "--steps", str(args.steps), "--device", args.device]
    if args.size:
        argv += ["--size", args.size]
    outcome = ProcessGroupJob(argv, procs).run()
    if not outcome.ok:
        raise SystemExit(f"{procs} process(es): {outcome.error}")
    record: dict[str, float] = json.loads(out.read_text())
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mlp", choices=["mlp", "transformer", "segnet"])
    p.add_argument("--size")
    p.add_argument("--batch", type=int, default=256, help="the global batch")
    p.add_argument("--method", default="joint")
    p.add_argument("--procs", default="1,2", help="group sizes to compare, e.g. 1,2")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rank-out", help=argparse.SUPPRESS)  # set for the ranks this script starts
    args = p.parse_args()
    if args.rank_out:
        rank_main(args)
        return
    sizes = [int(x) for x in args.procs.split(",")]
    best: dict[int, float] = {}
    describe = ""
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for n in sizes:
                record = measure(args, n, Path(tmp))
                rate = args.steps / float(record["elapsed_s"])
                best[n] = max(best.get(n, 0.0), rate)
                describe = str(record["describe"])
    print(f"{describe}, method {args.method}, global batch {args.batch}, {os.cpu_count()} cores, {args.device}")
    print(f"best of {args.repeats} repeats of {args.steps} steps (wall time)")
    base = best[sizes[0]]
    for n in sizes:
        print(f"{n} process(es): {best[n]:8.2f} steps/s   ×{best[n] / base:.2f} vs {sizes[0]}")


if __name__ == "__main__":
    main()
