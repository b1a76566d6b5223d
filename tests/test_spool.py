"""Spool files on their own (real files in tmp_path): where they live, how they are named, how
progress is committed and what a damaged file does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cggm_core.spool import (
    FileSpool,
    SpoolBusy,
    SpoolLock,
    dead_letter_path,
    find_finish_records,
    find_spools,
    finish_record_path,
    remove_orphan_locks,
    run_spool_paths,
    server_slug,
    spool_roots,
)


def line(step: int) -> str:
    return json.dumps({"key": "k", "step": step, "value": 0.5, "time": 1.0})


def test_spool_roots_are_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CGGM_SPOOL_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    roots = spool_roots()
    assert roots[0] == tmp_path / "cache" / "cggm" / "spool"
    assert roots[1] == tmp_path / "home" / ".cache" / "cggm" / "spool"
    assert roots[-1].name == f"cggm-spool-{os.getuid()}"  # never one shared /tmp/cggm-spool
    monkeypatch.setenv("CGGM_SPOOL_DIR", str(tmp_path / "mine"))
    assert spool_roots() == [tmp_path / "mine"]
    assert spool_roots(tmp_path / "explicit") == [tmp_path / "explicit"]


def test_a_runs_spool_is_named_after_the_server_and_the_run(tmp_path: Path) -> None:
    assert server_slug("http://127.0.0.1:8000/") == "127.0.0.1_8000"
    assert server_slug("https://tracker.example.org/cggm") == "tracker.example.org_443_cggm"
    assert run_spool_paths("http://127.0.0.1:8000", 12, tmp_path) == [tmp_path / "127.0.0.1_8000" / "run-12.jsonl"]
    folder = tmp_path / "127.0.0.1_8000"
    folder.mkdir()
    spool = folder / "run-12.jsonl"
    for name in ("run-12.jsonl", "run-3.p77-1.jsonl", "run-12.dead.jsonl", "run-12.jsonl.acked", "run-12.finish.json"):
        (folder / name).write_text("")
    assert find_spools("http://127.0.0.1:8000", tmp_path) == [(3, folder / "run-3.p77-1.jsonl"), (12, spool)]
    assert find_finish_records("http://127.0.0.1:8000", tmp_path) == [(12, folder / "run-12.finish.json")]
    assert dead_letter_path(spool).name == "run-12.dead.jsonl"
    assert finish_record_path(spool).name == "run-12.finish.json"
    assert find_spools("http://127.0.0.1:9999", tmp_path) == []


def test_committed_progress_survives_a_new_process_and_a_stale_record_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "run-1.jsonl"
    first = FileSpool(path)
    first.append([line(s) for s in range(10)])
    chunk = first.read_chunk(4)
    assert chunk is not None and [json.loads(x)["step"] for x in chunk.lines] == [0, 1, 2, 3]
    first.commit(chunk)
    again = FileSpool(path)  # a later process
    assert again.offset == chunk.end and again.count_pending() == 6
    rest = again.read_chunk(100)
    assert rest is not None and [json.loads(x)["step"] for x in rest.lines] == list(range(4, 10))
    again.commit(rest)
    assert not path.exists() and not again.ack_path.exists()  # fully sent: both removed
    # A progress record that does not belong to the file (another inode) is ignored: resend all.
    FileSpool(path).append([line(s) for s in range(3)])
    again.ack_path.write_text(json.dumps({"offset": 20, "inode": path.stat().st_ino + 1}))
    assert FileSpool(path).offset == 0


def test_a_half_written_tail_becomes_one_corrupt_line(tmp_path: Path) -> None:
    path = tmp_path / "run-1.jsonl"
    path.write_text(line(0) + "\n" + line(1)[:12])  # killed mid-write
    spool = FileSpool(path)
    spool.append([line(2)])  # the next process's point is not swallowed by the half line
    chunk = spool.read_chunk(100)
    assert chunk is not None and chunk.corrupt == 1
    assert [json.loads(x)["step"] for x in chunk.lines] == [0, 2]


def test_an_overlong_garbage_line_is_skipped_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "run-1.jsonl"
    with path.open("wb") as f:
        f.write(line(0).encode() + b"\n" + b"x" * (3 << 20) + b"\n" + line(1).encode() + b"\n")
    chunk = FileSpool(path).read_chunk(100)
    assert chunk is not None and chunk.corrupt == 1 and len(chunk.lines) == 2


def test_a_spool_is_owned_by_one_holder_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "run-1.jsonl"
    held = SpoolLock(path)
    with pytest.raises(SpoolBusy):
        SpoolLock(path)
    held.release(remove=True)
    SpoolLock(path).release(remove=True)
    assert not (tmp_path / "run-1.jsonl.lock").exists()


def test_locks_left_by_killed_processes_are_cleaned_up(tmp_path: Path) -> None:
    folder = tmp_path / "127.0.0.1_8000"
    folder.mkdir()
    (folder / "run-1.jsonl.lock").write_text("")  # orphan: its process died, nothing was spooled
    (folder / "run-2.jsonl").write_text(line(0) + "\n")
    (folder / "run-2.jsonl.lock").write_text("")  # beside a spool: kept
    held = SpoolLock(folder / "run-3.jsonl")  # a live owner (nothing spooled yet): kept
    remove_orphan_locks("http://127.0.0.1:8000", tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["run-2.jsonl", "run-2.jsonl.lock", "run-3.jsonl.lock"]
    held.release(remove=True)
    (folder / "run-2.jsonl").unlink()
    remove_orphan_locks("http://127.0.0.1:8000", tmp_path)
    assert not folder.exists()
