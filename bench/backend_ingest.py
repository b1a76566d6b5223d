"""Tracking backend: ingest throughput, read latency, memory and start-up, side by side with MLflow.

    .venv/bin/python bench/backend_ingest.py [--json bench/results/backend_ingest.json]

Our side: a real `cggm serve` subprocess on 127.0.0.1 (free port, fresh SQLite file). Writers are
processes, each with its own httpx client and its own run, posting batches of 1,000 points
(stdlib json encoding inside the timed loop, as HttpSink does); they start together (a barrier) and
throughput is all points / (last writer done - first writer started).

MLflow's side: `mlflow server` on a SQLite file, driven by bench/backend_mlflow_client.py under a
throwaway venv (default /tmp/mlflow-venv, created with `pip install mlflow` when missing), so our
.venv is never touched. If MLflow cannot be installed or started, the output says so.

Phases (one process run, so the ratios share the machine's state):
  start-up   spawn -> first 200 on /api/health, median of --starts fresh servers; RSS at rest
  ingest     1 writer: --keys x --steps; then --writers writers sharing the same total
  read       GET /api/runs/{id}/metrics?keys=k0 on a --steps series, median of --reads
  read+load  the same read while --writers writers each write --keys x --steps into their own run
  big        one key of --big-points steps (bounded by --big-max-s), then reads with max_points=1500
  memory     VmRSS of the server's process tree after all that ingest
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend_common import (
    ROOT,
    create_external_run,
    free_port,
    machine_state,
    median,
    rss_mb,
    start_cggm,
    stop_process,
    wait_http_ok,
)

MLFLOW_CLIENT = Path(__file__).resolve().parent / "backend_mlflow_client.py"


# -- our writers ------------------------------------------------------------------------------
def _writer(url: str, run_id: int, keys: int, steps: int, batch: int, max_s: float, barrier: Any, out: Any) -> None:
    body_url = f"{url}/api/runs/{run_id}/metrics"
    names = [f"k{k}" for k in range(keys)]
    headers = {"Content-Type": "application/json"}
    n = accepted = errors = 0
    with httpx.Client(timeout=60.0) as client:
        barrier.wait()
        t0 = time.perf_counter()
        pending: list[dict[str, Any]] = []
        now = time.time()
        for step in range(steps):
            for name in names:
                pending.append({"key": name, "step": step, "value": (step % 97) * 0.01, "time": now + step * 1e-3})
            if len(pending) >= batch or step == steps - 1:
                r = client.post(body_url, content=json.dumps({"points": pending}).encode(), headers=headers)
                if r.status_code == 200:
                    accepted += int(r.json()["accepted"])
                else:
                    errors += 1
                n += len(pending)
                pending = []
                if time.perf_counter() - t0 > max_s:
                    break
        out.put({"t0": t0, "t1": time.perf_counter(), "points": n, "accepted": accepted, "errors": errors})


class Writers:
    """N writer processes (spawned), each on its own run; they start together."""

    def __init__(self, url: str, run_ids: list[int], keys: int, steps: int, batch: int, max_s: float) -> None:
        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(len(run_ids) + 1)
        self.out = ctx.Queue()
        self.procs = [
            ctx.Process(target=_writer, args=(url, rid, keys, steps, batch, max_s, self.barrier, self.out))
            for rid in run_ids
        ]
        for p in self.procs:
            p.start()
        self.barrier.wait(timeout=120)  # every writer has its client; go
        self.results: list[dict[str, Any]] = []

    def any_done(self) -> bool:
        return any(not p.is_alive() for p in self.procs) or not self.out.empty()

    def join(self, timeout_s: float = 900) -> dict[str, Any]:
        self.results = [self.out.get(timeout=timeout_s) for _ in self.procs]
        for p in self.procs:
            p.join(timeout=30)
        points = sum(r["points"] for r in self.results)
        seconds = max(r["t1"] for r in self.results) - min(r["t0"] for r in self.results)
        return {
            "writers": len(self.procs),
            "points": points,
            "accepted": sum(r["accepted"] for r in self.results),
            "errors": sum(r["errors"] for r in self.results),
            "seconds": seconds,
            "points_per_s": points / seconds,
        }


def new_runs(url: str, n: int, label: str) -> list[int]:
    with httpx.Client(timeout=30) as c:
        return [create_external_run(c, url, f"{label}-{i}") for i in range(n)]


def ingest(url: str, writers: int, keys: int, steps: int, batch: int, max_s: float, label: str) -> dict[str, Any]:
    runs = new_runs(url, writers, label)
    res = Writers(url, runs, keys, steps // writers, batch, max_s).join()
    res["run_ids"] = runs
    return res


def time_reads(client: httpx.Client, url: str, n: int, expect: int | None, gap_s: float = 0.0) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(url)
        times.append(time.perf_counter() - t)
        r.raise_for_status()
        if expect is not None:
            got = len(next(iter(r.json()["series"].values()))["steps"])
            if got != expect:
                raise RuntimeError(f"read {got} points from {url}, expected {expect}")
        if gap_s:
            time.sleep(gap_s)
    return times


# -- MLflow ------------------------------------------------------------------------------------
def ensure_mlflow(venv: Path, install_timeout_s: float) -> tuple[Path | None, str]:
    """The venv's python, or None and why not."""
    py = venv / "bin" / "python"
    ok = [str(py), "-c", "import mlflow; print(mlflow.__version__)"]
    if py.exists() and subprocess.run(ok, capture_output=True, timeout=120).returncode == 0:
        return py, "reused"
    try:
        t0 = time.monotonic()
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "mlflow"],
            check=True,
            timeout=install_timeout_s,
            capture_output=True,
        )
        subprocess.run(ok, check=True, capture_output=True, timeout=120)
        return py, f"installed in {time.monotonic() - t0:.0f} s"
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        err = getattr(e, "stderr", b"") or b""
        return None, f"could not install mlflow: {e}; {err.decode(errors='replace')[-500:]}"


def run_mlflow(py: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    cmd = [str(py.parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}"]
    cmd += ["--default-artifact-root", str(work / "mlartifacts"), "--host", "127.0.0.1", "--port", str(port)]
    log = open(work / "mlflow-server.log", "ab")  # noqa: SIM115 (handed to the child)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=log, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        out["startup_s"] = wait_http_ok(f"{uri}/health", proc, args.mlflow_start_timeout_s) - t0
        time.sleep(2.0)
        out["rss_rest_mb"], out["procs_rest"] = rss_mb(proc.pid)

        def client(*a: str) -> dict[str, Any]:
            r = subprocess.run(
                [str(py), str(MLFLOW_CLIENT), *a, "--uri", uri], capture_output=True, timeout=900, cwd=work
            )
            if r.returncode != 0:
                raise RuntimeError(f"mlflow client {a}: {r.stderr.decode(errors='replace')[-800:]}")
            return json.loads(r.stdout.decode().strip().splitlines()[-1])

        common = ["--keys", str(args.keys), "--steps", str(args.mlflow_steps)]
        out["ingest_1"] = client("ingest", "--writers", "1", *common)
        print(f"mlflow 1 writer: {out['ingest_1']['points_per_s']:.0f} points/s", flush=True)
        out["ingest_n"] = client("ingest", "--writers", str(args.writers), *common)
        print(f"mlflow {args.writers} writers: {out['ingest_n']['points_per_s']:.0f} points/s", flush=True)
        out["read"] = client("read", "--steps", str(args.steps), "--reads", str(args.mlflow_reads))
        print(f"mlflow read of {args.steps} points: {out['read']['read_median_s'] * 1e3:.0f} ms", flush=True)
        out["rss_after_mb"], out["procs_after"] = rss_mb(proc.pid)
        out["version"] = out["read"]["mlflow_version"]
    finally:
        stop_process(proc)
        log.close()
    return out


# -- main --------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--reads", type=int, default=20)
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--big-points", type=int, default=1_000_000)
    ap.add_argument("--big-max-s", type=float, default=180.0, help="stop filling the big series after this long")
    ap.add_argument("--max-points", type=int, default=1500)
    ap.add_argument("--mlflow-venv", type=Path, default=Path("/tmp/mlflow-venv"))
    ap.add_argument("--mlflow-steps", type=int, default=5000, help="MLflow ingest: --keys x this many steps")
    ap.add_argument("--mlflow-reads", type=int, default=7)
    ap.add_argument("--mlflow-start-timeout-s", type=float, default=240.0)
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args()

    res: dict[str, Any] = {"machine": machine_state(), "args": vars(args) | {"mlflow_venv": str(args.mlflow_venv)}}
    print(res["machine"], flush=True)
    work = Path(tempfile.mkdtemp(prefix="cggm-bench-backend-"))
    t_all = time.monotonic()
    server = None
    try:
        # start-up: --starts fresh servers; the last one stays up for the rest
        starts, rss_rest = [], []
        for i in range(args.starts):
            s = start_cggm(work / f"start{i}.db", log_path=work / "serve.log")
            starts.append(s.startup_s)
            time.sleep(1.0)
            rss_rest.append(rss_mb(s.proc.pid)[0])
            if i < args.starts - 1:
                s.stop()
            else:
                server = s
        assert server is not None
        url = server.url
        res["startup_s"] = starts
        res["rss_rest_mb"] = rss_rest[-1]
        res["server_procs"] = rss_mb(server.proc.pid)[1]
        print(f"start-up {[round(x, 2) for x in starts]} s; RSS at rest {rss_rest[-1]:.0f} MB", flush=True)

        kw = {"keys": args.keys, "steps": args.steps, "batch": args.batch, "max_s": 600.0}
        res["ingest_1"] = ingest(url, 1, label="w1", **kw)
        print(f"ingest 1 writer: {res['ingest_1']['points_per_s']:.0f} points/s", flush=True)
        res["ingest_n"] = ingest(url, args.writers, label=f"w{args.writers}", **kw)
        print(f"ingest {args.writers} writers: {res['ingest_n']['points_per_s']:.0f} points/s", flush=True)

        run1 = res["ingest_1"]["run_ids"][0]
        read_url = f"{url}/api/runs/{run1}/metrics?keys=k0"
        with httpx.Client(timeout=60) as c:
            time_reads(c, read_url, 2, args.steps)  # warm-up
            t = time_reads(c, read_url, args.reads, args.steps)
            res["read"] = {"median_s": median(t), "min_s": min(t), "max_s": max(t), "n": len(t)}
            print(f"read {args.steps} points: median {median(t) * 1e3:.1f} ms", flush=True)

            # the same read while writers write (each writer: a full keys x steps run)
            runs = new_runs(url, args.writers, "load")
            w = Writers(url, runs, args.keys, args.steps, args.batch, 600.0)
            during: list[float] = []
            for _ in range(args.reads):
                if w.any_done():
                    break
                during += time_reads(c, read_url, 1, args.steps)
                time.sleep(0.1)  # a dashboard polls; it does not hammer
            load_ingest = w.join()
            res["read_under_load"] = {
                "median_s": median(during),
                "max_s": max(during) if during else None,
                "n": len(during),
                "ingest_meanwhile": load_ingest,
            }
            print(
                f"read under {args.writers} writers: median {median(during) * 1e3:.1f} ms over {len(during)} reads; "
                f"writers meanwhile {load_ingest['points_per_s']:.0f} points/s",
                flush=True,
            )

            # one big series, then downsampled reads of it
            big = ingest(url, 1, keys=1, steps=args.big_points, batch=args.batch, max_s=args.big_max_s, label="big")
            res["big_ingest"] = big
            big_url = f"{url}/api/runs/{big['run_ids'][0]}/metrics?keys=k0&max_points={args.max_points}"
            time_reads(c, big_url, 1, None)
            t = time_reads(c, big_url, args.reads, None)
            res["big_read"] = {"points": big["points"], "median_s": median(t), "min_s": min(t), "max_s": max(t)}
            print(
                f"big series: {big['points']} points at {big['points_per_s']:.0f} points/s; "
                f"read with max_points={args.max_points}: median {median(t) * 1e3:.1f} ms",
                flush=True,
            )
        res["rss_after_mb"], res["procs_after"] = rss_mb(server.proc.pid)
        db_files = list(work.glob(f"start{args.starts - 1}.db*"))
        res["db_mb"] = sum(f.stat().st_size for f in db_files) / 2**20
        print(f"RSS after ingest {res['rss_after_mb']:.0f} MB; SQLite files {res['db_mb']:.0f} MB", flush=True)
    finally:
        if server is not None:
            server.stop()

    if args.no_mlflow:
        res["mlflow"] = {"skipped": "--no-mlflow"}
    else:
        py, how = ensure_mlflow(args.mlflow_venv, install_timeout_s=900)
        print(f"mlflow venv: {how}", flush=True)
        if py is None:
            res["mlflow"] = {"skipped": how}
        else:
            try:
                res["mlflow"] = run_mlflow(py, work, args)
            except Exception as e:  # report, do not invent figures
                res["mlflow"] = {"skipped": f"MLflow run failed: {e!r}"}
    res["total_s"] = time.monotonic() - t_all
    res["load_end"] = "load average {:.2f} {:.2f} {:.2f} at the end".format(*os.getloadavg())
    report(res, args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def report(res: dict[str, Any], args: argparse.Namespace) -> None:
    ml = res["mlflow"]
    have = "skipped" not in ml
    print(f"\n{res['machine']}; {res['load_end']}; total {res['total_s']:.0f} s")
    if not have:
        print(f"MLflow: not measured ({ml['skipped']})")
    print("| measure | cggm | MLflow | ratio | goal |\n|---|---|---|---|---|")

    def row(name: str, ours: str, theirs: str, ratio: str, goal: str) -> None:
        print(f"| {name} | {ours} | {theirs} | {ratio} | {goal} |")

    for tag, label in (("ingest_1", "1 writer"), ("ingest_n", f"{args.writers} writers")):
        o = res[tag]["points_per_s"]
        t = ml[tag]["points_per_s"] if have else None
        row(
            f"ingest, {label} (points/s)",
            f"{o:,.0f}",
            f"{t:,.0f}" if t else "-",
            f"{o / t:.1f}x" if t else "-",
            ">= 20x MLflow",
        )
    o = res["read"]["median_s"]
    t = ml["read"]["read_median_s"] if have else None
    row(
        f"read {args.steps:,} points (median ms)",
        f"{o * 1e3:.1f}",
        f"{t * 1e3:.0f}" if t else "-",
        f"{t / o:.0f}x faster" if t else "-",
        "<= 50 ms",
    )
    rl = res["read_under_load"]
    row(
        f"same read under {args.writers} writers (median ms, n={rl['n']})",
        f"{rl['median_s'] * 1e3:.1f}",
        "-",
        "-",
        "<= 100 ms",
    )
    br = res["big_read"]
    row(
        f"read {br['points']:,} points, max_points={args.max_points} (ms)",
        f"{br['median_s'] * 1e3:.1f}",
        "-",
        "-",
        "<= 100 ms",
    )
    row(
        "start-up to first 200 (s)",
        f"{median(res['startup_s']):.2f}",
        f"{ml['startup_s']:.1f}" if have else "-",
        "-",
        "<= 5 s",
    )
    row(
        "RSS at rest (MB)",
        f"{res['rss_rest_mb']:.0f}",
        f"{ml['rss_rest_mb']:.0f} ({ml['procs_rest']} procs)" if have else "-",
        "-",
        "-",
    )
    row(
        "RSS after ingest (MB)",
        f"{res['rss_after_mb']:.0f}",
        f"{ml['rss_after_mb']:.0f} ({ml['procs_after']} procs)" if have else "-",
        "-",
        "<= 300 MB",
    )
    print(
        f"\ncggm: 1 writer {res['ingest_1']['points']:,} points in {res['ingest_1']['seconds']:.1f} s; "
        f"{args.writers} writers {res['ingest_n']['points']:,} in {res['ingest_n']['seconds']:.1f} s "
        f"(errors {res['ingest_1']['errors'] + res['ingest_n']['errors']}); "
        f"big series {res['big_ingest']['points']:,} at {res['big_ingest']['points_per_s']:,.0f} points/s; "
        f"writers during the loaded reads {res['read_under_load']['ingest_meanwhile']['points_per_s']:,.0f} points/s"
    )
    if have:
        print(
            f"MLflow {ml['version']}: {args.keys} keys x {args.mlflow_steps:,} steps per ingest run "
            f"({ml['ingest_1']['points']:,} points); 20k-series log_batch {ml['read']['ingest_points_per_s']:,.0f} points/s"
        )
    print(f"os: {os.uname().sysname} {os.uname().release}; python {sys.version.split()[0]}; root {ROOT}")


if __name__ == "__main__":
    main()
