"""HttpSink's own CPU per point with the columnar body against the row body, and the server's.

    .venv/bin/python bench/sink_body_cost.py [--points 200000] [--repeats 5]

A real `cggm serve` on 127.0.0.1 (fresh SQLite file). Each repeat logs --points points (10 keys,
17 values a step as the trainer logs them, in log() calls of one step) into an HttpSink with
`columns=True` and into one with `columns=False`, alternating, each into its own run, then
flushes. Client CPU is `time.process_time()` of this process (log(), the sender thread, httpx)
from the first log() to the end of the flush; server CPU is the server's user + system time
over the same window. Medians over the repeats, per point.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend_common import create_external_run, machine_state, start_cggm
from backend_ingest_floor import tree_cpu_s

from cggm_core.http_sink import HttpSink
from cggm_core.tracking import Point

KEYS = [f"group{g}/key{k}" for g in range(3) for k in range(6)][:17]


def one(url: str, server_pid: int, columns: bool, points: int, work: Path) -> tuple[float, float]:
    with httpx.Client(timeout=60) as c:
        run = create_external_run(c, url, f"sink-{'columns' if columns else 'rows'}")
    sink = HttpSink(url, run, spool_path=work / f"spool-{run}.jsonl", columns=columns, max_queue=points + 1000)
    now = time.time()
    steps = points // len(KEYS)
    c0, s0 = time.process_time(), tree_cpu_s(server_pid)
    for step in range(steps):
        sink.log([Point(k, step, step * 0.001 + i, now) for i, k in enumerate(KEYS)])
    sink.flush()
    client, server = time.process_time() - c0, tree_cpu_s(server_pid) - s0
    report = sink.close()
    n = steps * len(KEYS)
    if report.delivered != n:
        raise RuntimeError(f"delivered {report.delivered} of {n}")
    return client / n, server / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(machine_state(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="cggm-sink-body-"))
    server = start_cggm(work / "s.db", log_path=work / "serve.log")
    out: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    try:
        for _ in range(args.repeats):
            for columns in (True, False):
                out[columns].append(one(server.url, server.proc.pid, columns, args.points, work))
    finally:
        server.stop()
    for columns, xs in out.items():
        client = statistics.median(x[0] for x in xs) * 1e6
        srv = statistics.median(x[1] for x in xs) * 1e6
        print(f"{'columns' if columns else 'rows':8s} client {client:.2f} µs/point, server {srv:.2f} µs/point")


if __name__ == "__main__":
    main()
