"""Server memory of full-resolution metric reads: the peak RSS of `cggm serve` while it answers.

    .venv/bin/python bench/backend_read_memory.py [--points 2000000] [--keys 1] [--concurrent 4]

A real `cggm serve` on a fresh SQLite file is filled with --points points (over --keys keys),
then restarted, so that the kernel's high-water mark of its resident memory (VmHWM) starts from
the idle server. Then: one GET /api/runs/{id}/metrics of everything (no max_points), and, after
another restart, --concurrent such reads at once. Each read is consumed as a stream by the client
and checked (point count). Printed: VmHWM before and after each read, seconds, bytes. Run it from
another checkout's bench/ folder to measure that checkout (the server is started from ROOT).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend_common import ROOT, Server, create_external_run, machine_state, start_cggm


def hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def fill(url: str, points: int, keys: int) -> int:
    with httpx.Client(timeout=120) as client:
        run_id = create_external_run(client, url, "read-memory")
        per_key = points // keys
        batch: list[dict[str, Any]] = []
        t0 = time.time()
        for k in range(keys):
            for step in range(per_key):
                batch.append({"key": f"k{k}", "step": step, "value": (step % 997) * 0.001, "time": t0 + step})
                if len(batch) == 10_000:
                    client.post(
                        f"{url}/api/runs/{run_id}/metrics", content=orjson.dumps({"points": batch})
                    ).raise_for_status()
                    batch = []
        if batch:
            client.post(f"{url}/api/runs/{run_id}/metrics", content=orjson.dumps({"points": batch})).raise_for_status()
    return run_id


def read_all(url: str, run_id: int, expect: int, out: list[dict[str, Any]]) -> None:
    t = time.perf_counter()
    body = bytearray()
    with httpx.Client(timeout=600) as client, client.stream("GET", f"{url}/api/runs/{run_id}/metrics") as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            body += chunk
    seconds = time.perf_counter() - t
    series = orjson.loads(bytes(body))["series"]
    got = sum(len(s["steps"]) for s in series.values())
    if got != expect or any(len(s["values"]) != len(s["steps"]) for s in series.values()):
        raise RuntimeError(f"read {got} points, expected {expect}")
    out.append({"seconds": seconds, "bytes": len(body)})


def measure(db: Path, run_id: int, expect: int, concurrent: int, log: Path) -> dict[str, Any]:
    server: Server = start_cggm(db, log_path=log)
    try:
        time.sleep(1.0)
        before = hwm_mb(server.proc.pid)
        reads: list[dict[str, Any]] = []
        threads = [
            threading.Thread(target=read_all, args=(server.url, run_id, expect, reads)) for _ in range(concurrent)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if len(reads) != concurrent:
            raise RuntimeError("a read failed; see the server log")
        return {
            "concurrent": concurrent,
            "hwm_before_mb": before,
            "hwm_after_mb": hwm_mb(server.proc.pid),
            "seconds": max(r["seconds"] for r in reads),
            "bytes": reads[0]["bytes"],
        }
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=2_000_000)
    ap.add_argument("--keys", type=int, default=1)
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    print(machine_state(), f"; server from {ROOT}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cggm-readmem-") as tmp:
        db, log = Path(tmp) / "cggm.db", Path(tmp) / "server.log"
        server = start_cggm(db, log_path=log)
        try:
            t = time.perf_counter()
            run_id = fill(server.url, args.points, args.keys)
            print(
                f"filled {args.points:,} points over {args.keys} key(s) in {time.perf_counter() - t:.1f} s", flush=True
            )
        finally:
            server.stop()
        expect = args.points // args.keys * args.keys
        results = [measure(db, run_id, expect, 1, log), measure(db, run_id, expect, args.concurrent, log)]
    for r in results:
        print(
            f"{r['concurrent']} read(s) of {expect:,} points: server VmHWM {r['hwm_before_mb']:.0f} -> "
            f"{r['hwm_after_mb']:.0f} MB (+{r['hwm_after_mb'] - r['hwm_before_mb']:.0f}), "
            f"{r['seconds']:.1f} s, {r['bytes'] / 1e6:.1f} MB of JSON each",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"points": expect, "keys": args.keys, "results": results}, indent=2))


if __name__ == "__main__":
    main()
