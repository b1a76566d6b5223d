"""The example plugin (examples/cggm-plugin-example), installed with pip into a folder of its own
and seen through PYTHONPATH, as an installed package's entry points are: `cggm train --list`,
training, the catalog of a real `cggm serve`, a job claimed only by the one of two real workers
that has the plugin. And broken plugins that never stop the backend.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..plugintools import EXAMPLE, pip_install, plugin_env, write_plugin_source
from .conftest import REPO, ServerProcess, wait_until

EXAMPLE_JOB: dict[str, Any] = {
    "dataset": "toy_rings",
    "method": "cggm",
    "epochs": 2,
    "ring_samples": 200,
    "probe_steps": 20,
}
SYNTHETIC_JOB: dict[str, Any] = {
    "dataset": "synthetic",
    "method": "cggm",
    "epochs": 2,
    "train_size": 128,
    "val_size": 32,
    "test_size": 32,
    "probe_steps": 20,
}


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed into a site folder of its own (the venv is left as it is)."""
    work = tmp_path_factory.mktemp("example-plugin")
    return pip_install(EXAMPLE, work / "site", work)


def cggm(*args: str, env: dict[str, str], timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cggm_core", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s
    )


def start_worker(server: str, name: str, log: Path, env: dict[str, str], spool: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "cggm_core", "worker", "--server", server, "--device", "cpu", "--name", name,
        "--no-progress", "--heartbeat-s", "0.5", "--poll-s", "0.2", "--spool-dir", str(spool),
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def test_the_installed_example_is_listed_and_trains(example_site: Path, tmp_path: Path) -> None:
    assert (example_site / "cggm_plugin_example-0.1.0.dist-info" / "entry_points.txt").is_file()
    listed = cggm("train", "--list", env=plugin_env(example_site))
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout
    assert re.search(r"^  toy_rings: Points on concentric rings.*\(default model: gated_mlp\)$", out, re.M)
    for setting in ("rings", "ring_samples", "ring_noise", "gated_hidden", "gated_feat"):
        assert re.search(rf"^    {setting} ", out, re.M), setting
    assert re.search(r"^  gated_mlp: a gated \(GLU\) MLP encoder", out, re.M)
    assert "  dataset toy_rings: from cggm-plugin-example 0.1.0" in out
    assert listed.stderr == ""  # a plugin that follows the rules loads without a word
    # Without the folder on the path (the venv itself), and with CGGM_NO_PLUGINS: not there.
    for env in (plugin_env(), plugin_env(example_site, CGGM_NO_PLUGINS="1")):
        assert "toy_rings" not in cggm("train", "--list", env=env).stdout
    trained = cggm(
        "train", "--dataset", "toy_rings", "--method", "cggm", "--epochs", "1", "--set", "ring_samples=200",
        "--set", "probe_steps=20", "--no-progress", "--out", str(tmp_path / "run"), env=plugin_env(example_site),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.startswith("finished: test acc ") and "probe/acc/xy" in trained.stdout
    assert '"model": "gated_mlp"' in (tmp_path / "run" / "config.json").read_text()


PROBE = """
import sys
import backend.app
from cggm_core.config import catalog, resolve
names = [d["name"] for d in catalog()["datasets"]] + [m["name"] for m in catalog()["models"]]
resolve({"dataset": "toy_rings", "method": "cggm", "rings": 5})
print("toy_rings" in names, "gated_mlp" in names, "torch" in sys.modules)
"""


def test_the_backend_reads_the_plugin_without_torch(example_site: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=plugin_env(example_site),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "False"]


BAD_IMPORT = "import libfoo_not_installed\n"
TORCH_AT_IMPORT = """
import torch  # breaks the rule: the backend now loads torch
from cggm_core.models.registry import ModelSpec

class Torchy(ModelSpec):
    name = "torchy"
    help = "imports torch at module level"
    input_kinds = frozenset({"vector"})
"""
TAKES_A_NAME = """
from cggm_core.data.base import Dataset
from cggm_core.settings import Setting

class Mine(Dataset):
    name = "synthetic"
    help = "the name of a built-in"
    settings = []

class ChecksBadly(Dataset):
    name = "checks_badly"
    help = "a bug in its own check"
    settings = []

    @classmethod
    def check(cls, cfg):
        return cfg["no_such_setting"]

class TakesEpochs(Dataset):
    name = "takes_epochs"
    help = "a setting the trainer owns"
    settings = [Setting("epochs", "int", 3, "clashes", min=1, max=9)]
"""


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("broken-plugin")
    src = write_plugin_source(
        work / "src",
        "cggm_broken_plugin",
        {"bad": BAD_IMPORT, "torchy": TORCH_AT_IMPORT, "names": TAKES_A_NAME},
        {
            "cggm_monitor.datasets": {
                "needs_libfoo": "cggm_broken_plugin.bad:NeedsLibfoo",
                "synthetic": "cggm_broken_plugin.names:Mine",
                "takes_epochs": "cggm_broken_plugin.names:TakesEpochs",
                "checks_badly": "cggm_broken_plugin.names:ChecksBadly",
            },
            "cggm_monitor.models": {"torchy": "cggm_broken_plugin.torchy:Torchy"},
        },
    )
    return pip_install(src, work / "site", work)


def test_broken_plugins_never_stop_the_backend(
    broken_site: Path, example_site: Path, make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(env=plugin_env(broken_site, example_site))  # starts: /api/health answers
    with server.client() as api:
        cat = api.get("/api/catalog")
        assert cat.status_code == 200
        body = cat.json()
        datasets = {d["name"]: d for d in body["datasets"]}
        assert "toy_rings" in datasets and "needs_libfoo" not in datasets and "takes_epochs" not in datasets
        assert datasets["synthetic"]["help"].startswith("Generated on the fly")  # the built-in won
        assert "torchy" in {m["name"] for m in body["models"]}  # against the rule, but it works: loaded
        problems = {p["name"]: p for p in body["plugins"]["problems"]}
        assert set(problems) == {"needs_libfoo", "synthetic", "takes_epochs"}
        assert all(p["package"] == "cggm-broken-plugin" for p in problems.values())
        assert "ModuleNotFoundError: No module named 'libfoo_not_installed'" in problems["needs_libfoo"]["message"]
        assert "setting 'epochs' is declared by the trainer" in problems["takes_epochs"]["message"]
        # A job of a skipped plugin is refused like any unknown dataset: a 422 naming what is allowed.
        r = api.post("/api/runs", json={"config": {"dataset": "needs_libfoo", "method": "cggm"}})
        assert r.status_code == 422 and "unknown dataset 'needs_libfoo'" in r.text
        # A bug in a plugin's own code is a 422 naming the plugin, not a 500.
        r = api.post("/api/runs", json={"config": {"dataset": "checks_badly", "method": "cggm"}})
        assert r.status_code == 422, r.text
        (error,) = r.json()["detail"]
        assert error["loc"] == ["body", "config"]
        assert error["msg"].endswith(
            "dataset plugin 'checks_badly' (package cggm-broken-plugin) failed on this config: KeyError: 'no_such_setting'"
        ), error
    server.stop()
    log = (tmp_path / f"server-{server.port}-1.log").read_text()
    lines = [ln for ln in log.splitlines() if re.search(r"\b(dataset|model) plugin ", ln)]
    assert len(lines) == 4, lines  # one line per problem, and one for the plugin that imports torch
    for name in ("needs_libfoo", "synthetic", "takes_epochs"):
        (line,) = [ln for ln in lines if f"plugin {name!r}" in ln]
        assert "of package cggm-broken-plugin" in line and "is skipped" in line
    (torch_line,) = [ln for ln in lines if "torchy" in ln]
    assert "imported torch when the catalog loaded it" in torch_line
    assert "Traceback" not in log


@pytest.mark.slow
def test_a_plugin_job_goes_only_to_the_worker_that_has_the_plugin(
    example_site: Path,
    make_server: Callable[..., ServerProcess],
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    server = make_server(env=plugin_env(example_site))  # the backend has the plugin: it validates the jobs
    with_plugin, without = plugin_env(example_site), plugin_env()
    with server.client() as api:
        toy = [api.post("/api/runs", json={"config": {**EXAMPLE_JOB, "seed": s}}).json()["id"] for s in range(2)]
        assert api.get(f"/api/runs/{toy[0]}").json()["model"] == "gated_mlp"
        workers.append(start_worker(server.url, "plain", tmp_path / "plain.log", without, tmp_path / "spool"))

        def plain() -> dict[str, Any] | None:
            return next((w for w in api.get("/api/workers").json()["data"] if w["name"] == "plain"), None)

        def plain_polled_again() -> bool:
            first = plain()
            if first is None:
                return False
            time.sleep(1.0)  # about five polls at --poll-s 0.2 (a pause, not an assertion)
            return plain()["last_seen_at"] > first["last_seen_at"]  # type: ignore[index]

        # The plain worker has claimed (and been refused the plugin jobs) more than once.
        wait_until(plain_polled_again, 90, "the plain worker to poll for jobs")
        plain_worker = plain()
        assert plain_worker is not None
        assert "toy_rings" not in plain_worker["datasets"] and plain_worker["capabilities"]["plugins"] == []
        for run_id in toy:
            run = api.get(f"/api/runs/{run_id}").json()
            assert run["status"] == "queued", run
            assert run["waiting_reason"].startswith(
                "no connected worker has dataset 'toy_rings'; install the plugin package 'cggm-plugin-example' on a worker"
            ), run["waiting_reason"]
        builtin = api.post("/api/runs", json={"config": SYNTHETIC_JOB}).json()["id"]
        first_done = wait_until(
            lambda: (r := api.get(f"/api/runs/{builtin}").json())["status"] in ("finished", "failed") and r,
            120,
            "the plain worker to train the built-in job (it skips the older plugin jobs)",
        )
        assert first_done["status"] == "finished" and first_done["worker"] == "plain", first_done["error"]
        assert all(api.get(f"/api/runs/{r}").json()["status"] == "queued" for r in toy)

        workers.append(start_worker(server.url, "with-plugin", tmp_path / "with.log", with_plugin, tmp_path / "spool"))
        for run_id in toy:
            run = wait_until(
                lambda run_id=run_id: (
                    (r := api.get(f"/api/runs/{run_id}").json())["status"] in ("finished", "failed") and r
                ),
                180,
                f"plugin run {run_id} to end",
            )
            assert run["status"] == "finished", run["error"]
            assert run["worker"] == "with-plugin"
            assert run["summary"]["modalities"] == ["radius", "xy"]
            assert run["waiting_reason"] is None
        listed = {w["name"]: w for w in api.get("/api/workers").json()["data"]}
        assert listed["plain"]["connected"] and listed["with-plugin"]["connected"]
        refs = {(p["kind"], p["name"], p["package"]) for p in listed["with-plugin"]["capabilities"]["plugins"]}
        assert refs == {("dataset", "toy_rings", "cggm-plugin-example"), ("model", "gated_mlp", "cggm-plugin-example")}
    claims = (tmp_path / "plain.log").read_text()
    assert all(f"run {r}: claimed" not in claims for r in toy)
