"""Reads of a 20,000-point series under 4 writers, with the read helper (backend/read_pool.py) and without.

    .venv/bin/python bench/backend_read_helpers.py [--db sqlite,postgresql] [--rounds 2] [--cache 0,64]
        [--read full|page] [--json out.json]

For each database (--db: a fresh SQLite file; for PostgreSQL a fresh schema in $CGGM_TEST_PG_URL)
and each --cache setting (CGGM_READ_CACHE_MB: 0 = every read is cold, 64 = the default, where a
re-read of an unchanged series is answered from memory), alternately with CGGM_READ_PROCESSES=0
and =1 (A B A B ..., --rounds pairs, so that the machine's drift falls on both): a real
`cggm serve` on a fresh SQLite file, one run with --keys series of --read-steps points (written
through the API), then GET /api/runs/{id}/metrics?keys=k0 (a full read of one key; with --read
page, ?keys=k0,...,k9&max_points=1500, the run page's read of every key, downsampled) --reads times alone and --reads times while 4 writer processes each stream --keys x --steps
points into their own run (columnar bodies of --batch points, as HttpSink sends). Reports p50 and
p95 of each, the writers' points/s over the loaded reads, and the helper's resident memory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend_common import machine_state, start_cggm
from backend_ingest_floor import Writers, new_runs, pct


def _helper_rss_mb(server_pid: int) -> float | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["PPid"]) == server_pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            return int(fields["VmRSS"].split()[0]) / 1024
    return None


def one(args: argparse.Namespace, db: str, processes: int, cache_mb: int, work: Path) -> dict[str, Any]:
    os.environ["CGGM_READ_PROCESSES"] = str(processes)
    os.environ["CGGM_READ_CACHE_MB"] = str(cache_mb)
    folder = Path(tempfile.mkdtemp(dir=work))
    schema = url = None
    if db == "postgresql":
        import psycopg

        schema = f"cggm_bench_{uuid.uuid4().hex[:10]}"
        dsn = args.pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{args.pg_url}{'&' if '?' in args.pg_url else '?'}options=-csearch_path%3D{schema}"
    server = start_cggm(folder / "m.db", db_url=url)
    try:
        run = new_runs(server.url, 1, "read")[0]
        Writers(server.url, [run], args.keys, args.read_steps, args.batch, "columns").join()
        time.sleep(3)  # past the read pool's busy window: the reads alone are the server's own
        if args.read == "page":  # the run page's read: every key, downsampled
            names = ",".join(f"k{k}" for k in range(args.keys))
            url = f"{server.url}/api/runs/{run}/metrics?keys={names}&max_points={args.max_points}"
        else:
            url = f"{server.url}/api/runs/{run}/metrics?keys=k0"
        with httpx.Client(timeout=120) as c:

            def read() -> float:
                t = time.perf_counter()
                r = c.get(url)
                dt = time.perf_counter() - t
                r.raise_for_status()
                n = len(r.json()["series"]["k0"]["steps"])
                if (n != args.read_steps) if args.read == "full" else not 0 < n <= args.max_points:
                    raise RuntimeError(f"a read came back with {n} points")
                return dt

            for _ in range(3):
                read()
            alone = []
            for _ in range(args.reads):
                alone.append(read())
                time.sleep(0.05)
            under: list[float] = []
            w = Writers(server.url, new_runs(server.url, 4, "load"), args.keys, args.steps, args.batch, "columns")
            rss = None
            while w.busy() and len(under) < args.reads:
                under.append(read())
                rss = _helper_rss_mb(server.proc.pid) or rss  # the last: after the helper's first reads
                time.sleep(0.1)
            load = w.join()
        return {
            "db": db,
            "read_processes": processes,
            "cache_mb": cache_mb,
            "read": args.read,
            "alone_ms": {"p50": pct(alone, 0.5) * 1e3, "p95": pct(alone, 0.95) * 1e3, "n": len(alone)},
            "under_4_ms": {"p50": pct(under, 0.5) * 1e3, "p95": pct(under, 0.95) * 1e3, "n": len(under)},
            "writers_points_per_s": load["points_per_s"],
            "helper_rss_mb": rss,
            "load": os.getloadavg()[0],
        }
    finally:
        server.stop()
        if schema is not None:
            import psycopg

            with psycopg.connect(dsn, autocommit=True) as con:
                con.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2, help="A/B pairs per cache setting")
    ap.add_argument("--db", default="sqlite", help="sqlite, postgresql or both (comma-separated)")
    ap.add_argument("--pg-url", default=os.environ.get("CGGM_TEST_PG_URL", ""))
    ap.add_argument("--cache", default="0,64", help="CGGM_READ_CACHE_MB values")
    ap.add_argument(
        "--read",
        choices=["full", "page"],
        default="full",
        help="full: keys=k0 (one whole series); page: every key with max_points (the run page's read)",
    )
    ap.add_argument("--max-points", type=int, default=1500, help="for --read page (the run page's MAX_POINTS)")
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--read-steps", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=50_000, help="per loading writer: --keys x this many points")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--reads", type=int, default=40)
    ap.add_argument("--json")
    args = ap.parse_args()
    res: dict[str, Any] = {"machine": machine_state(), "args": vars(args), "results": []}
    print(res["machine"], flush=True)
    work = Path(tempfile.mkdtemp(prefix="cggm-bench-read-helpers-"))
    try:
        for db, cache_mb in itertools.product(args.db.split(","), (int(c) for c in args.cache.split(","))):
            for _ in range(args.rounds):
                for processes in (0, 1):
                    r = one(args, db, processes, cache_mb, work)
                    res["results"].append(r)
                    a, u = r["alone_ms"], r["under_4_ms"]
                    print(
                        f"{db}, {args.read} read, cache {cache_mb} MB, read helpers {processes}: alone p50/p95 {a['p50']:.1f}/{a['p95']:.1f} ms; "
                        f"under 4 writers {u['p50']:.1f}/{u['p95']:.1f} ms (n {u['n']}); writers "
                        f"{r['writers_points_per_s']:,.0f} points/s; helper RSS {r['helper_rss_mb']} MB; "
                        f"load {r['load']:.2f}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
