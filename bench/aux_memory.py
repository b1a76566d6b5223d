"""Memory of the aux heads on the CPU: what they hold at rest, and what they add to a step's peak.

    python bench/aux_memory.py [--workloads transformer:official,segnet:default,...] [--json PATH]
    python bench/aux_memory.py --workloads transformer:official --set attn_dropout=0

`--set k=v` replaces a workload setting (numbers are read as numbers).

The paper reports +8–24 MB of GPU memory for the aux heads. With no GPU here, two things are
measured per workload of bench/workloads.py:

1. **At rest**: bytes of parameters, gradients and optimizer state (Adam: exp_avg, exp_avg_sq and
   the step counters) of the model and of the aux heads, read from the tensors after one step.
2. **Peak of one training step**, from torch.profiler's memory profile on the CPU
   (`profile_memory=True`; `torch.profiler._memory_profiler`, the data behind
   `export_memory_timeline`): every allocation and free of the step, each tensor categorised
   (parameter, optimizer state, input, activation, gradient, autograd detail, temporary); the
   peak of their running sum and its make-up. Three steps are compared, each on a fresh model
   after two warm-up steps: `bare` (no aux heads at all: bench/workloads.py BareStepper),
   `joint` (the aux heads run detached, as for every method) and `cggm paper` (plus its
   create_graph gradient of W_Ω). As a cross-check of the activation figure, the bytes autograd
   saves for backward during the step's forward are summed over distinct storages
   (`torch.autograd.graph.saved_tensors_hooks`).

tracemalloc cannot see these allocations (torch allocates outside Python's allocator), so it is
not used. CPU figures are not CUDA figures: CUDA's caching allocator rounds blocks up and keeps
freed blocks, and on CUDA the attention kernels (flash / memory-efficient, dropout included)
need not materialise the (T × T) attention matrices that the CPU's math path saves; on CUDA
`bench/step_time.py --device cuda` reports `torch.cuda.max_memory_allocated` for the same three
steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import BareStepper, Workload, workload

from cggm_core.step import Stepper

MIB = 2**20
DEFAULT = "transformer:official,transformer:encoder_heavy,segnet:default,segnet:encoder_heavy"
BATCH = {"transformer": 64, "segnet": 32, "mlp": 64}


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def optimizer_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(tensor_bytes(v) for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor))


def at_rest(wl: Workload) -> dict[str, dict[str, int]]:
    """Parameter, gradient and optimizer-state bytes of the model and of the aux heads after a step."""
    net = wl.build()
    st = Stepper(net, wl.task, "joint", {}, log_every=10**9, aux=wl.make_aux(net))
    st.step_batch(wl.batch)  # creates the gradients and Adam's state
    assert st.aux is not None and st.aux_optimizer is not None
    out = {}
    for name, module, opt in (("model", net, st.optimizer), ("aux heads", st.aux, st.aux_optimizer)):
        params = list(module.parameters())
        out[name] = {
            "params": sum(p.numel() for p in params),
            "param_bytes": sum(tensor_bytes(p) for p in params),
            "grad_bytes": sum(tensor_bytes(p.grad) for p in params if p.grad is not None),
            "optimizer_bytes": optimizer_bytes(opt),
        }
    return out


def make(wl: Workload, method: str) -> BareStepper | Stepper:
    net = wl.build()
    if method == "bare":
        return BareStepper(net, wl.task)
    settings = {"variant": "paper"} if method == "cggm" else {}
    return Stepper(net, wl.task, method, settings, log_every=10**9, aux=wl.make_aux(net))


def profiled_peak(wl: Workload, method: str) -> dict[str, Any]:
    """Peak bytes of one step (after two warm-up steps) and the categories at that moment."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import _CATEGORY_TO_INDEX, MemoryProfileTimeline

    st = make(wl, method)
    for _ in range(2):
        st.step_batch(wl.batch)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        st.step_batch(wl.batch)
    _times, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
    totals = [sum(row[1:]) for row in sizes]  # row[0] is unused by torch; one column per category
    i = max(range(len(totals)), key=totals.__getitem__)
    by_category = {
        ("uncategorised" if c is None else c.name.lower()): sizes[i][j + 1] for c, j in _CATEGORY_TO_INDEX.items()
    }
    return {
        "peak_bytes": totals[i],
        "at_peak": {k: v for k, v in by_category.items() if v},
        "start_bytes": totals[0],
        "saved_for_backward_bytes": saved_for_backward(wl, method),
    }


def saved_for_backward(wl: Workload, method: str) -> int:
    """Bytes of the distinct storages autograd saves for backward during one step's forward."""
    st = make(wl, method)
    st.step_batch(wl.batch)
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        st.step_batch(wl.batch)
    # Parameters are saved too (e.g. a linear layer's weight); they are no activation.
    params = {p.untyped_storage().data_ptr() for p in _all_params(st)}
    return sum(v for k, v in seen.items() if k not in params)


def _all_params(st: BareStepper | Stepper) -> list[torch.nn.Parameter]:
    if isinstance(st, BareStepper):
        return list(st.net.parameters())
    assert st.aux is not None
    return [*st.model.parameters(), *st.aux.parameters()]


def mib(b: float) -> str:
    return f"{b / MIB:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", default=DEFAULT, help="model:size,… (sizes in bench/workloads.py)")
    ap.add_argument("--batch", type=int, help=f"batch size (default per model: {BATCH})")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="k=v: replace a workload setting")
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.sets)}
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    for item in args.workloads.split(","):
        model, _, size = item.partition(":")
        batch = args.batch or BATCH[model]
        wl = workload(model, size or None, batch, overrides=overrides)
        rest = at_rest(wl)
        peaks = {m: profiled_peak(wl, m) for m in ("bare", "joint", "cggm")}
        results[item] = {"describe": wl.describe(), "batch": batch, "at_rest": rest, "peak": peaks}
        print(f"\n### {wl.describe()}, batch {batch}\n")
        print("| | params | param MiB | grad MiB | optimizer MiB | total MiB |\n|---|---|---|---|---|---|")
        for name, r in rest.items():
            total = r["param_bytes"] + r["grad_bytes"] + r["optimizer_bytes"]
            print(
                f"| {name} | {r['params']:,} | {mib(r['param_bytes'])} | {mib(r['grad_bytes'])} | "
                f"{mib(r['optimizer_bytes'])} | {mib(total)} |"
            )
        print("\n| step | peak MiB | of which activations MiB | saved for backward MiB | at peak (MiB) |")
        print("|---|---|---|---|---|")
        for m, p in peaks.items():
            parts = ", ".join(f"{k} {mib(v)}" for k, v in p["at_peak"].items())
            print(
                f"| {m} | {mib(p['peak_bytes'])} | {mib(p['at_peak'].get('activation', 0))} | "
                f"{mib(p['saved_for_backward_bytes'])} | {parts} |"
            )
        bare = peaks["bare"]["peak_bytes"]
        joint = peaks["joint"]["peak_bytes"]
        print(
            f"\naux heads add {mib(joint - bare)} MiB to the peak (joint; {joint / bare - 1:+.1%}); "
            f"cggm paper {mib(peaks['cggm']['peak_bytes'] - bare)} MiB"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
