"""One job over two real processes (gloo on the CPU): the same steps as one process, B the same on
every rank, resume, Stop reaching every rank, and a killed rank failing the run in bounded time."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from torch.testing import assert_close

from cggm_core.batch import Batch
from cggm_core.data.base import LoaderSplit, SourceSubset
from cggm_core.distributed import LOCAL, slice_bounds, slice_shares
from cggm_core.group import ProcessGroupJob
from cggm_core.tracking import read_jsonl
from cggm_core.worker import make_slots

from . import dist_steps
from .backend.conftest import TINY_JOB, ServerProcess, start_worker, wait_until

REPO = Path(__file__).resolve().parents[1]
CGGM = str(Path(sys.executable).with_name("cggm"))
GROUP_TIMEOUT_S = 300  # generous: the machine is shared; a hang still ends
# 251 samples in batches of 64: the last global batch of 59 splits 30/29.
BASE = ["--dataset", "synthetic", "--seed", "3", "--log-every", "1", "--device", "cpu", "--no-progress"]
BASE += ["--set", "train_size=251", "--set", "val_size=64", "--set", "test_size=64"]
# system/*: wall-clock sampled, so off
BASE += ["--set", "linear_probe=false", "--set", "shapley=false", "--set", "system_every_s=0"]
TRAIN = [*BASE, "--method", "cggm", "--set", "variant=paper"]


def test_slices_cover_the_batch_in_order() -> None:
    for n in (1, 2, 5, 59, 64):
        bounds = [slice_bounds(n, 2, r) for r in range(2)]
        assert bounds[0][0] == 0 and bounds[0][1] == bounds[1][0] and bounds[1][1] == n
        assert bounds[0][1] - bounds[0][0] - (bounds[1][1] - bounds[1][0]) in (0, 1)
    assert [slice_bounds(7, 3, r) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]


def test_one_process_is_left_as_it_is() -> None:
    batch = Batch({"a": torch.randn(5, 2)}, torch.arange(5))
    local, share = LOCAL.shard(batch)
    assert local is batch and share == 1.0 and LOCAL.is_main and not LOCAL.enabled
    x = torch.randn(3)
    assert LOCAL.mean(x, 1.0) is x and LOCAL.sum(x, 1.0) is x and LOCAL.broadcast_flag(True)


class Numbered:
    """A file-backed split's sample source, in memory: sample i is (x = i, label i % 3)."""

    def __len__(self) -> int:
        return 11

    def __getitem__(self, i: int) -> tuple[dict[str, Any], Any]:
        return {"a": torch.tensor([float(i)])}, i % 3


def test_a_file_backed_split_reads_only_each_ranks_slice() -> None:
    split = LoaderSplit(Numbered())
    whole = [b.xs["a"][:, 0].long().tolist() for b in split.batches(4, torch.Generator().manual_seed(5))]
    assert [len(b) for b in whole] == [4, 4, 3]
    parts = [
        [b.xs["a"][:, 0].long().tolist() for b in split.batches(4, torch.Generator().manual_seed(5), shard=(r, 3))]
        for r in range(3)
    ]
    shares = [slice_shares(11, 4, 3, r) for r in range(3)]
    assert shares == [[2 / 4, 2 / 4, 1 / 3], [1 / 4, 1 / 4, 1 / 3], [1 / 4, 1 / 4, 1 / 3]]
    for i, batch in enumerate(whole):  # the ranks' slices, in rank order, are the global batch
        assert [x for r in range(3) for x in parts[r][i]] == batch
    # 5 samples in batches of 4 over 3 ranks: the last batch (1 sample) leaves ranks 1 and 2 empty;
    # they read its sample again and weigh it 0.
    small = LoaderSplit(SourceSubset(Numbered(), [0, 1, 2, 3, 4]))
    last = [list(small.batches(4, None, shard=(r, 3)))[-1].xs["a"][:, 0].tolist() for r in range(3)]
    assert last == [[4.0], [4.0], [4.0]] and [slice_shares(5, 4, 3, r)[-1] for r in range(3)] == [1.0, 0.0, 0.0]


def test_worker_slots_share_out_the_gpus() -> None:
    assert [s.gpus for s in make_slots([0, 1, 2, 3], 2)] == [(0, 1), (2, 3)]
    assert [s.gpus for s in make_slots([3, 5], 1)] == [(3,), (5,)]
    assert [(s.procs, s.gpus) for s in make_slots(None, 2)] == [(2, None)]  # K gloo processes on the CPU
    assert make_slots(None, 1) == []  # no slots: the worker trains in its own process, as before
    for gpus, k, message in (([0, 1, 2], 2, "not a multiple of 2"), ([0, 0], 1, "distinct"), ([0], 0, ">= 1")):
        with pytest.raises(ValueError, match=message):
            make_slots(gpus, k)


def test_worker_refuses_gpus_it_does_not_have() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA GPUs")
    done = subprocess.run(
        [CGGM, "worker", "--gpus", "0,1", "--gpus-per-job", "2", "--server", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--gpus 0,1: this machine shows 0 CUDA GPU(s)" in done.stderr


# -- the Stepper of every method: 2 processes against 1 ------------------------------------------------
@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("dist_steps")
    group = ProcessGroupJob([sys.executable, "-m", "tests.dist_steps", str(out)], 2, grace_s=5.0)
    outcome = run_bounded(group)
    assert outcome.ok, outcome.error
    ranks = [torch.load(out / f"rank-{r}.pt", weights_only=False) for r in range(2)]
    return dist_steps.run(LOCAL), ranks


def run_bounded(group: ProcessGroupJob) -> Any:
    deadline = time.monotonic() + GROUP_TIMEOUT_S
    return group.run(should_stop=lambda: time.monotonic() > deadline)


@pytest.mark.slow
@pytest.mark.parametrize("case", [label for label, _, _ in dist_steps.CASES])
def test_two_processes_take_the_one_process_steps(
    two_and_one: tuple[dict[str, Any], list[dict[str, Any]]], case: str
) -> None:
    one, (rank0, rank1) = two_and_one
    steps0, steps1, steps_one = rank0[case]["values"], rank1[case]["values"], one[case]["values"]
    assert len(steps0) == len(steps1) == len(steps_one) == 7  # 3 + 4 batches, every step logged
    for step, (v0, v1, v_one) in enumerate(zip(steps0, steps1, steps_one, strict=True), start=1):
        # B (coef/<m>) and ε identical, bit for bit, on both ranks at every logged step.
        for key in v0:
            if key.startswith(("coef/", "acc/", "cggm/slope/")):
                assert v0[key] == v1[key] or (math.isnan(v0[key]) and math.isnan(v1[key])), (step, key)
        # Every logged value is the one process's (the global batch's), diagnostics included.
        assert list(v0) == list(v_one), (step, set(v0) ^ set(v_one))
        assert_close(
            torch.tensor(list(v0.values()), dtype=torch.float64),
            torch.tensor(list(v_one.values()), dtype=torch.float64),
            rtol=1e-4,
            atol=1e-5,
            equal_nan=True,
            msg=lambda m, step=step, keys=list(v0): f"step {step} ({keys}): {m}",
        )
    for part in ("model", "aux"):
        for name, value in one[case][part].items():
            assert torch.equal(rank0[case][part][name], rank1[case][part][name]), (part, name)
            assert_close(rank0[case][part][name], value, msg=lambda m, part=part, name=name: f"{part} {name}: {m}")


# -- cggm train --nproc-per-node 2, resumed, against one process ----------------------------------------
def cggm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CGGM, "train", *args], capture_output=True, text=True, timeout=GROUP_TIMEOUT_S, cwd=REPO)


@pytest.mark.slow
def test_train_on_two_processes_equals_one_and_resumes(tmp_path: Path) -> None:
    one = cggm(*TRAIN, "--epochs", "2", "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    first = cggm(*TRAIN, "--epochs", "1", "--out", str(tmp_path / "two"), "--nproc-per-node", "2")
    assert first.returncode == 0, first.stderr
    resumed = cggm(
        "--resume", str(tmp_path / "two" / "checkpoint.pt"), "--epochs", "2", "--nproc-per-node", "2", "--no-progress"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("finished: test acc") == 1  # rank 0 alone reports
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)["stepper"]
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)["stepper"]
    assert a["global_step"] == b["global_step"] == 8
    for part in ("model", "aux"):
        for name, value in a[part].items():
            assert_close(b[part][name], value, msg=lambda m, part=part, name=name: f"{part} {name}: {m}")
    # One metrics.jsonl, written by rank 0, with the one process's points (no rank logs twice).
    points_one = {(p.key, p.step): p.value for p in read_jsonl(tmp_path / "one" / "metrics.jsonl")}
    logged_two = read_jsonl(tmp_path / "two" / "metrics.jsonl")
    points_two = {(p.key, p.step): p.value for p in logged_two}
    assert len(logged_two) == len(points_two)  # no (key, step) twice
    assert points_one.keys() <= points_two.keys()
    # Besides: the test scores the first (1-epoch) invocation logged when it ended, as one process's would.
    assert {k for k in points_two.keys() - points_one.keys() if not (k[0].startswith("test/") and k[1] == 4)} == set()
    for key, value in points_one.items():
        assert math.isclose(points_two[key], value, rel_tol=1e-4, abs_tol=1e-5) or (
            math.isnan(value) and math.isnan(points_two[key])
        ), key
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 8


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gblending", "pmr"])
def test_methods_with_epoch_hooks_on_two_processes_equal_one(tmp_path: Path, method: str) -> None:
    """G-Blending's weights (estimated on every rank, rank 0's taken) and PMR's prototypes (rank 0's
    broadcast) at each epoch start; G-Blending's held-out part leaves 225 samples (last batch 33)."""
    args = [*BASE, "--method", method, *(["--set", "gblend_super_epoch=1"] if method == "gblending" else [])]
    for out, extra in (("one", []), ("two", ["--nproc-per-node", "2"])):
        done = cggm(*args, "--epochs", "2", "--out", str(tmp_path / out), *extra)
        assert done.returncode == 0, done.stderr
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    assert a["stepper"]["global_step"] == b["stepper"]["global_step"] > 0
    for part in ("model", "aux"):
        for name, value in a["stepper"][part].items():
            assert_close(b["stepper"][part][name], value, msg=lambda m, part=part, name=name: f"{part} {name}: {m}")
    # The weights / the prototypes. G-Blending's w ∝ G/O² divides small differences of losses, which
    # turns the runs' 1e-7 differences of weights into 3e-5 relative: a loose tolerance there.
    assert_close(b["stepper"]["method"], a["stepper"]["method"], rtol=1e-3, atol=1e-6)


# Variable-length sequences through the DataLoader (each rank reads and pads only its slice) and a
# small transformer. SGD: under Adam the attention key bias, whose true gradient is 0, takes ±lr steps
# on float noise of ~1e-10, which differs with the order of any sum (measured: 1e-4 apart, the rest 6e-8).
SEQ = ["--dataset", "synthetic_seq", "--method", "cggm", "--epochs", "2", "--log-every", "1", "--device", "cpu"]
SEQ += ["--no-progress", "--set", "optimizer=sgd", "--set", "lr=0.05", "--set", "dataloader=true"]
for setting in ("train_size=90", "val_size=16", "test_size=16", "batch_size=32", "d_model=8", "heads=2"):
    SEQ += ["--set", setting]
for setting in ("enc_layers", "fusion_layers", "aux_layers"):
    SEQ += ["--set", f"{setting}=1"]
for setting in ("attn_dropout", "relu_dropout", "embed_dropout", "res_dropout", "out_dropout"):
    SEQ += ["--set", f"{setting}=0"]
SEQ += ["--set", "linear_probe=false", "--set", "shapley=false"]


@pytest.mark.slow
def test_a_file_backed_transformer_run_on_two_processes_equals_one(tmp_path: Path) -> None:
    for out, extra in (("one", []), ("two", ["--nproc-per-node", "2"])):
        done = cggm(*SEQ, "--out", str(tmp_path / out), *extra)
        assert done.returncode == 0, done.stderr
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)["stepper"]
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)["stepper"]
    assert a["global_step"] == b["global_step"] == 6  # 90 = 32 + 32 + 26 per epoch
    for part in ("model", "aux"):
        for name, value in a[part].items():
            assert_close(b[part][name], value, msg=lambda m, part=part, name=name: f"{part} {name}: {m}")


# -- against a real backend: Stop reaches every rank; a killed rank fails the run ----------------------
def run_of(api: httpx.Client, run_id: int) -> dict[str, Any]:
    r = api.get(f"/api/runs/{run_id}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def has_points(api: httpx.Client, run_id: int) -> bool:
    r = api.get(f"/api/runs/{run_id}/metrics", params={"keys": "train/loss"})
    return r.status_code == 200 and bool(r.json().get("series", {}).get("train/loss", {}).get("steps"))


@pytest.mark.slow
def test_stop_reaches_every_rank_of_a_worker_job(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'cggm.db'}", tmp_path).start()
    worker = None
    try:
        with server.client() as api:
            r = api.post("/api/runs", json={"config": {**TINY_JOB, "epochs": 5000, "linear_probe": False}})
            assert r.status_code == 201, r.text
            run_id = int(r.json()["id"])
            log = tmp_path / "worker.log"
            worker = start_worker(server.url, log, "--once", "--procs-per-job", "2", "--spool-dir", str(tmp_path))
            wait_until(lambda: run_of(api, run_id)["status"] == "running" and has_points(api, run_id), 120, "points")
            assert api.post(f"/api/runs/{run_id}/stop").status_code in (200, 202)
            run = wait_until(
                lambda: (x := run_of(api, run_id))["status"] in ("stopped", "failed", "finished") and x, 120, "the end"
            )
            assert run["status"] == "stopped", run["error"]
            assert worker.wait(timeout=120) == 0
            # Rank 1 left its loop with rank 0: had it missed the stop, it would have waited in a
            # collective for a rank 0 that was gone, and failed.
            assert "ranks exited with codes [0, 0]" in log.read_text()
            assert run["summary"]["steps"] < 5000 * 4
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        server.stop()


def children_by_rank(parent: int) -> dict[int, int]:
    """pid of each rank started by `parent` (from /proc: the child's PPid and RANK)."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, StopIteration, ValueError):
            continue
        ranks = [e.split(b"=", 1)[1] for e in env if e.startswith(b"RANK=")]
        if ppid == parent and ranks:
            out[int(ranks[0])] = int(entry.name)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc (Linux)")
def test_a_killed_rank_fails_the_run_in_bounded_time(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'cggm.db'}", tmp_path).start()
    env = {**os.environ, "CGGM_SPOOL_DIR": str(tmp_path / "spool")}
    args = [*TRAIN, "--epochs", "5000", "--out", str(tmp_path / "out"), "--nproc-per-node", "2"]
    proc = subprocess.Popen(
        [CGGM, "train", *args, "--server", server.url, "--retry-s", "10"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "train.err").open("wb"),
    )
    try:
        with server.client() as api:
            run_id = wait_until(lambda: [r["id"] for r in api.get("/api/runs").json()["data"]], 120, "the run")[0]
            wait_until(lambda: has_points(api, run_id), 120, "the run's first points")
            ranks = wait_until(lambda: (c := children_by_rank(proc.pid)) and len(c) == 2 and c, 30, "both ranks")
            os.kill(ranks[1], signal.SIGKILL)
            killed = time.monotonic()
            assert proc.wait(timeout=120) == 1
            assert time.monotonic() - killed < 60, "the group took too long to fail"
            run = wait_until(lambda: (x := run_of(api, run_id))["status"] == "failed" and x, 30, "the run to fail")
            assert "rank 1 of 2 was killed by SIGKILL" in run["error"]
            assert "rank 1 of 2 was killed by SIGKILL" in (tmp_path / "train.err").read_text()
            assert not children_by_rank(proc.pid)  # rank 0 is gone too
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc (Linux)")
def test_ranks_whose_parent_is_killed_stop_instead_of_running_on(tmp_path: Path) -> None:
    args = [*TRAIN, "--epochs", "5000", "--out", str(tmp_path / "out"), "--nproc-per-node", "2"]
    proc = subprocess.Popen([CGGM, "train", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ranks: dict[int, int] = {}
    try:
        ranks = wait_until(lambda: (c := children_by_rank(proc.pid)) and len(c) == 2 and c, 120, "both ranks")
        wait_until(lambda: (tmp_path / "out" / "metrics.jsonl").exists(), 120, "the first points")
        proc.kill()
        proc.wait(timeout=30)

        def gone(pid: int) -> bool:
            try:
                return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                return True

        wait_until(lambda: all(gone(pid) for pid in ranks.values()), 120, "the orphaned ranks to stop")
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["status"] == "stopped" and summary["steps"] < 5000 * 4
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in ranks.values():  # orphans are no longer the parent's children: kill them by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
