"""The precision, compile and system-metric settings through the real server: catalog, POST checks."""

from __future__ import annotations

import httpx

from .conftest import TINY_JOB


def test_catalog_lists_the_settings_and_post_checks_them(api: httpx.Client) -> None:
    trainer = {s["name"]: s for s in api.get("/api/catalog").json()["trainer"]}
    assert trainer["precision"]["choices"] == ["fp32", "bf16", "fp16"] and trainer["precision"]["default"] == "fp32"
    assert trainer["compile"]["type"] == "bool" and trainer["compile"]["default"] is False
    assert trainer["system_every_s"]["min"] == 0.0
    r = api.post("/api/runs", json={"config": {**TINY_JOB, "precision": "fp8"}})
    assert r.status_code == 422, r.text
    msg = r.json()["detail"][0]["msg"]
    assert "precision" in msg and "fp8" in msg and "bf16" in msg
    r = api.post("/api/runs", json={"config": {**TINY_JOB, "compile": "maybe"}})
    assert r.status_code == 422 and "compile" in r.json()["detail"][0]["msg"]
    r = api.post("/api/runs", json={"config": {**TINY_JOB, "precision": "bf16", "compile": True}})
    assert r.status_code == 201, r.text
    config = api.get(f"/api/runs/{r.json()['id']}").json()["config"]
    assert config["precision"] == "bf16" and config["compile"] is True
