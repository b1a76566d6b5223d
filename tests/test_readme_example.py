"""The README's drop-in example runs as written and produces the probe's keys."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def dropin_example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- dropin-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its drop-in example"
    return match.group(1)


def test_readme_dropin_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict[str, object] = {}
        exec(compile(dropin_example(), "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 10  # steps 10, 20, …, 100
    lines = (tmp_path / "runs" / "my-model" / "metrics.jsonl").read_text().splitlines()
    keys = {re.search(r'"key": "([^"]+)"', ln).group(1) for ln in lines}  # type: ignore[union-attr]
    for m in ("audio", "video"):
        assert {f"coef/{m}", f"grad_norm/{m}", f"cos/{m}", f"acc/{m}"} <= keys
    assert "loss/gm" in keys
