"""System metrics of a training run: GPU memory and utilisation per device, the process's memory.

Keys (declared in cggm_core.keys, family `system_*`), as other trackers show them (W&B's
`system/gpu.0.memoryAllocated`, MLflow's `system/gpu_0_memory_usage_megabytes`), in our grammar:

    system/gpu<i>/memory_allocated_mib   torch's caching allocator: memory held by live tensors
    system/gpu<i>/memory_reserved_mib    … and what the allocator holds from the driver
    system/gpu<i>/memory_peak_mib        the peak of allocated since the run started
    system/gpu<i>/utilization_pct        the GPU's busy percentage over the last sample period (NVML);
                                         only with pynvml (`pip install nvidia-ml-py`, the `gpu` extra),
                                         omitted without it
    system/process/rss_mib               the training process's resident memory (Linux /proc)

`<i>` is the torch device index, as this process sees it (after CUDA_VISIBLE_DEVICES). Reading the
allocator's counters costs no device sync; NVML is a driver call. The Trainer samples every
`system_every_s` seconds (wall clock, checked after each step), not on every step.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
else:
    from ._lazy import torch

log = logging.getLogger("cggm_core.system")
MIB = 2**20


def gpu_metrics(devices: Iterable[int], cuda: Any = None) -> dict[str, float]:
    """Memory (MiB) and, where NVML answers, utilisation (%) of each CUDA device index in `devices`.

    `cuda` is `torch.cuda` (a stand-in in the tests, which have no GPU). Utilisation is left out,
    for that device, when NVML is missing or fails (`torch.cuda.utilization` raises then).
    """
    cuda = torch.cuda if cuda is None else cuda
    out: dict[str, float] = {}
    for i in devices:
        prefix = f"system/gpu{i}"
        out[f"{prefix}/memory_allocated_mib"] = cuda.memory_allocated(i) / MIB
        out[f"{prefix}/memory_reserved_mib"] = cuda.memory_reserved(i) / MIB
        out[f"{prefix}/memory_peak_mib"] = cuda.max_memory_allocated(i) / MIB
        util = _utilization(cuda, i)
        if util is not None:
            out[f"{prefix}/utilization_pct"] = util
    return out


_nvml_warned = False


def _utilization(cuda: Any, i: int) -> float | None:
    global _nvml_warned
    try:
        return float(cuda.utilization(i))
    except ModuleNotFoundError:  # no pynvml: torch.cuda.utilization needs it
        return None
    except Exception as e:  # NVML present but refusing (a container without the driver library, …)
        if not _nvml_warned:
            log.warning("GPU utilisation not logged: NVML said %s: %s", type(e).__name__, e)
            _nvml_warned = True
        return None


def process_rss_mib() -> float | None:
    """Resident memory of this process from /proc/self/statm (None where there is no /proc)."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / MIB


def system_metrics(device: torch.device, cuda: Any = None) -> dict[str, float]:
    """Everything for one sample: the run's CUDA device (none on a CPU run) and the process memory."""
    out: dict[str, float] = {}
    if device.type == "cuda":
        cuda = torch.cuda if cuda is None else cuda
        out.update(gpu_metrics([device.index if device.index is not None else cuda.current_device()], cuda))
    rss = process_rss_mib()
    if rss is not None:
        out["system/process/rss_mib"] = rss
    return out


class SystemSampler:
    """Samples `system_metrics` at most every `every_s` seconds (0 = never); the first call samples."""

    def __init__(self, device: torch.device, every_s: float, clock: Any = time.monotonic) -> None:
        self.device = device
        self.every_s = every_s
        self.clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        if self.every_s <= 0:
            return False
        now = self.clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        return True

    def sample(self) -> dict[str, float]:
        return system_metrics(self.device)
