"""Atomic writes: old content or complete new content, never a torn file or a stray temp."""

from __future__ import annotations

import os
import stat

import pytest

from speech_repro.repro.atomic import atomic_open, atomic_path, atomic_write_bytes


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
