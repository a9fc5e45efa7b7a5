"""Persistent digest cache: hits only while a file's full stat key, ctime included, is unchanged."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from kedro_repro import digest_cache as digest_cache_module
from kedro_repro.digest_cache import DigestCache
from kedro_repro.hashing import file_digest

# Tests use a short racy window so freshly written files become cacheable after a brief pause;
# the pause is far longer than the kernel's timestamp granularity (a few milliseconds at most).
WINDOW_S = 0.02
SETTLE_S = 0.05


def settle() -> None:
    """Wait until files written so far are older than the racy window."""
    time.sleep(SETTLE_S)


def make_files(directory, count, size=4096):
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"utt_{i:04d}.bin"
        path.write_bytes(i.to_bytes(4, "little") * (size // 4))
        paths.append(path)
    return paths


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged():
    handler = _Records()
    logger = logging.getLogger(digest_cache_module.__name__)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def test_hit_on_unchanged_file_and_miss_after_content_change(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF" + b"\x01" * 1000)
    settle()
    with DigestCache(tmp_path / "cache.sqlite", racy_window_s=WINDOW_S) as cache:
        first = cache.digest(path)
        assert first == file_digest(path)
        assert (cache.hits, cache.misses) == (0, 1)
        assert cache.digest(path) == first
        assert cache.digest(str(path)) == first
        assert (cache.hits, cache.misses) == (2, 1)

        path.write_bytes(b"RIFF" + b"\x02" * 2000)
        settle()
        second = cache.digest(path)
        assert second == file_digest(path) != first
        assert (cache.hits, cache.misses) == (2, 2)
        assert cache.digest(path) == second
        assert (cache.hits, cache.misses) == (3, 2)


def test_same_size_edit_with_restored_mtime_is_detected_through_ctime(tmp_path):
    path = tmp_path / "utt.wav"
    original = bytes(range(256)) * 64
    path.write_bytes(original)
    settle()
    cache = DigestCache(tmp_path / "cache.sqlite", racy_window_s=WINDOW_S)
    old_digest = cache.digest(path)
    assert cache.digest(path) == old_digest and cache.hits == 1  # cached, would be reused
    before = os.stat(path)

    # Overwrite in place with different bytes of the same size, then put atime/mtime back.
    edited = bytes(reversed(original))
    assert len(edited) == len(original) and edited != original
    with open(path, "r+b") as handle:
        handle.write(edited)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)

    # Every field of an (inode, mtime, size) key is as before: such a key would have hit ...
    old_style = lambda st: (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)  # noqa: E731
    assert old_style(after) == old_style(before)
    # ... but ctime moved forward, and users cannot set it back.
    assert after.st_ctime_ns > before.st_ctime_ns

    new_digest = cache.digest(path)
    assert new_digest == file_digest(path) != old_digest
    assert (cache.hits, cache.misses) == (1, 2)
    cache.close()


def test_cache_persists_across_instances(tmp_path):
    paths = make_files(tmp_path / "corpus", 20)
    settle()
    db = tmp_path / "nested" / "dir" / "cache.sqlite"  # directories created on demand
    with DigestCache(db, racy_window_s=WINDOW_S) as cache:
        first = cache.digests(paths)
        assert (cache.hits, cache.misses) == (0, 20)
    assert db.is_file()
    with DigestCache(db, racy_window_s=WINDOW_S) as cache:
        assert cache.digests(paths) == first
        assert (cache.hits, cache.misses) == (20, 0)
    assert first == [file_digest(p) for p in paths]


def test_digests_preserve_order_with_two_workers(tmp_path):
    paths = make_files(tmp_path / "corpus", 40, size=8192)
    settle()
    order = paths[::-1] + paths[:5]  # reversed, plus repeats
    expected = [file_digest(p) for p in order]
    with DigestCache(None, racy_window_s=WINDOW_S) as cache:
        assert cache.digests(order, workers=2) == expected
        assert cache.misses == len(order) and cache.hits == 0
        # Half cached, half not: order must still hold.
        cache2_order = paths[::2] + paths[1::2]
        assert cache.digests(cache2_order, workers=2) == [file_digest(p) for p in cache2_order]
        assert cache.hits == len(cache2_order)
    assert len(set(expected[:40])) == 40


def test_recently_changed_files_are_not_cached(tmp_path):
    path = tmp_path / "fresh.wav"
    path.write_bytes(b"x" * 100)
    with DigestCache(None, racy_window_s=60.0) as cache:
        assert cache.digest(path) == file_digest(path)
        assert cache.digest(path) == file_digest(path)
        assert (cache.hits, cache.misses) == (0, 2)  # ctime too recent to trust the key


def test_file_changed_while_hashing_is_not_cached(tmp_path, monkeypatch):
    path = tmp_path / "growing.wav"
    path.write_bytes(b"a" * 100)
    settle()

    def hash_then_append(p):
        digest = file_digest(p)
        with open(p, "ab") as handle:
            handle.write(b"b")
        return digest

    with DigestCache(None, racy_window_s=WINDOW_S) as cache:
        monkeypatch.setattr(digest_cache_module, "file_digest", hash_then_append)
        cache.digest(path)
        monkeypatch.setattr(digest_cache_module, "file_digest", file_digest)
        settle()
        assert cache.digest(path) == file_digest(path)
        assert (cache.hits, cache.misses) == (0, 2)


def test_missing_file_raises_file_not_found_naming_it(tmp_path):
    real = make_files(tmp_path, 1)[0]
    missing = tmp_path / "no_such_utterance.wav"
    with DigestCache(None) as cache:
        with pytest.raises(FileNotFoundError, match=r"no_such_utterance\.wav") as info:
            cache.digests([real, missing])
        assert info.value.filename == str(missing)
        assert cache.misses == 0  # nothing was hashed


def test_corrupt_cache_file_is_rebuilt_with_a_warning(tmp_path, warnings_logged):
    paths = make_files(tmp_path / "corpus", 5)
    settle()
    db = tmp_path / "cache.sqlite"
    db.write_bytes(b"\x00garbage, not SQLite\xff" * 300)
    with DigestCache(db, racy_window_s=WINDOW_S) as cache:
        assert cache.digests(paths) == [file_digest(p) for p in paths]
    assert any("corrupt" in message for message in warnings_logged)
    # The rebuilt file is a real SQLite database that now serves hits.
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with DigestCache(db, racy_window_s=WINDOW_S) as cache:
        cache.digests(paths)
        assert cache.hits == 5


_CHILD = """
import json, sys
from kedro_repro.digest_cache import DigestCache
db, window, paths = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
with DigestCache(db, racy_window_s=window) as cache:
    results = [cache.digests(paths[offset:] + paths[:offset], workers=2) for offset in (0, 7, 0)]
    results[1] = results[1][-7:] + results[1][:-7]
    print(json.dumps({"results": results, "hits": cache.hits, "misses": cache.misses}))
"""


def test_two_processes_share_one_cache_file(tmp_path):
    paths = [str(p) for p in make_files(tmp_path / "corpus", 150, size=16384)]
    settle()
    db = tmp_path / "shared" / "cache.sqlite"
    command = [sys.executable, "-c", _CHILD, str(db), str(WINDOW_S), *paths]
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=60) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    expected = [file_digest(p) for p in paths]
    for out, _ in outputs:
        report = json.loads(out)
        assert all(result == expected for result in report["results"])
        assert report["hits"] + report["misses"] == 3 * len(paths)
        assert report["hits"] >= 2 * len(paths)  # later passes are served from the cache
    with DigestCache(db, racy_window_s=WINDOW_S) as cache:
        assert cache.digests(paths) == expected
        assert cache.hits == len(paths)
