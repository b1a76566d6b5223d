"""MLflow's side of bench/backend_ingest.py; runs under the throwaway MLflow venv, never our .venv.

    /tmp/mlflow-venv/bin/python bench/backend_mlflow_client.py ingest --uri URI --writers W --keys K --steps S
    /tmp/mlflow-venv/bin/python bench/backend_mlflow_client.py read --uri URI --steps 20000 --reads 7

`ingest`: W writer processes, each with its own run and its own MlflowClient, log K keys x S/W steps
with `log_batch` of 1,000 metrics per call; they start together (a barrier). `read`: log one series
of S steps, then time `get_metric_history` on it. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from typing import Any

BATCH = 1000


def _writer(uri: str, exp_id: str, keys: int, steps: int, barrier: Any, out: Any) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(exp_id).info.run_id
    barrier.wait()
    t0 = time.perf_counter()
    batch: list[Any] = []
    n = 0
    now_ms = int(time.time() * 1000)
    for step in range(steps):
        for k in range(keys):
            batch.append(Metric(f"k{k}", float(step % 97) * 0.01 + k, now_ms + step, step))
            if len(batch) == BATCH:
                client.log_batch(run_id, metrics=batch)
                n += len(batch)
                batch = []
    if batch:
        client.log_batch(run_id, metrics=batch)
        n += len(batch)
    out.put({"t0": t0, "t1": time.perf_counter(), "points": n, "run_id": run_id})


def ingest(uri: str, writers: int, keys: int, steps: int) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    exp_id = MlflowClient(tracking_uri=uri).create_experiment(f"ingest-{writers}w-{time.time_ns()}")
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(writers), ctx.Queue()
    per = steps // writers
    procs = [ctx.Process(target=_writer, args=(uri, exp_id, keys, per, barrier, out)) for _ in range(writers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    points = sum(r["points"] for r in results)
    seconds = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    return {"writers": writers, "points": points, "seconds": seconds, "points_per_s": points / seconds}


def read(uri: str, steps: int, reads: int) -> dict[str, Any]:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(f"read-{time.time_ns()}")
    run_id = client.create_run(exp_id).info.run_id
    now_ms = int(time.time() * 1000)
    t0 = time.perf_counter()
    for s0 in range(0, steps, BATCH):
        batch = [Metric("r", float(s) * 0.001, now_ms + s, s) for s in range(s0, min(steps, s0 + BATCH))]
        client.log_batch(run_id, metrics=batch)
    ingest_s = time.perf_counter() - t0
    times, n = [], 0
    for _ in range(reads):
        t = time.perf_counter()
        n = len(client.get_metric_history(run_id, "r"))
        times.append(time.perf_counter() - t)
    return {
        "steps": steps,
        "ingest_points_per_s": steps / ingest_s,
        "read_points": n,
        "reads": reads,
        "read_median_s": statistics.median(times),
        "read_min_s": min(times),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["ingest", "read"])
    ap.add_argument("--uri", required=True)
    ap.add_argument("--writers", type=int, default=1)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--reads", type=int, default=7)
    args = ap.parse_args()
    if args.mode == "ingest":
        res = ingest(args.uri, args.writers, args.keys, args.steps)
    else:
        res = read(args.uri, args.steps, args.reads)
    import mlflow

    res["mlflow_version"] = mlflow.__version__
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
