"""Where the backend's time and memory go, without HTTP: the ingest and read hot paths in-process.

    .venv/bin/python bench/backend_profile.py [--batches 200] [--big 1000000] [--profile]

On a fresh SQLite file (the backend's own Database, pragmas and migrations), per 1,000-point batch:
the client's json.dumps (what HttpSink and the bench writers do), parse_ingest, and the store
(db.write_connection + require_accepts_metrics + ingest_series), for the row and the columnar
body, against a floor of plain sqlite3
executemany into the same table. Reads: query_series of a 20,000-point series and of a 1,000,000-
point series, minmax_indices, orjson encoding, against a plain sqlite3 fetch. Memory: VmRSS of a
fresh interpreter after importing backend.app, and whether that pulled in torch. With --profile,
cProfile's top functions of the ingest path and of the 1M-point read.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import pstats
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.db import Database  # noqa: E402
from backend.downsample import minmax_indices  # noqa: E402
from backend.schemas.metrics import parse_ingest  # noqa: E402
from backend.store import metrics as metric_store  # noqa: E402
from backend.store import runs as run_store  # noqa: E402


def batch_rows(step0: int, steps: int, keys: int) -> list[dict[str, object]]:
    now = time.time()
    return [
        {"key": f"k{k}", "step": s, "value": (s % 97) * 0.01, "time": now + s * 1e-3}
        for s in range(step0, step0 + steps)
        for k in range(keys)
    ]


def batch_columns(step0: int, steps: int, keys: int) -> dict[str, object]:
    now = time.time()
    st = list(range(step0, step0 + steps))
    return {
        "series": [
            {
                "key": f"k{k}",
                "steps": st,
                "values": [(s % 97) * 0.01 for s in st],
                "times": [now + s * 1e-3 for s in st],
            }
            for k in range(keys)
        ]
    }


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1e3:.2f} ms"


def top(prof: cProfile.Profile, n: int = 18) -> str:
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(n)
    lines = s.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join(lines[start : start + n + 1])


def rss_after(code: str) -> str:
    prog = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}\n"
        "rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]\n"
        "print(int(rss) // 1024, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120, check=True)
    mb, torch = out.stdout.split()
    return f"{mb} MB (torch imported: {torch})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=200, help="1,000-point batches (10 keys x 100 steps each)")
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cggm-profile-"))
    db_path = work / "p.db"
    db = Database(f"sqlite:///{db_path}")
    db.migrate()
    with db.write() as s:
        ids = [run_store.create_run(s, config={}, name=f"p{i}", tags=[], notes="", external=True).id for i in range(3)]
    run, floor_run, big_run = ids

    # -- ingest -------------------------------------------------------------------------------
    per: dict[str, list[float]] = {}
    prof = cProfile.Profile()
    b = 0
    for body_kind in ("rows", "columns"):
        enc, parse, store = [], [], []
        for _ in range(args.batches):
            t0 = time.perf_counter()
            doc = batch_rows(b * 100, 100, 10) if body_kind == "rows" else batch_columns(b * 100, 100, 10)
            body = json.dumps({"points": doc} if body_kind == "rows" else doc).encode()
            t1 = time.perf_counter()
            if args.profile and body_kind == "columns":
                prof.enable()
            series, total = parse_ingest(body, 10_000)
            t2 = time.perf_counter()
            with db.write_connection() as conn:
                run_store.require_accepts_metrics(conn, run_id=run)
                metric_store.ingest_series(conn, run_id=run, series=series, total=total)
            t3 = time.perf_counter()
            prof.disable()
            enc.append(t1 - t0)
            parse.append(t2 - t1)
            store.append(t3 - t2)
            b += 1
        per |= {f"{body_kind}: client build+dumps": enc, f"{body_kind}: parse_ingest": parse}
        per[f"{body_kind}: store (write txn)"] = store
    con = sqlite3.connect(db_path, isolation_level=None)
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA busy_timeout=5000")
    floor = []
    sql = "INSERT INTO metrics (run_id, key, step, value, time) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING"
    for b in range(args.batches):
        tuples = [(floor_run, r["key"], r["step"], r["value"], r["time"]) for r in batch_rows(b * 100, 100, 10)]
        t0 = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        con.executemany(sql, tuples)
        con.execute("COMMIT")
        floor.append(time.perf_counter() - t0)
    per["sqlite3 floor"] = floor
    print(f"ingest, per 1,000-point batch (median of {args.batches}; points/s if this were the only cost):")
    for name, xs in per.items():
        print(f"  {name:30s} {ms(xs):>10s}  ({1000 / statistics.median(xs):,.0f} points/s)")
    if args.profile:
        print("cProfile of parse_ingest + store, columnar batches (tottime):")
        print(top(prof))

    # -- reads --------------------------------------------------------------------------------
    steps = b * 100
    q, raw, dump = [], [], []
    for _ in range(9):
        t0 = time.perf_counter()
        with db.read() as s:
            res = metric_store.query_series(s, run_id=run, keys=["k0"], since_step=None)
        t1 = time.perf_counter()
        out = {k: {"steps": a, "values": b, "times": c} for k, (a, b, c) in res.items()}
        orjson.dumps({"series": out})
        t2 = time.perf_counter()
        con.execute(
            "SELECT step, value, time FROM metrics WHERE run_id=? AND key=? ORDER BY step", (run, "k0")
        ).fetchall()
        t3 = time.perf_counter()
        q.append(t1 - t0)
        dump.append(t2 - t1)
        raw.append(t3 - t2)
    print(f"read of one {steps:,}-point series: query_series {ms(q)}, orjson {ms(dump)}; sqlite3 fetchall {ms(raw)}")

    now = time.time()
    t0 = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    con.executemany(sql, ((big_run, "big", s, math.sin(s * 1e-3), now) for s in range(args.big)))
    con.execute("COMMIT")
    print(f"filled a {args.big:,}-point series with plain sqlite3 in {time.perf_counter() - t0:.1f} s")
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    if args.profile:
        prof.enable()
    with db.read() as s:
        res = metric_store.query_series(s, run_id=big_run, keys=["big"], since_step=None)
    t1 = time.perf_counter()
    st, va, ti = res["big"]
    idx = minmax_indices(np.asarray(va, dtype=np.float64), 1500)
    kept = {"steps": [st[i] for i in idx], "values": [va[i] for i in idx], "times": [ti[i] for i in idx]}
    orjson.dumps({"series": {"big": kept}})
    t2 = time.perf_counter()
    prof.disable()
    t3 = time.perf_counter()
    rows = con.execute(
        "SELECT step, value, time FROM metrics WHERE run_id=? AND key=? ORDER BY step", (big_run, "big")
    ).fetchall()
    t4 = time.perf_counter()
    arr = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
    minmax_indices(arr, 1500)
    t5 = time.perf_counter()
    print(
        f"downsampled read of {args.big:,} points to 1,500: query_series {(t1 - t0) * 1e3:.0f} ms, "
        f"minmax + encode {(t2 - t1) * 1e3:.0f} ms; sqlite3 fetchall alone {(t4 - t3) * 1e3:.0f} ms, "
        f"numpy + minmax {(t5 - t4) * 1e3:.0f} ms"
    )
    # What SQLite alone needs to find each bucket's min and max (SQLite's bare columns give the step
    # of the min / max row): a candidate for downsampling in the database instead of in Python.
    width = -(-args.big // 749)
    agg = (
        "SELECT step, {f}(value) FROM metrics WHERE run_id=? AND key=? AND value IS NOT NULL "
        "GROUP BY step / ? ORDER BY step"
    )
    t0 = time.perf_counter()
    lo = con.execute(agg.format(f="min"), (big_run, "big", width)).fetchall()
    hi = con.execute(agg.format(f="max"), (big_run, "big", width)).fetchall()
    t1 = time.perf_counter()
    print(f"  SQL-side bucket min + max ({len(lo)} + {len(hi)} rows, two GROUP BY queries): {(t1 - t0) * 1e3:.0f} ms")
    if args.profile:
        print("cProfile of the 1M-point downsampled read (tottime):")
        print(top(prof, 12))
    con.close()
    db.dispose()

    # -- memory -------------------------------------------------------------------------------
    print("RSS of a fresh interpreter after:")
    print(
        f"  import fastapi, uvicorn, sqlalchemy, numpy, orjson: {rss_after('import fastapi, uvicorn, sqlalchemy, numpy, orjson')}"
    )
    print(f"  import backend.app:                                 {rss_after('import backend.app')}")
    print(f"  import torch:                                       {rss_after('import torch')}")


if __name__ == "__main__":
    main()
