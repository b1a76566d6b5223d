"""Ingest with 1, 4 and 8 writers against the storage floor, measured in the same run (issue 13 item 5).

    .venv/bin/python bench/backend_ingest_floor.py [--db sqlite,postgresql] [--body rows,columns]
        [--writers 1,4,8] [--json out.json]

For each database (a fresh SQLite file; for PostgreSQL a fresh schema in $CGGM_TEST_PG_URL or
--pg-url), a real `cggm serve` on 127.0.0.1 (free port) and writer *processes* (spawned, each
with its own httpx client and its own run, started together on a barrier) posting batches of
--batch points: the row body `{"points": [{key, step, value, time}, ...]}` or the columnar body
`{"series": [{key, steps, values, times}, ...]}`, encoded with stdlib json inside the timed loop
as HttpSink does. Throughput = all points / (last writer done - first writer started). Work per
ingest test: --keys x --steps points, split over the writers.

The floor, measured by this process between the writer tests (so it shares the machine's state):
- SQLite: plain sqlite3 `executemany` of the same rows into a table with the same unique key
  (run_id, key, step), WAL, synchronous=NORMAL, one transaction (BEGIN IMMEDIATE ... COMMIT) per
  --batch rows, in a fresh file beside the server's.
- PostgreSQL: psycopg's `COPY ... FROM STDIN` of the same rows, one transaction per --batch rows,
  into a table with the same unique key, in the same schema as the server's tables.
Each floor is measured twice over: into the issue's table (a surrogate id primary key plus the
unique key: "ours / floor") and into a table shaped as the backend has stored metrics since
migration 0005 (the key as the primary key; on SQLite WITHOUT ROWID: "ours / clustered"). The
second is the fair floor for today's table, and the harder one to reach.

Reads: GET /api/runs/{id}/metrics?keys=k0 of a --read-steps-point series (the run page's full read of
one key), --reads times 0.1 s apart, alone and while 4 writers each write --keys x --steps into
their own run (until --reads reads or the first writer is done); p50 and p95.

CPU, which the machine's load disturbs less than wall time: the server's user + system seconds
(/proc) and each writer's process time over each ingest test, and the SQLite floor's process time,
per point. On a quiet machine the server is the bottleneck, so floor CPU / server CPU is what the
throughput ratio tends to.

--roots measures several checkouts in turn with the same script (e.g. `git archive` of main
unpacked in /tmp beside this one): before and after in one run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend_common import (
    ROOT,
    Server,
    create_external_run,
    free_port,
    machine_state,
    start_cggm,
    stop_process,
    tree_pids,
    wait_http_ok,
)


# -- bodies ------------------------------------------------------------------------------------
def row_body(names: list[str], step0: int, step1: int, now: float) -> bytes:
    points = [
        {"key": name, "step": step, "value": (step % 97) * 0.01, "time": now + step * 1e-3}
        for step in range(step0, step1)
        for name in names
    ]
    return json.dumps({"points": points}).encode()


def column_body(names: list[str], step0: int, step1: int, now: float) -> bytes:
    steps = list(range(step0, step1))
    values = [(s % 97) * 0.01 for s in steps]
    times = [now + s * 1e-3 for s in steps]
    series = [{"key": name, "steps": steps, "values": values, "times": times} for name in names]
    return json.dumps({"series": series}).encode()


BODIES = {"rows": row_body, "columns": column_body}


def _writer(url: str, run_id: int, keys: int, steps: int, batch: int, body: str, barrier: Any, out: Any) -> None:
    post_url = f"{url}/api/runs/{run_id}/metrics"
    names = [f"k{k}" for k in range(keys)]
    encode = BODIES[body]
    headers = {"Content-Type": "application/json"}
    per_batch = max(1, batch // keys)  # steps per request: batch points over all keys
    n = accepted = errors = 0
    with httpx.Client(timeout=120.0) as client:
        barrier.wait()
        t0 = time.perf_counter()
        c0 = time.process_time()
        now = time.time()
        for s0 in range(0, steps, per_batch):
            s1 = min(steps, s0 + per_batch)
            r = client.post(post_url, content=encode(names, s0, s1, now), headers=headers)
            if r.status_code == 200:
                accepted += int(r.json()["accepted"])
            else:
                errors += 1
            n += (s1 - s0) * keys
        cpu = time.process_time() - c0
        out.put(
            {"t0": t0, "t1": time.perf_counter(), "cpu_s": cpu, "points": n, "accepted": accepted, "errors": errors}
        )


class Writers:
    def __init__(self, url: str, run_ids: list[int], keys: int, steps: int, batch: int, body: str) -> None:
        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(len(run_ids) + 1)
        self.out = ctx.Queue()
        self.procs = [
            ctx.Process(target=_writer, args=(url, rid, keys, steps, batch, body, self.barrier, self.out))
            for rid in run_ids
        ]
        for p in self.procs:
            p.start()
        self.barrier.wait(timeout=180)

    def busy(self) -> bool:
        return self.out.qsize() < len(self.procs) and all(p.is_alive() for p in self.procs)

    def join(self) -> dict[str, Any]:
        results = [self.out.get(timeout=1800) for _ in self.procs]
        for p in self.procs:
            p.join(timeout=30)
        points = sum(r["points"] for r in results)
        seconds = max(r["t1"] for r in results) - min(r["t0"] for r in results)
        return {
            "writers": len(self.procs),
            "points": points,
            "accepted": sum(r["accepted"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "seconds": seconds,
            "writers_cpu_s": sum(r["cpu_s"] for r in results),
            "points_per_s": points / seconds,
        }


def new_runs(url: str, n: int, label: str) -> list[int]:
    with httpx.Client(timeout=60) as c:
        return [create_external_run(c, url, f"{label}-{i}-{uuid.uuid4().hex[:6]}") for i in range(n)]


# -- floors ------------------------------------------------------------------------------------
def floor_rows(writers: int, keys: int, steps: int) -> list[tuple[int, str, int, float, float]]:
    """The rows the writers of one test send: run r, key k, step s (the same values)."""
    now = time.time()
    per = steps // writers
    return [
        (r, f"k{k}", s, (s % 97) * 0.01, now + s * 1e-3)
        for r in range(writers)
        for s in range(per)
        for k in range(keys)
    ]


FLOOR_CPU: list[float] = []  # CPU seconds per point of each SQLite floor measurement (in this process)
CLUSTERED_FLOOR_CPU: list[float] = []  # the same, into the clustered table


FLOOR_TABLES = {  # the floor (a rowid table and the unique key); the same key as the table's key
    "rowid": "CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, key VARCHAR(200) NOT NULL, "
    "step BIGINT NOT NULL, value FLOAT, time FLOAT NOT NULL, UNIQUE (run_id, key, step))",
    "clustered": "CREATE TABLE metrics (run_id INTEGER NOT NULL, key VARCHAR(200) NOT NULL, step BIGINT NOT NULL, "
    "value FLOAT, time FLOAT NOT NULL, PRIMARY KEY (run_id, key, step)) WITHOUT ROWID",
}
PG_FLOOR_TABLES = {
    "rowid": "CREATE TABLE floor_metrics (id BIGSERIAL PRIMARY KEY, run_id INTEGER NOT NULL, key VARCHAR(200) "
    "NOT NULL, step BIGINT NOT NULL, value DOUBLE PRECISION, time DOUBLE PRECISION NOT NULL, UNIQUE (run_id, key, step))",
    "clustered": "CREATE TABLE floor_metrics (run_id INTEGER NOT NULL, key VARCHAR(200) NOT NULL, step BIGINT NOT NULL, "
    "value DOUBLE PRECISION, time DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, key, step))",
}


def sqlite_floor(path: Path, rows: list[tuple[int, str, int, float, float]], batch: int, table: str = "rowid") -> float:
    """points/s of plain sqlite3 executemany, WAL, one transaction per `batch` rows, fresh table.

    `table`: "rowid" is the issue's floor (an INTEGER PRIMARY KEY table with UNIQUE (run_id, key,
    step)); "clustered" is the shape the backend stores since migration 0005 (that key as the
    primary key, WITHOUT ROWID), which is cheaper, so the fair floor for today's table."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(FLOOR_TABLES[table])
    sql = "INSERT INTO metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), batch):
        con.execute("BEGIN IMMEDIATE")
        con.executemany(sql, rows[i : i + batch])
        con.execute("COMMIT")
    dt = time.perf_counter() - t0
    (FLOOR_CPU if table == "rowid" else CLUSTERED_FLOOR_CPU).append((time.process_time() - c0) / len(rows))
    n = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
    con.close()
    if n != len(rows):
        raise RuntimeError(f"sqlite floor stored {n} of {len(rows)} rows")
    return len(rows) / dt


def pg_floor(
    dsn: str, schema: str, rows: list[tuple[int, str, int, float, float]], batch: int, table: str = "rowid"
) -> float:
    """points/s of psycopg COPY FROM STDIN, one transaction per `batch` rows, fresh table (`table`:
    the issue's, with a BIGSERIAL id and the unique key, or the key as primary key, as stored since 0005)."""
    import psycopg

    with psycopg.connect(dsn, options=f"-csearch_path={schema}") as con:
        con.execute("DROP TABLE IF EXISTS floor_metrics")
        con.execute(PG_FLOOR_TABLES[table])
        con.commit()
        t0 = time.perf_counter()
        for i in range(0, len(rows), batch):
            with con.cursor() as cur, cur.copy("COPY floor_metrics (run_id, key, step, value, time) FROM STDIN") as cp:
                for row in rows[i : i + batch]:
                    cp.write_row(row)
            con.commit()
        dt = time.perf_counter() - t0
        n = con.execute("SELECT count(*) FROM floor_metrics").fetchone()[0]
        con.execute("DROP TABLE floor_metrics")
        con.commit()
    if n != len(rows):
        raise RuntimeError(f"postgresql floor stored {n} of {len(rows)} rows")
    return len(rows) / dt


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (/proc/<pid>/stat)."""
    total = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def start_uvicorn_workers(db_url: str, workers: int, log_path: Path, root: Path) -> Server:
    """The same app under `uvicorn --workers N` (N processes on one port), the database by CGGM_DB_URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "backend.app:create_app", "--factory", "--workers", str(workers)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    env = {**os.environ, "CGGM_DB_URL": db_url}
    out = open(log_path, "ab")  # noqa: SIM115 (handed to the child)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=out, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        t1 = wait_http_ok(f"{url}/api/health", proc, 120)
    except BaseException:
        stop_process(proc)
        raise
    return Server(proc, url, t1 - t0)


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


# -- one database ------------------------------------------------------------------------------
def takes_columns(url: str) -> bool:
    """Whether this backend takes the columnar body (older ones answer 422)."""
    run = new_runs(url, 1, "probe")[0]
    body = {"series": [{"key": "probe", "steps": [0], "values": [1.0]}]}
    return httpx.post(f"{url}/api/runs/{run}/metrics", json=body, timeout=60).status_code == 200


def measure(db: str, args: argparse.Namespace, work: Path, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"db": db, "root": str(root), "load_start": os.getloadavg()[0]}
    schema = None
    if db == "sqlite":
        url = f"sqlite:///{work / 'serve.db'}"

        def floor(rows: list[Any], table: str = "rowid") -> float:
            return sqlite_floor(work / "floor.db", rows, args.batch, table)
    else:
        import psycopg

        base = args.pg_url
        schema = f"cggm_bench_{uuid.uuid4().hex[:10]}"
        dsn = base.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in base else "?"
        url = f"{base}{sep}options=-csearch_path%3D{schema}"

        def floor(rows: list[Any], table: str = "rowid") -> float:
            return pg_floor(dsn, schema, rows, args.batch, table)

    if args.server_workers > 1:
        server = start_uvicorn_workers(url, args.server_workers, work / f"serve-{db}.log", root)
    else:
        server = start_cggm(Path("unused"), log_path=work / f"serve-{db}.log", db_url=url, root=root)
    try:
        bodies = [b for b in args.body if b != "columns" or takes_columns(server.url)]
        out["bodies"] = bodies
        floor(floor_rows(1, args.keys, args.steps))  # warm-up: the first fill of a fresh file is slower
        floors: list[float] = []
        tests: list[dict[str, Any]] = []
        for n in args.writers:
            rows = floor_rows(n, args.keys, args.steps)
            for body in bodies:
                # the floor right before and right after each test; the ratio is to their mean
                before = floor(rows)
                before_c = floor(rows, "clustered")
                runs = new_runs(server.url, n, f"{db}-{body}-w{n}")
                cpu0 = tree_cpu_s(server.proc.pid)
                res = Writers(server.url, runs, args.keys, args.steps // n, args.batch, body).join()
                res["server_cpu_s"] = tree_cpu_s(server.proc.pid) - cpu0
                after_c = floor(rows, "clustered")
                after = floor(rows)
                floors += [before, after]
                mean = (before + after) / 2
                mean_c = (before_c + after_c) / 2
                res |= {"body": body, "floor_before_after": [before, after], "floor_points_per_s": mean}
                res |= {"clustered_floor_before_after": [before_c, after_c], "clustered_floor_points_per_s": mean_c}
                res["ratio_clustered"] = res["points_per_s"] / mean_c
                if db == "sqlite":
                    res["floor_cpu_us_per_point"] = (FLOOR_CPU[-1] + FLOOR_CPU[-2]) / 2 * 1e6
                    res["clustered_floor_cpu_us_per_point"] = (
                        (CLUSTERED_FLOOR_CPU[-1] + CLUSTERED_FLOOR_CPU[-2]) / 2 * 1e6
                    )
                res["ratio"] = res["points_per_s"] / mean
                tests.append(res)
                print(
                    f"[{db}] {body:7s} {n} writers: {res['points_per_s']:,.0f} points/s = {res['ratio']:.2f}x floor "
                    f"({before:,.0f} before, {after:,.0f} after), {res['ratio_clustered']:.2f}x the clustered floor "
                    f"({before_c:,.0f}, {after_c:,.0f}); CPU s: server {res['server_cpu_s']:.1f}, "
                    f"writers {res['writers_cpu_s']:.1f} in {res['seconds']:.1f} s "
                    f"(errors {res['errors']}, accepted {res['accepted']:,} of {res['points']:,})",
                    flush=True,
                )
        out["floors"] = floors
        out["ingest"] = tests

        # reads of one key's full series, alone and under 4 writers
        run = new_runs(server.url, 1, f"{db}-read")[0]
        Writers(server.url, [run], args.keys, args.read_steps, args.batch, bodies[0]).join()
        read_url = f"{server.url}/api/runs/{run}/metrics?keys=k0"
        with httpx.Client(timeout=120) as c:

            def read_once() -> float:
                t = time.perf_counter()
                r = c.get(read_url)
                dt = time.perf_counter() - t
                r.raise_for_status()
                got = len(r.json()["series"]["k0"]["steps"])
                if got != args.read_steps:
                    raise RuntimeError(f"read {got} points, expected {args.read_steps}")
                return dt

            for _ in range(3):
                read_once()
            alone = []
            for _ in range(args.reads):
                alone.append(read_once())
                time.sleep(0.1)
            under: list[float] = []
            loaders = new_runs(server.url, 4, f"{db}-load")
            load_body = args.read_load_body if args.read_load_body in bodies else bodies[0]
            w = Writers(server.url, loaders, args.keys, args.steps, args.batch, load_body)
            while w.busy() and len(under) < args.reads:
                under.append(read_once())
                time.sleep(0.1)
            load = w.join()
        out["read_alone"] = {"p50_ms": pct(alone, 0.5) * 1e3, "p95_ms": pct(alone, 0.95) * 1e3, "n": len(alone)}
        out["read_under_4"] = {
            "p50_ms": pct(under, 0.5) * 1e3,
            "p95_ms": pct(under, 0.95) * 1e3,
            "max_ms": max(under) * 1e3 if under else None,
            "n": len(under),
            "writers_points_per_s": load["points_per_s"],
            "body": load_body,
        }
        print(f"[{db} {root}] read alone: {out['read_alone']}; under 4 writers: {out['read_under_4']}", flush=True)
    finally:
        server.stop()
        if schema is not None:
            import psycopg

            with psycopg.connect(dsn, autocommit=True) as con:
                con.execute(f'DROP SCHEMA "{schema}" CASCADE')
    out["load_end"] = os.getloadavg()[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--body", default="rows,columns")
    ap.add_argument("--writers", default="1,4,8")
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50_000, help="per ingest test: --keys x this many points")
    ap.add_argument("--read-steps", type=int, default=20_000, help="points of the series read")
    ap.add_argument("--batch", type=int, default=1000, help="points per request (and rows per floor transaction)")
    ap.add_argument("--reads", type=int, default=40)
    ap.add_argument(
        "--read-load-body", help="body the 4 writers use during the loaded reads (default: the first --body)"
    )
    ap.add_argument("--pg-url", default=os.environ.get("CGGM_TEST_PG_URL", ""))
    ap.add_argument(
        "--roots",
        default=str(ROOT),
        help="checkouts whose backend to measure, in turn (e.g. an unpacked main, then this one)",
    )
    ap.add_argument("--server-workers", type=int, default=1, help=">1: the app under `uvicorn --workers N`")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.body = args.body.split(",")
    args.read_load_body = args.read_load_body or args.body[0]
    args.writers = [int(w) for w in args.writers.split(",")]
    dbs = args.db.split(",")
    if "postgresql" in dbs and not args.pg_url:
        sys.exit("PostgreSQL: set CGGM_TEST_PG_URL or --pg-url (or --db sqlite)")
    res: dict[str, Any] = {"machine": machine_state(), "args": vars(args), "root": str(ROOT)}
    print(res["machine"], flush=True)
    work = Path(tempfile.mkdtemp(prefix="cggm-bench-floor-"))
    try:
        res["dbs"] = [measure(db, args, work, Path(root)) for root in args.roots.split(",") for db in dbs]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["load_end"] = "load average {:.2f} {:.2f} {:.2f} at the end".format(*os.getloadavg())
    report(res)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))


def report(res: dict[str, Any]) -> None:
    print(f"\n{res['machine']}; {res['load_end']}")
    print(
        "| code | database | body | writers | points/s | floor (points/s) | ours / floor | clustered floor "
        "| ours / clustered | server CPU µs/point | writers' CPU µs/point | floor CPU µs/point (clustered) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for d in res["dbs"]:
        for t in d["ingest"]:
            print(
                f"| {Path(d['root']).name} | {d['db']} | {t['body']} | {t['writers']} | {t['points_per_s']:,.0f} | "
                f"{t['floor_points_per_s']:,.0f} | {t['ratio']:.2f}x | {t['clustered_floor_points_per_s']:,.0f} | "
                f"{t['ratio_clustered']:.2f}x | {t['server_cpu_s'] / t['points'] * 1e6:.1f} "
                f"| {t['writers_cpu_s'] / t['points'] * 1e6:.1f} | {t.get('floor_cpu_us_per_point', float('nan')):.1f} "
                f"({t.get('clustered_floor_cpu_us_per_point', float('nan')):.1f}) |"
            )
    for d in res["dbs"]:
        fl = ", ".join(f"{f:,.0f}" for f in d["floors"])
        ra, ru = d["read_alone"], d["read_under_4"]
        print(
            f"{Path(d['root']).name} {d['db']}: floors in order {fl}; read p50/p95 alone {ra['p50_ms']:.1f}/{ra['p95_ms']:.1f} ms, "
            f"under 4 writers {ru['p50_ms']:.1f}/{ru['p95_ms']:.1f} ms (n={ru['n']}, writers "
            f"{ru['writers_points_per_s']:,.0f} points/s); load average {d['load_start']:.1f} -> {d['load_end']:.1f}"
        )


if __name__ == "__main__":
    main()
