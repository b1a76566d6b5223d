"""Workers say what they can run; the backend hands each only runs whose dataset and model it has
(SQLite and PostgreSQL, atomically), remembers them (GET /api/workers), and says of a queued run
that no connected worker can run why it waits (`waiting_reason`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.schemas.workers import WorkerCapabilities
from cggm_core.remote import BackendClient
from cggm_core.worker import capabilities

from .conftest import TINY_JOB, ServerProcess, wait_until

BUILTIN_DATASETS = sorted(
    ["mfeat", "synthetic", "synthetic_seg", "synthetic_seq", "mosi", "mosei", "iemocap", "food101", "brats"]
)
BUILTIN_MODELS = ["cnn", "mlp", "segnet", "transformer"]
JOBS: dict[str, dict[str, Any]] = {
    "synthetic": TINY_JOB,  # model mlp (the dataset's default)
    "mfeat": {"dataset": "mfeat", "method": "joint", "epochs": 1},  # mlp
    "synthetic_seq": {"dataset": "synthetic_seq", "method": "joint", "epochs": 1},  # transformer
}


def caps(datasets: list[str], models: list[str], **extra: Any) -> dict[str, Any]:
    return {"datasets": datasets, "models": models, **extra}


def claim(api: httpx.Client, worker: str, capabilities: dict[str, Any] | None = None) -> dict[str, Any] | None:
    body: dict[str, Any] = {"worker": worker}
    if capabilities is not None:
        body["capabilities"] = capabilities
    r = api.post("/api/workers/claim", json=body)
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def drain(api: httpx.Client) -> None:
    """Claim whatever earlier tests on this shared server left queued."""
    while claim(api, "drain") is not None:
        pass


def queue(api: httpx.Client, kind: str) -> int:
    r = api.post("/api/runs", json={"config": JOBS[kind]})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_a_claim_takes_the_oldest_run_the_worker_can_run(api: httpx.Client) -> None:
    drain(api)
    syn, mf, seq = queue(api, "synthetic"), queue(api, "mfeat"), queue(api, "synthetic_seq")
    assert [api.get(f"/api/runs/{i}").json()["model"] for i in (syn, mf, seq)] == ["mlp", "mlp", "transformer"]
    # Has mfeat and synthetic_seq, but only the mlp model: the older synthetic run is not for it.
    got = claim(api, "w-mfeat", caps(["mfeat", "synthetic_seq"], ["mlp"]))
    assert got is not None and got["id"] == mf and got["worker"] == "w-mfeat"
    assert claim(api, "w-mfeat", caps(["mfeat", "synthetic_seq"], ["mlp"])) is None  # seq needs a transformer
    assert claim(api, "w-nothing", caps([], [])) is None
    got = claim(api, "w-seq", caps(BUILTIN_DATASETS, ["transformer"]))
    assert got is not None and got["id"] == seq
    # A worker of an older version sends no capabilities: it runs the built-ins.
    got = claim(api, "w-old")
    assert got is not None and got["id"] == syn
    assert claim(api, "w-old") is None


def test_concurrent_claims_with_capabilities_take_each_run_once_by_a_capable_worker(
    api: httpx.Client, store_server: ServerProcess
) -> None:
    drain(api)
    queued = {queue(api, kind): kind for _ in range(6) for kind in ("synthetic", "mfeat")}
    claimed: list[tuple[int, str]] = []
    errors: list[str] = []
    lock = threading.Lock()
    abilities = {
        "only-syn-0": ["synthetic"],
        "only-syn-1": ["synthetic"],
        "only-mf-0": ["mfeat"],
        "only-mf-1": ["mfeat"],
    }

    def claimer(name: str) -> None:
        with store_server.client() as c:
            while True:
                r = c.post("/api/workers/claim", json={"worker": name, "capabilities": caps(abilities[name], ["mlp"])})
                if r.status_code == 204:
                    return
                if r.status_code != 200:
                    errors.append(r.text)
                    return
                with lock:
                    claimed.append((r.json()["id"], name))

    threads = [threading.Thread(target=claimer, args=(name,)) for name in abilities]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(i for i, _ in claimed) == sorted(queued)  # each exactly once
    for run_id, name in claimed:
        assert queued[run_id] in abilities[name], (run_id, queued[run_id], name)


def test_workers_are_remembered_with_what_they_can_run(api: httpx.Client) -> None:
    gpu = {"name": "cuda:0", "kind": "cuda", "description": "NVIDIA H200", "memory_bytes": 150_000_000_000}
    reported = caps(
        ["synthetic", "toy_rings"],
        ["mlp", "gated_mlp"],
        device="cuda:0",
        devices=[{"name": "cpu", "kind": "cpu"}, gpu],
        plugins=[{"kind": "dataset", "name": "toy_rings", "package": "cggm-plugin-example", "version": "0.1.0"}],
        versions={"cggm_monitor": "0.1.0", "torch": "2.13.0"},
        a_field_of_a_newer_version={"ignored": True},
    )
    before = time.time()
    claim(api, "gpu-box-7", reported)
    claim(api, "old-box-7")
    listed = {w["name"]: w for w in api.get("/api/workers").json()["data"]}
    new, old = listed["gpu-box-7"], listed["old-box-7"]
    assert new["connected"] and before - 1 <= new["last_seen_at"] <= time.time() + 1
    assert new["datasets"] == ["synthetic", "toy_rings"] and new["models"] == ["gated_mlp", "mlp"]
    assert new["capabilities"]["devices"][1] == gpu and new["capabilities"]["device"] == "cuda:0"
    assert new["capabilities"]["plugins"][0]["package"] == "cggm-plugin-example"
    assert "a_field_of_a_newer_version" not in new["capabilities"]
    assert old["capabilities"] is None
    assert old["datasets"] == BUILTIN_DATASETS and old["models"] == BUILTIN_MODELS
    # A later claim replaces what the worker said (it was upgraded, a plugin was installed).
    first_seen = new["first_seen_at"]
    claim(api, "gpu-box-7", caps(["mfeat"], ["mlp"]))
    again = next(w for w in api.get("/api/workers").json()["data"] if w["name"] == "gpu-box-7")
    assert again["datasets"] == ["mfeat"] and again["first_seen_at"] == first_seen
    assert again["last_seen_at"] >= new["last_seen_at"]


@pytest.mark.parametrize(
    ("capabilities", "loc"),
    [
        ({"datasets": "synthetic", "models": []}, ["body", "capabilities", "datasets"]),
        ({"models": ["mlp"]}, ["body", "capabilities", "datasets"]),
        ({"datasets": ["syn\x00thetic"], "models": []}, ["body", "capabilities", "datasets", 0]),
        ({"datasets": ["x" * 101], "models": []}, ["body", "capabilities", "datasets", 0]),
        ({"datasets": [], "models": [], "devices": [{"name": "cuda:0"}]}, ["body", "capabilities", "devices", 0, "kind"]),
        ({"datasets": [], "models": [], "devices": [{"name": "g", "kind": "cuda", "memory_bytes": -1}]},
         ["body", "capabilities", "devices", 0, "memory_bytes"]),
    ],
)  # fmt: skip
def test_malformed_capabilities_are_a_422_naming_the_field(
    api: httpx.Client, capabilities: dict[str, Any], loc: list[Any]
) -> None:
    r = api.post("/api/workers/claim", json={"worker": "w-bad", "capabilities": capabilities})
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["detail"]], r.json()


def test_a_queued_run_no_connected_worker_can_run_says_why(make_server: Callable[..., ServerProcess]) -> None:
    timeout_s = 8.0  # "connected" = seen within the heartbeat timeout; generous: the checks below run within it
    server = make_server(env={"CGGM_HEARTBEAT_TIMEOUT_S": str(timeout_s)})
    with server.client() as api:
        created = api.post("/api/runs", json={"config": JOBS["synthetic"]}).json()
        run_id = created["id"]
        nobody = "no worker is connected (none seen in the last 8 s); start one: cggm worker --server"
        assert created["waiting_reason"].startswith(nobody)

        def reason(same: bool = True) -> str | None:
            listed = next(r for r in api.get("/api/runs").json()["data"] if r["id"] == run_id)
            one = api.get(f"/api/runs/{run_id}").json()
            if same:  # the list and the run say the same (not while a worker's timeout may fall between them)
                assert listed["waiting_reason"] == one["waiting_reason"]
            return one["waiting_reason"]  # type: ignore[no-any-return]

        assert claim(api, "w-mfeat", caps(["mfeat"], ["mlp"])) is None
        assert reason() == (
            "no connected worker has dataset 'synthetic'; its workers are of an older version: upgrade one "
            "(connected: w-mfeat)"
        )
        assert claim(api, "w-seq", caps(["synthetic", "synthetic_seq"], ["transformer"])) is None
        assert reason() == (
            "no connected worker has both dataset 'synthetic' and model 'mlp'; install them on the same worker "
            "(connected: w-mfeat, w-seq)"
        )
        assert claim(api, "w-seq", caps(["synthetic_seq"], ["transformer"])) is None  # no longer has synthetic
        assert reason() == (
            "no connected worker has dataset 'synthetic'; its workers are of an older version: upgrade one "
            "(connected: w-mfeat, w-seq)"
        )
        # Once the workers fall silent for the timeout, nobody is connected.
        assert wait_until(lambda: (r := reason(same=False)) and r.startswith(nobody), 3 * timeout_s + 10, "nobody")
        assert (r := reason()) is not None and r.startswith(nobody)  # and the list agrees, once it has happened
        # A worker that has both: the reason goes (it would take the run at its next claim).
        assert claim(api, "w-none", caps(["synthetic"], ["cnn"])) is None
        assert reason() is not None and "model 'mlp'" in reason()  # type: ignore[operator]
        got = claim(api, "w-both", caps(["synthetic"], ["mlp"]))
        assert got is not None and got["id"] == run_id and got["waiting_reason"] is None
        assert api.get(f"/api/runs/{run_id}").json()["waiting_reason"] is None  # running: nothing to wait for


def test_heartbeats_keep_a_busy_worker_connected(make_server: Callable[..., ServerProcess]) -> None:
    timeout_s = 4.0
    server = make_server(env={"CGGM_HEARTBEAT_TIMEOUT_S": str(timeout_s)})
    with server.client() as api:
        busy = api.post("/api/runs", json={"config": JOBS["synthetic"]}).json()["id"]
        assert claim(api, "w-busy", caps(["synthetic"], ["mlp"]))["id"] == busy  # type: ignore[index]
        waiting = api.post("/api/runs", json={"config": JOBS["synthetic"]}).json()["id"]
        deadline = time.monotonic() + 2 * timeout_s  # past the timeout, beating as a training worker does
        while time.monotonic() < deadline:
            assert api.post(f"/api/runs/{busy}/heartbeat").json()["stop"] is False
            time.sleep(0.5)
        (worker,) = api.get("/api/workers").json()["data"]
        assert worker["name"] == "w-busy" and worker["connected"] and worker["running"] == [busy]
        # The second run waits for w-busy, which can run it: no reason to show.
        assert api.get(f"/api/runs/{waiting}").json()["waiting_reason"] is None


def test_the_workers_report_passes_the_backends_schema() -> None:
    report = capabilities("cpu")
    parsed = WorkerCapabilities.model_validate(json.loads(json.dumps(report)))  # strict, as on the wire
    assert parsed.datasets == BUILTIN_DATASETS and parsed.models == BUILTIN_MODELS
    assert parsed.device == "cpu" and parsed.devices[0].kind == "cpu"
    assert parsed.versions["cggm_monitor"] and parsed.versions["torch"].startswith("2.")


def test_a_worker_falls_back_to_plain_claims_with_a_backend_of_an_older_version() -> None:
    """A stand-in for a backend before capabilities (it forbids extra fields, as its ClaimRequest
    did): such a backend cannot run here from a fresh clone, so its answer is replayed."""
    bodies: list[dict[str, Any]] = []

    def old_backend(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "capabilities" in body:
            detail = [
                {"type": "extra_forbidden", "loc": ["body", "capabilities"], "msg": "Extra inputs are not permitted"}
            ]
            return httpx.Response(422, json={"detail": detail})
        return httpx.Response(204)

    client = BackendClient("http://old-backend")
    client.http = httpx.Client(base_url="http://old-backend", transport=httpx.MockTransport(old_backend))
    report = caps(["synthetic"], ["mlp"])
    assert client.claim("w", report) is None and client.legacy_claims
    assert client.claim("w", report) is None
    assert bodies == [{"worker": "w", "capabilities": report}, {"worker": "w"}, {"worker": "w"}]


def test_a_422_about_something_else_is_not_taken_for_an_older_backend() -> None:
    def strict_backend(request: httpx.Request) -> httpx.Response:
        detail = [{"type": "string_too_long", "loc": ["body", "worker"], "msg": "too long"}]
        return httpx.Response(422, json={"detail": detail})

    client = BackendClient("http://b")
    client.http = httpx.Client(base_url="http://b", transport=httpx.MockTransport(strict_backend))
    with pytest.raises(httpx.HTTPStatusError):
        client.claim("w", caps([], []))
    assert not client.legacy_claims


def test_workers_silent_for_a_week_are_forgotten(make_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    import sqlite3

    server = make_server()
    with server.client() as api:
        claim(api, "w-now")
        week_ago = time.time() - 7 * 86_400 - 60
        with sqlite3.connect(tmp_path / "cggm.db") as conn:
            conn.execute(
                "INSERT INTO workers (name, capabilities, first_seen_at, last_seen_at) VALUES (?, NULL, ?, ?)",
                ("w-gone", week_ago, week_ago),
            )
            conn.execute(
                "INSERT INTO workers (name, capabilities, first_seen_at, last_seen_at) VALUES (?, NULL, ?, ?)",
                ("w-days", week_ago, time.time() - 6 * 86_400),
            )
        assert {w["name"] for w in api.get("/api/workers").json()["data"]} == {"w-now", "w-gone", "w-days"}
    server.stop()
    server.start()  # a new process prunes at its first claim (then at most once an hour)
    with server.client() as api:
        claim(api, "w-now")
        listed = {w["name"]: w for w in api.get("/api/workers").json()["data"]}
        assert set(listed) == {"w-now", "w-days"} and not listed["w-days"]["connected"]


def test_gpus_are_reported_with_their_name_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: torch.cuda's answers are replaced by those of a machine with two (a mock, said so)."""
    import types

    import torch

    props = [types.SimpleNamespace(name="NVIDIA H200", total_memory=150_000_000_000)] * 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    report = capabilities("cuda:1")
    parsed = WorkerCapabilities.model_validate(json.loads(json.dumps(report)))
    assert [(d.name, d.kind, d.description, d.memory_bytes) for d in parsed.devices[1:]] == [
        ("cuda:0", "cuda", "NVIDIA H200", 150_000_000_000),
        ("cuda:1", "cuda", "NVIDIA H200", 150_000_000_000),
    ]
    assert parsed.device == "cuda:1"

    def broken(i: int) -> Any:
        raise RuntimeError("CUDA driver version is insufficient")

    monkeypatch.setattr(torch.cuda, "get_device_properties", broken)
    assert [d["name"] for d in capabilities("cpu")["devices"]] == ["cpu"]  # a broken driver: the CPU, and a warning
