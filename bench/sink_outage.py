"""A backend outage near the end of a `cggm train --server` run: points logged vs stored, final status.

Issue 8 measured a 71 s outage on main (2675e59): 2,338 of 17,496 points never stored, the run left
`running`. This starts `cggm serve` (SQLite file, a fixed free port), a `cggm train --server` run,
kills the backend once the run has stored `--at` of its steps, keeps it down `--outage-s`
seconds, starts it again on the same port and database, waits for the train process to exit and
compares the run's local metrics.jsonl (every point logged) with what the backend stored.

    .venv/bin/python bench/sink_outage.py --outage-s 71
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend_common import ROOT, free_port, machine_state, stop_process, wait_http_ok


def serve(port: int, db: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "cggm_core", "serve", "--port", str(port), "--db", f"sqlite:///{db}"]
    log_file = log.open("ab")
    proc = subprocess.Popen(
        [*cmd, "--log-level", "warning"], cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    wait_http_ok(f"http://127.0.0.1:{port}/api/health", proc, 60)
    return proc


def stored(client: httpx.Client, run_id: int) -> tuple[int, int]:
    """(points stored, highest train step stored)."""
    series = client.get(f"/api/runs/{run_id}/metrics").json()["series"]
    steps = series.get("train/loss", {}).get("steps", [])
    return sum(len(s["steps"]) for s in series.values()), max(steps, default=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outage-s", type=float, default=71.0)
    ap.add_argument("--epochs", type=int, default=16, help="synthetic, cggm, log_every 1: 32 steps per epoch")
    ap.add_argument("--at", type=float, default=0.8, help="kill the backend once this share of the steps is stored")
    args = ap.parse_args()
    print(machine_state(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="cggm-bench-outage-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    backend = serve(port, work / "cggm.db", work / "serve.log")
    out = work / "out"
    cmd = [sys.executable, "-m", "cggm_core", "train", "--dataset", "synthetic", "--method", "cggm"]
    cmd += ["--epochs", str(args.epochs), "--log-every", "1", "--out", str(out), "--no-progress", "--server", url]
    env = {**os.environ, "CGGM_SPOOL_DIR": str(work / "spool")}
    train_log = work / "train.log"
    train = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=train_log.open("wb"), stderr=subprocess.STDOUT)
    total_steps = args.epochs * 32
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            while not c.get("/api/runs").json()["data"]:
                time.sleep(0.2)
            run_id = c.get("/api/runs").json()["data"][0]["id"]
            while stored(c, run_id)[1] < args.at * total_steps:
                if train.poll() is not None:
                    raise SystemExit(f"the run ended before the outage; see {train_log}")
                time.sleep(0.1)
            before = stored(c, run_id)[0]
        backend.kill()  # the backend dies: its port stops answering
        backend.wait()
        down_at = time.monotonic()
        time.sleep(args.outage_s)
        ended_in_outage = (out / "summary.json").exists()
        backend = serve(port, work / "cggm.db", work / "serve.log")
        print(f"backend down {time.monotonic() - down_at:.1f} s (training ended during it: {ended_in_outage})")
        rc = train.wait(timeout=900)
        with httpx.Client(base_url=url, timeout=60) as c:
            points, _ = stored(c, run_id)
            run = c.get(f"/api/runs/{run_id}").json()
        logged = len((out / "metrics.jsonl").read_text().splitlines())
        print(
            f"cggm train exit code {rc}; stored before the outage {before:,}; logged {logged:,}, stored {points:,} "
            f"({logged - points:,} missing); run status {run['status']}"
        )
        delivery = (run.get("summary") or {}).get("delivery")
        if delivery:
            print(f"delivery report: {delivery}")
        left = sorted(p.name for p in (work / "spool").rglob("*") if p.is_file())
        print(f"files left in the spool folder: {left or 'none'}; logs in {work}")
    finally:
        if train.poll() is None:
            train.kill()
        stop_process(backend)


if __name__ == "__main__":
    main()
