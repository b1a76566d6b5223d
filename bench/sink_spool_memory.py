"""Client memory while HttpSink resends a large spool (issue 8: a 1M-point spool took 32 → 742 MB).

Writes a spool of `--points` points (the sink's own format: one JSON point per line) for a fresh
external run on a real `cggm serve` (SQLite file), then lets an HttpSink resend it and close.
Prints the client's VmRSS before the sink starts, its peak (VmHWM) after close, the time the
resend took, and what the server stored. The spool is written line by line, so the baseline is
the process with httpx imported and nothing else.

    .venv/bin/python bench/sink_spool_memory.py --points 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend_common import create_external_run, machine_state, start_cggm

from cggm_core.http_sink import HttpSink


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=17, help="keys per step (the probe logs ~17 for two modalities)")
    args = ap.parse_args()
    print(machine_state(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="cggm-bench-spool-"))
    server = start_cggm(work / "spool.db", log_path=work / "serve.log")
    try:
        with httpx.Client(timeout=30) as c:
            run_id = create_external_run(c, server.url, "spool-resend")
        spool = work / "spool" / f"run-{run_id}.jsonl"
        spool.parent.mkdir()
        now = time.time()
        with spool.open("w", encoding="utf-8") as f:
            for i in range(args.points):
                step, k = divmod(i, args.keys)
                f.write(json.dumps({"key": f"k{k}", "step": step, "value": 0.5 + step * 1e-6, "time": now}) + "\n")
        size_mb = spool.stat().st_size / 1e6
        rss_before = status_mb("VmRSS")
        t0 = time.perf_counter()
        sink = HttpSink(server.url, run_id, spool_path=spool, close_timeout_s=3600)
        sink.close()
        took = time.perf_counter() - t0
        peak = status_mb("VmHWM")
        with httpx.Client(timeout=600) as c:
            series = c.get(f"{server.url}/api/runs/{run_id}/metrics").json()["series"]
        stored = sum(len(s["steps"]) for s in series.values())
        print(
            f"spool {args.points:,} points ({size_mb:.0f} MB): client VmRSS {rss_before:.0f} MB before, "
            f"peak {peak:.0f} MB after close; resent in {took:.1f} s; server stored {stored:,} "
            f"(sink: accepted {sink.accepted:,}, duplicates {sink.duplicates:,})"
        )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
