"""The README's "stream your own training loop" example runs against a real backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_readme_http_example_streams_to_a_real_backend(
    make_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CGGM_SPOOL_DIR", str(tmp_path / "spool"))
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- http-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its HTTP example"
    server = make_server()
    code = match.group(1).replace('SERVER = "http://127.0.0.1:8000"', f'SERVER = "{server.url}"')
    assert server.url in code
    exec(compile(code, "README.md", "exec"), {})
    with server.client() as api:
        run = api.get("/api/runs").json()["data"][0]
        assert run["name"] == "my model" and run["external"] and run["status"] == "finished"
        assert run["heartbeat_at"] is not None  # it heartbeats, so it would become lost if it died
        series = api.get(f"/api/runs/{run['id']}/metrics", params={"keys": "coef/rgb,coef/depth"}).json()["series"]
        assert series["coef/rgb"]["steps"] == list(range(5, 51, 5))
        assert len(series["coef/depth"]["steps"]) == 10
        all_series = api.get(f"/api/runs/{run['id']}/metrics").json()["series"]
        stored = sum(len(s["steps"]) for s in all_series.values())
        delivery = run["summary"]["delivery"]
        assert delivery["delivered"] == stored and delivery["left_in_spool"] == 0 and delivery["lost"] == 0
        assert run["summary"]["coef/rgb"] == all_series["coef/rgb"]["values"][-1]
