"""Property-based fuzzing of a real `cggm serve` (SQLite) against its own live OpenAPI schema.

Schemathesis 4 generates requests from /openapi.json (valid ones, and ones that break the schema
on purpose) and runs all its checks on every answer: no 5xx, status codes and bodies as the schema
declares, invalid data refused, valid data accepted, auth enforced (the server has a token), the
Allow header of a 405. The run is bounded (a fixed seed and a few dozen examples per operation)
so that it fits CI on 2 cores in about a minute; set CGGM_FUZZ_SEED / CGGM_FUZZ_EXAMPLES to
explore further, and CGGM_FUZZ_CONTINUE=1 to keep testing an operation after its first failure
(to count every 5xx rather than stop at the first).

Phases: examples, coverage, fuzzing and stateful, with one worker. NOTES.md records a crash of
the coverage phase on GET /api/runs; here it came back with two workers ("AST constructor
recursion depth mismatch" inside Hypothesis' lambda-source cache, a race between threads) and
never with one, so the run uses one worker.

Two answers are correct although a schema cannot say so, and the config below allows them:
- POST /api/runs may answer 422 to a schema-valid body: a queued job's config is checked against
  the catalog (known datasets and methods, each setting's bounds, cross-setting rules, the memory
  its data needs), which the JSON Schema of a free-form object does not express.
- Any write may answer 413 to a schema-violating body (a batch above `max_batch`, a body above the
  size limit): schemathesis expects 400/422 and friends for invalid data, and 413 is the precise one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx

from .conftest import TINY_JOB, ServerProcess

TOKEN = "fuzz-token"
SEED = int(os.environ.get("CGGM_FUZZ_SEED", "1"))
EXAMPLES = int(os.environ.get("CGGM_FUZZ_EXAMPLES", "30"))

CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]

[[operations]]
include-path = "/api/runs"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 404, 409, 422]
"""


def _seed_data(client: httpx.Client) -> None:
    """Runs in every state, with metrics and events, so that generated ids often hit real ones."""
    for i in range(12):
        r = client.post("/api/runs", json={"config": {"dataset": "synthetic", "method": "cggm"}, "external": True})
        run_id = r.json()["id"]
        points = [{"key": f"acc/m{k}", "step": s, "value": s * 0.01} for k in range(2) for s in range(200)]
        client.post(f"/api/runs/{run_id}/metrics", json={"points": points})
        client.post(f"/api/runs/{run_id}/events", json={"events": [{"message": f"line {i}"}]})
        if i % 3 == 1:
            client.post(f"/api/runs/{run_id}/finish", json={"status": "finished", "summary": {"acc": 0.5}})
    for _ in range(4):
        client.post("/api/runs", json={"config": TINY_JOB})  # queued jobs, for claims


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'fuzz.db'}", tmp_path, {"CGGM_TOKEN": TOKEN}).start()
    try:
        with server.client(token=TOKEN) as client:
            _seed_data(client)
        (tmp_path / "schemathesis.toml").write_text(CONFIG)
        cli = Path(sys.executable).parent / "schemathesis"
        cmd = [
            str(cli), "--config-file", str(tmp_path / "schemathesis.toml"), "run", f"{server.url}/openapi.json",
            "--header", f"Authorization: Bearer {TOKEN}",
            "--checks", "all",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(EXAMPLES),
            "--seed", str(SEED),
            "--workers", "1",
            "--generation-database", "none",
            "--request-timeout", "30",
            "--no-color",
            "--report", "har", "--report-dir", str(tmp_path / "report"),
        ]  # fmt: skip
        if os.environ.get("CGGM_FUZZ_CONTINUE") == "1":
            cmd.append("--continue-on-failure")
        run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=480)
    finally:
        server.stop()
    output = run.stdout + run.stderr
    har = json.loads(next((tmp_path / "report").glob("har-*.json")).read_text())
    statuses = Counter(e["response"]["status"] for e in har["log"]["entries"])
    sent = sum(statuses.values())
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    print(f"schemathesis sent {sent} requests; statuses {sorted(statuses.items())}; 5xx: {server_errors}")
    server_log = "".join(p.read_text(errors="replace") for p in tmp_path.glob("server-*.log"))
    assert sent > 1000, f"too few requests to mean anything ({sent}):\n{output[-3000:]}"
    assert server_errors == 0, output[-6000:]
    assert "Traceback" not in server_log, server_log[-4000:]
    assert run.returncode == 0, output[-8000:]
