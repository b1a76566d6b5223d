"""Presets at the API: /api/catalog serves them for the New run form; a preset for another data set,
or an unknown one, is 422 at POST naming what is allowed, and nothing is queued."""

from __future__ import annotations

import httpx
import pytest


def count_runs(api: httpx.Client) -> int:
    return int(api.get("/api/runs").json()["count"])


def test_the_catalog_serves_the_presets(api: httpx.Client) -> None:
    presets = {p["name"]: p for p in api.get("/api/catalog").json()["presets"]}
    assert list(presets)[:4] == ["mosi", "iemocap", "food101", "brats"]
    assert presets["ogm_ge-official"]["method"] == "ogm_ge" and presets["ogm_ge-official"]["datasets"] == []
    food = presets["food101"]
    assert food["datasets"] == ["food101"] and food["help"].startswith("official UPMC-Food-101 recipe")
    assert (food["trainer"]["optimizer"], food["trainer"]["weight_decay"], food["trainer"]["aux_weight_decay"]) == (
        "adamw",
        6e-3,
        3e-3,
    )
    assert food["methods"] == {"cggm": {"rho": 1.3, "lam": 0.05}}
    assert food["models"]["transformer"]["attn_dropout"] == 0.2
    assert presets["brats"]["trainer"]["scheduler"] == "warmup_cosine"


@pytest.mark.parametrize(
    ("preset", "message"),
    [
        (
            "mosi",
            "preset 'mosi' is the official recipe for dataset mosi, not 'synthetic'; dataset 'synthetic' has no data-set preset",
        ),
        ("nope", "unknown preset 'nope'; allowed: mosi, iemocap, food101, brats"),
        (7, "'preset' must be a name (a string), got int"),
    ],
)
def test_a_preset_the_job_cannot_take_is_422(api: httpx.Client, preset: object, message: str) -> None:
    before = count_runs(api)
    r = api.post("/api/runs", json={"config": {"dataset": "synthetic", "method": "cggm", "preset": preset}})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "config"] and message in detail["msg"]
    assert count_runs(api) == before


def test_an_empty_preset_is_no_preset(api: httpx.Client) -> None:
    """The form sends "" when no preset is chosen: the job is queued with the defaults and no preset."""
    r = api.post("/api/runs", json={"config": {"dataset": "synthetic", "method": "cggm", "preset": "", "epochs": 1}})
    assert r.status_code == 201, r.text
    config = r.json()["config"]
    assert "preset" not in config and config["scheduler"] == "none" and config["aux_optimizer"] == "same"
