"""The metrics table's shape and the cold read, in-process with plain sqlite3 (issue 13, BENCHMARKS §3.0d).

    .venv/bin/python bench/backend_table_shape.py [--runs 4] [--steps 5000] [--repeats 3]

1. Insert and read by table shape: --runs runs written interleaved (each 1,000-row transaction
   holds 100 steps x 10 keys of one run, the runs taking turns, as concurrent writers do) into
   (a) the issue's floor table, an INTEGER PRIMARY KEY plus UNIQUE (run_id, key, step), and (b)
   the table the backend stores since migration 0005, PRIMARY KEY (run_id, key, step) WITHOUT
   ROWID. CPU µs per inserted point (process time), then the fetch of one series (run 1, key k3)
   in ms (median of 15).
2. The cold read under GIL contention: the same 20,000-row fetch alone, beside two threads
   inserting into their own SQLite files, and beside two threads running pure Python; and one
   aggregate statement over the same rows (json_group_array of the steps), which steps once.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

SHAPES = {
    "rowid + unique (the issue's floor)": "CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, "
    "key VARCHAR(200) NOT NULL, step BIGINT NOT NULL, value FLOAT, time FLOAT NOT NULL, UNIQUE (run_id, key, step))",
    "clustered, WITHOUT ROWID (0005)": "CREATE TABLE metrics (run_id INTEGER NOT NULL, key VARCHAR(200) NOT NULL, "
    "step BIGINT NOT NULL, value FLOAT, time FLOAT NOT NULL, PRIMARY KEY (run_id, key, step)) WITHOUT ROWID",
}
INSERT = "INSERT INTO metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
READ = "SELECT step, value, time FROM metrics WHERE run_id = ? AND key = ? ORDER BY step"


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def _median_ms(f: object, n: int = 15) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def shapes(runs: int, steps: int, repeats: int) -> None:
    now = time.time()
    batches = [
        [(r, f"k{k}", s, (s % 97) * 0.01, now + s * 1e-3) for s in range(s0, s0 + 100) for k in range(10)]
        for s0 in range(0, steps, 100)
        for r in range(runs)
    ]
    for name, ddl in SHAPES.items():
        cpu, read = [], []
        for _ in range(repeats):
            con = _connect(Path(tempfile.mkdtemp()) / "m.db")
            con.execute(ddl)
            c0 = time.process_time()
            for b in batches:
                con.execute("BEGIN IMMEDIATE")
                con.executemany(INSERT, b)
                con.execute("COMMIT")
            cpu.append((time.process_time() - c0) / (len(batches) * 1000) * 1e6)
            read.append(_median_ms(lambda con=con: con.execute(READ, (1, "k3")).fetchall()))
            con.close()
        print(
            f"{name:36s} insert {min(cpu):.2f}-{max(cpu):.2f} CPU µs/point; "
            f"read of a {steps:,}-point series {min(read):.1f}-{max(read):.1f} ms"
        )


def contention() -> None:
    tmp = Path(tempfile.mkdtemp())
    con = _connect(tmp / "r.db")
    con.execute(SHAPES["clustered, WITHOUT ROWID (0005)"])
    con.executemany(INSERT, [(1, "k0", i, i * 0.5, 1.7e9 + i) for i in range(20_000)])
    stop = threading.Event()

    def sqlite_writer(n: int) -> None:
        w = _connect(tmp / f"w{n}.db")
        w.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b REAL)")
        i = 0
        while not stop.is_set():
            w.execute("BEGIN")
            w.executemany("INSERT INTO t VALUES (?, ?)", [(i * 1000 + j, j * 0.1) for j in range(1000)])
            w.execute("COMMIT")
            i += 1

    def python_work(_n: int) -> None:
        while not stop.is_set():
            sum(x * x for x in range(1000))

    for label, target in (
        ("alone", None),
        ("beside 2 SQLite writers", sqlite_writer),
        ("beside 2 Python threads", python_work),
    ):
        stop.clear()
        threads = [threading.Thread(target=target, args=(k,)) for k in range(2)] if target else []
        for t in threads:
            t.start()
        time.sleep(0.2)
        fetch = _median_ms(lambda: con.execute(READ, (1, "k0")).fetchall())
        agg = _median_ms(lambda: con.execute("SELECT json_group_array(step) FROM metrics WHERE run_id = 1").fetchone())
        stop.set()
        for t in threads:
            t.join()
        print(f"20,000-row fetch {label:24s} {fetch:6.1f} ms; one aggregate statement {agg:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    shapes(args.runs, args.steps, args.repeats)
    contention()


if __name__ == "__main__":
    main()
