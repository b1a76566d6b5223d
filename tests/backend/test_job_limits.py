"""Jobs that cannot run are refused when they are queued, with the reason (issue 8, item 5).

A job whose data would not fit in memory is refused with the dataset's own estimate; a method
setting that depends on the data (unimodal's `modality`) is checked against the dataset's
modality names then, not after a worker has claimed the job and loaded the data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import numpy as np
import pytest

from cggm_core.config import resolve
from cggm_core.data import DATASETS, mfeat

from .conftest import REPO, TINY_JOB

HUGE = {
    "dataset": "synthetic",
    "method": "cggm",
    "train_size": 1_000_000,
    "dim": 4096,
    "modalities": 8,
    "strengths": "3",
}


def test_a_job_whose_data_cannot_fit_is_refused_with_the_estimate(api: httpx.Client) -> None:
    r = api.post("/api/runs", json={"config": HUGE})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "config"]
    assert "GiB of memory" in detail["msg"] and "CGGM_MAX_JOB_DATA_BYTES" in detail["msg"], detail
    estimate = DATASETS["synthetic"].estimate_bytes(resolve(HUGE).data)
    assert f"{estimate / 2**30:.1f} GiB" in detail["msg"]
    assert estimate > 131e9  # at least the float32 splits alone (1.0018e6 x 4096 x 8 x 4 bytes)
    assert api.post("/api/runs", json={"config": TINY_JOB}).status_code == 201
    # External runs are the user's own process: their config is not a job to size.
    assert api.post("/api/runs", json={"config": HUGE, "external": True}).status_code == 201


def test_the_memory_limit_is_a_server_setting(make_server) -> None:  # type: ignore[no-untyped-def]
    medium = {**TINY_JOB, "train_size": 200_000, "dim": 64}  # about 0.7 GiB
    with make_server(env={"CGGM_MAX_JOB_DATA_BYTES": str(100 * 2**20)}).client() as api:
        r = api.post("/api/runs", json={"config": medium})
        assert r.status_code == 422 and "above the limit of 0.1 GiB" in r.text, r.text
        assert api.post("/api/runs", json={"config": TINY_JOB}).status_code == 201


def test_no_limit_when_the_setting_is_zero(make_server) -> None:  # type: ignore[no-untyped-def]
    with make_server(env={"CGGM_MAX_JOB_DATA_BYTES": "0"}).client() as api:
        assert api.post("/api/runs", json={"config": HUGE}).status_code == 201


@pytest.mark.parametrize(
    ("config", "ok"),
    [
        ({"dataset": "synthetic", "modalities": 3, "strengths": "3", "modality": "m2"}, True),
        ({"dataset": "synthetic", "modalities": 3, "strengths": "3", "modality": "m3"}, False),
        ({"dataset": "synthetic", "modality": "audio"}, False),
        ({"dataset": "mfeat", "views": "kar,mor", "modality": "mor"}, True),
        ({"dataset": "mfeat", "views": "kar,mor", "modality": "pix"}, False),
    ],
)
def test_dataset_dependent_method_settings_are_checked_when_queued(
    api: httpx.Client, config: dict[str, Any], ok: bool
) -> None:
    r = api.post("/api/runs", json={"config": {**config, "method": "unimodal"}})
    if ok:
        assert r.status_code == 201, r.text
        return
    assert r.status_code == 422, r.text
    msg = r.json()["detail"][0]["msg"]
    assert "'modality'" in msg and "not a modality of this dataset" in msg, msg
    data_only = {k: v for k, v in config.items() if k != "modality"}
    names = DATASETS[config["dataset"]].modality_names(resolve({**data_only, "method": "joint"}).data)
    assert f"allowed: {', '.join(names)}" in msg


def test_modality_names_are_what_loading_gives() -> None:
    for raw in (
        {"dataset": "synthetic", "method": "joint", "modalities": 4, **_small()},
        {"dataset": "mfeat", "method": "joint", "views": "pix,fou,zer"},
    ):
        job = resolve(raw)
        ds = DATASETS[job.dataset]
        assert ds.modality_names(job.data) == ds.load(job.data, 0).modalities


def test_mfeat_view_sizes_match_the_files() -> None:
    for view, dim in mfeat.VIEW_DIMS.items():
        features, labels = mfeat.read_view(view)
        assert features.shape == (2000, dim) and labels.shape == (2000,), view


_MEASURE = """
import json, sys
import numpy, torch  # imported before the baseline: only the data counts
from cggm_core.config import resolve
from cggm_core.data import DATASETS


def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024


job = resolve(json.loads(sys.argv[1]))
ds = DATASETS[job.dataset]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the high-water mark: the peak below is this load's, not the imports'
before = status_kb("VmRSS")
data = ds.load(job.data, 0)
print(json.dumps({"estimate": ds.estimate_bytes(job.data), "used": status_kb("VmHWM") - before}))
"""


def _small() -> dict[str, Any]:
    return {"train_size": 64, "val_size": 16, "test_size": 16, "strengths": "3"}


@pytest.mark.parametrize(
    "config",
    [
        {
            "dataset": "synthetic",
            "method": "joint",
            "train_size": 10_000,
            "dim": 256,
            "modalities": 4,
            "strengths": "3",
        },
        {
            "dataset": "synthetic",
            "method": "joint",
            "task": "regression",
            "train_size": 10_000,
            "dim": 256,
            "modalities": 4,
            "strengths": "3",
        },
        {"dataset": "synthetic", "method": "joint", "train_size": 20_000, "dim": 128},
    ],
    ids=["classification", "regression", "two-modalities"],
)
def test_the_estimate_bounds_what_loading_really_takes(config: dict[str, Any]) -> None:
    # A fresh interpreter, so that the high-water mark of its memory is this load's (~200 MB here).
    # glibc's malloc would otherwise keep some freed 20 MB arrays on its heap (its mmap threshold
    # grows after each free), which makes the high-water mark vary by 2x from run to run; with a
    # fixed threshold every large array is its own mapping, and the mark is the live peak.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    r = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    ratio = figures["used"] / figures["estimate"]
    print(f"estimate {figures['estimate'] / 2**20:.0f} MiB, measured peak {figures['used'] / 2**20:.0f} MiB")
    assert 0.5 <= ratio <= 1.05, figures  # measured 0.7-1.0: an upper bound, not a wild one
    assert np.isfinite(ratio)
