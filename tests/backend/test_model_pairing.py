"""A job that pairs a model with data it cannot read is refused at POST, before any worker claims
it; the sequence dataset and the transformer are in the catalog, without torch in the backend."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from .conftest import REPO

MISMATCHES = [
    (
        {"dataset": "mfeat", "method": "cggm", "model": "transformer"},
        "model 'transformer' reads image, sequence, tokens inputs, but this dataset's modalities are vector",
    ),
    (
        {"dataset": "synthetic", "method": "joint", "model": "transformer"},
        "model 'transformer' reads image, sequence, tokens inputs, but this dataset's modalities are vector",
    ),
    (
        {"dataset": "synthetic_seq", "method": "cggm", "model": "mlp"},
        "model 'mlp' reads vector inputs, but this dataset's modalities are sequence",
    ),
    (
        {"dataset": "synthetic_seq", "method": "cggm", "d_model": 40, "heads": 3},
        "setting 'heads': 3 does not divide d_model=40",
    ),
]


def count_runs(api: httpx.Client) -> int:
    return int(api.get("/api/runs").json()["count"])


@pytest.mark.parametrize(("config", "message"), MISMATCHES)
def test_a_model_that_cannot_read_the_data_is_422_at_post(api: httpx.Client, config: dict, message: str) -> None:
    before = count_runs(api)
    r = api.post("/api/runs", json={"config": config})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "config"] and message in detail["msg"]
    assert "choose a model that reads them" in detail["msg"] or "heads" in detail["msg"]
    assert count_runs(api) == before  # nothing queued


def test_the_sequence_job_is_queued_with_its_default_model(api: httpx.Client) -> None:
    r = api.post("/api/runs", json={"config": {"dataset": "synthetic_seq", "method": "cggm", "task": "regression"}})
    assert r.status_code == 201, r.text
    catalog = api.get("/api/catalog").json()
    seq = next(d for d in catalog["datasets"] if d["name"] == "synthetic_seq")
    assert seq["default_model"] == "transformer" and seq["input_kinds"] == ["sequence"]
    model = next(m for m in catalog["models"] if m["name"] == "transformer")
    defaults = {s["name"]: s["default"] for s in model["settings"]}
    assert defaults["d_model"] == 40 and defaults["heads"] == 5 and defaults["enc_layers"] == 5
    assert model["input_kinds"] == ["image", "sequence", "tokens"]  # images and token ids through input adapters


PROBE = """
import sys
import backend.app
from cggm_core.config import catalog, resolve
catalog()
resolve({"dataset": "synthetic_seq", "method": "cggm", "task": "regression", "d_model": 16, "heads": 4})
try:
    resolve({"dataset": "mfeat", "method": "cggm", "model": "transformer"})
except ValueError:
    pass
print("torch" in sys.modules)
"""


def test_sequence_jobs_validate_without_torch() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
