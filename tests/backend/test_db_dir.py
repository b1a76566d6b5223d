"""The backend's SQLite folder is CGGM_DB_DIR / --db-dir; CGGM_DATA_DIR is the workers' data root.

Before issue 11 the backend read CGGM_DATA_DIR as the folder of its SQLite file, so setting a
worker's data root on the backend's machine moved the database. These tests pin the split.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.settings import Settings

from .conftest import free_port


def test_the_data_root_does_not_move_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CGGM_DB_URL", raising=False)
    monkeypatch.delenv("CGGM_DB_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CGGM_DATA_DIR", str(tmp_path / "datasets"))
    assert Settings().database_url() == f"sqlite:///{tmp_path / 'data' / 'cggm.db'}"
    monkeypatch.setenv("CGGM_DB_DIR", str(tmp_path / "db"))
    assert Settings().database_url() == f"sqlite:///{tmp_path / 'db' / 'cggm.db'}"


def _serve_database_line(tmp_path: Path, *flags: str, env: dict[str, str]) -> str:
    """The `database ...` line `cggm serve` prints at start (then the server is stopped)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CGGM_")}
    cmd = [sys.executable, "-m", "cggm_core", "serve", "--port", str(free_port()), *flags]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env={**clean, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "database " in line:
                return line.split("database ", 1)[1].strip()
        raise AssertionError(f"cggm serve exited ({proc.wait()}) without naming its database")
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize("flag", ["--db-dir", "--data-dir"])  # --data-dir: the old name, kept hidden
def test_serve_takes_db_dir_and_the_old_flag(tmp_path: Path, flag: str) -> None:
    line = _serve_database_line(tmp_path, flag, str(tmp_path / "here"), env={"CGGM_DATA_DIR": str(tmp_path / "x")})
    assert line == f"sqlite:///{tmp_path / 'here' / 'cggm.db'}"


def test_serve_ignores_the_data_root(tmp_path: Path) -> None:
    line = _serve_database_line(tmp_path, env={"CGGM_DATA_DIR": str(tmp_path / "datasets")})
    assert line == f"sqlite:///{tmp_path / 'data' / 'cggm.db'}"
    line = _serve_database_line(tmp_path, env={"CGGM_DB_DIR": str(tmp_path / "db")})
    assert line == f"sqlite:///{tmp_path / 'db' / 'cggm.db'}"


def test_db_dir_is_in_help_and_the_old_flag_is_not() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cggm_core", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "--db-dir" in r.stdout and "--data-dir" not in r.stdout
