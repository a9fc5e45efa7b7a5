"""Atomic writes: old content or complete new content, never a torn file or a stray temp."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from kedro_repro.atomic import (
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    remove_stale_temps,
)
from kedro_repro.processes import current_process


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_write_bytes_creates_parents_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "file.bin"
    atomic_write_bytes(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert os.listdir(target.parent) == ["file.bin"]


def test_overwrite_replaces_content(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_bytes(target, b"old content that is longer")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_failure_inside_atomic_open_keeps_old_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_open(target) as handle:
        handle.write("partial new content")
        handle.flush()
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_failure_without_previous_file_creates_nothing(tmp_path):
    target = tmp_path / "f.txt"
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_text("x")
        raise ValueError
    assert os.listdir(tmp_path) == []


def test_content_not_visible_until_block_ends(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with atomic_open(target) as handle:
        handle.write("new")
        handle.flush()
        assert target.read_text() == "old"
    assert target.read_text() == "new"


def test_temp_file_is_a_hidden_sibling(tmp_path):
    target = tmp_path / "f.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".f.txt.") and tmp.name.endswith(".tmp")
        tmp.write_text("x")
    assert not tmp.exists()


def test_permissions_follow_umask_not_mkstemp(tmp_path, umask_022):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    with atomic_open(tmp_path / "g.txt") as handle:
        handle.write("x")
    assert stat.S_IMODE((tmp_path / "g.txt").stat().st_mode) == 0o644


def test_permissions_respect_stricter_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o600


def _killed_writer(target) -> None:
    """A child process that starts an atomic write of ``target`` and is SIGKILLed mid-write."""
    script = (
        "import sys, time\n"
        "from kedro_repro.atomic import atomic_open\n"
        "with atomic_open(sys.argv[1], 'wb') as handle:\n"
        "    handle.write(b'partial'); handle.flush(); print('writing', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline() == "writing\n"
    child.send_signal(signal.SIGKILL)
    child.wait()


def test_an_interrupted_writers_temp_is_removed_and_a_live_writers_is_kept(tmp_path):
    target = tmp_path / "model.safetensors"
    _killed_writer(target)
    (leftover,) = tmp_path.glob(".model.safetensors.*.tmp")
    with atomic_path(tmp_path / "other.bin") as live:  # a write in progress in a live process
        live.write_bytes(b"x")
        time.sleep(0.01)
        removed = remove_stale_temps(tmp_path)
        assert removed == [leftover] and not leftover.exists()
        assert live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.bin"]


def test_a_new_write_of_the_same_file_removes_the_interrupted_writes_temp(tmp_path):
    target = tmp_path / "record.json"
    _killed_writer(target)
    atomic_write_bytes(target, b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_a_temp_of_a_reused_pid_with_another_start_time_is_stale(tmp_path):
    own = current_process()
    stale = tmp_path / f".f.bin.{own.pid}-{(own.start_time or 0) + 1}.abcdefgh.tmp"
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 5, time.time() - 5))
    assert remove_stale_temps(tmp_path) == [stale]
