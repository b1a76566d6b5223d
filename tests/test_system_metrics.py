"""A run's system metrics (cggm_core.system): GPU memory and utilisation per device, process memory.

This machine has no GPU: the CUDA collection is tested against a stand-in for `torch.cuda` (the
answers torch.cuda would give, in bytes and percent), and the CPU path for real, in a real run.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cggm_core import system
from cggm_core.config import catalog, resolve
from cggm_core.keys import family_of
from cggm_core.tracking import MemorySink
from cggm_core.trainer import Trainer
from dashboard.families import Families

MIB = 2**20


class FakeCuda:
    """Answers as torch.cuda would on a machine with two GPUs (bytes; utilisation in %)."""

    def __init__(self, utilization: Any = None) -> None:
        self._utilization = utilization

    def memory_allocated(self, i: int) -> int:
        return (100 + i) * MIB

    def memory_reserved(self, i: int) -> int:
        return (200 + i) * MIB

    def max_memory_allocated(self, i: int) -> int:
        return (300 + i) * MIB + MIB // 2

    def current_device(self) -> int:
        return 1

    def utilization(self, i: int) -> int:
        if isinstance(self._utilization, BaseException):
            raise self._utilization
        return int(self._utilization[i])


def test_gpu_memory_and_utilisation_per_device_in_mib_and_percent() -> None:
    got = system.gpu_metrics([0, 1], FakeCuda(utilization={0: 37, 1: 99}))
    assert got == {
        "system/gpu0/memory_allocated_mib": 100.0,
        "system/gpu0/memory_reserved_mib": 200.0,
        "system/gpu0/memory_peak_mib": 300.5,
        "system/gpu0/utilization_pct": 37.0,
        "system/gpu1/memory_allocated_mib": 101.0,
        "system/gpu1/memory_reserved_mib": 201.0,
        "system/gpu1/memory_peak_mib": 301.5,
        "system/gpu1/utilization_pct": 99.0,
    }


@pytest.mark.parametrize(
    "error",
    [ModuleNotFoundError("No module named 'pynvml'"), RuntimeError("NVML_ERROR_LIBRARY_NOT_FOUND")],
    ids=["no-pynvml", "nvml-fails"],
)
def test_utilisation_is_omitted_without_nvml_and_memory_still_reported(error: BaseException) -> None:
    got = system.gpu_metrics([0], FakeCuda(utilization=error))
    assert sorted(got) == [
        "system/gpu0/memory_allocated_mib",
        "system/gpu0/memory_peak_mib",
        "system/gpu0/memory_reserved_mib",
    ]


def test_a_cuda_run_reports_its_own_device() -> None:
    got = system.system_metrics(torch.device("cuda", 1), FakeCuda(utilization={1: 5}))
    assert got["system/gpu1/memory_allocated_mib"] == 101.0 and got["system/gpu1/utilization_pct"] == 5.0
    assert not any(k.startswith("system/gpu0/") for k in got)
    bare = system.system_metrics(torch.device("cuda"), FakeCuda(utilization={1: 5}))  # "cuda" = the current one
    assert "system/gpu1/memory_reserved_mib" in bare


def test_the_cpu_path_reports_process_memory_and_no_gpu() -> None:
    got = system.system_metrics(torch.device("cpu"))
    assert not any(k.startswith("system/gpu") for k in got)
    with open("/proc/self/status") as f:  # the kernel's own figure, read another way
        vm_rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    assert got["system/process/rss_mib"] == pytest.approx(vm_rss_kib / 1024, rel=0.1)
    assert got["system/process/rss_mib"] > 50  # torch alone is more than this


def test_the_sampler_is_throttled_by_wall_clock() -> None:
    now = [100.0]
    sampler = system.SystemSampler(torch.device("cpu"), every_s=10.0, clock=lambda: now[0])
    assert sampler.due()  # the first call samples
    now[0] = 105.0
    assert not sampler.due()
    now[0] = 110.0
    assert sampler.due()
    assert not system.SystemSampler(torch.device("cpu"), every_s=0.0).due()  # 0 = off


def test_a_cpu_run_logs_system_metrics_and_none_when_off() -> None:
    job = {"dataset": "synthetic", "method": "joint", "epochs": 1, "train_size": 64, "batch_size": 32}
    job |= {"linear_probe": False, "shapley": False}
    sink = MemorySink()
    trainer = Trainer(resolve({**job, "system_every_s": 1e-9}), device="cpu", sink=sink, progress=False)
    trainer.setup()
    trainer.fit()
    rss = sink.series("system/process/rss_mib")
    assert [s for s, _ in rss] == [1, 2]  # after each of the two steps (the interval is ~0)
    assert all(v > 50 for _, v in rss)
    assert not any(p.key.startswith("system/gpu") for p in sink.points)
    quiet = MemorySink()
    off = Trainer(resolve({**job, "system_every_s": 0}), device="cpu", sink=quiet, progress=False)
    off.setup()
    off.fit()
    assert not any(p.key.startswith("system/") for p in quiet.points)


KEYS = [
    "system/gpu0/memory_allocated_mib",
    "system/gpu3/memory_reserved_mib",
    "system/gpu7/memory_peak_mib",
    "system/gpu0/utilization_pct",
    "system/process/rss_mib",
]


def test_system_keys_belong_to_declared_families_in_core_and_dashboard() -> None:
    dash = Families(catalog())
    for key in KEYS:
        core = family_of(key)
        assert core is not None and core.family.source == "system", key
        assert dash.info(key).family.name == core.family.name, key
        assert dash.info(key).family.declared
    assert family_of("amp/grad_scale") is not None
    # Every GPU's memory in one panel (a curve per key), utilisation in another.
    groups = dict((f.name, ks) for f, ks in dash.group(KEYS))
    assert groups["system_gpu_memory"] == sorted(KEYS[:3])
    assert groups["system_gpu_util"] == ["system/gpu0/utilization_pct"]
    # On a run page the system panels come after the training ones (and the methods' own).
    page = [f.name for f, _ in dash.group([*KEYS, "acc/m0", "train/loss", "mla/loss/m0", "amp/grad_scale"])]
    assert page[:3] == ["acc", "losses", "mla_loss"] and set(page[3:]) == {
        "system_gpu_memory",
        "system_gpu_util",
        "system_rss",
        "amp_scale",
    }


def test_real_torch_cuda_utilization_answers_or_is_left_out() -> None:
    """The real call, with the `gpu` extra's NVML bindings installed: on a machine without the
    NVIDIA driver NVML cannot load, and utilisation is left out instead of failing the run."""
    got = system._utilization(torch.cuda, 0)
    if torch.cuda.is_available():
        assert got is not None and 0.0 <= got <= 100.0
    else:
        assert got is None
