"""A persistent cache of file content digests, so an unchanged corpus is not read again.

A cached digest is reused only while the file's *stat key* is unchanged:
``(resolved path, st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)``.

- ``st_ctime_ns`` is in the key because an edit that keeps the size and then restores the mtime
  with ``os.utime`` fools an ``(inode, mtime, size)`` key; users cannot set ctime back, and every
  write or ``utime`` call moves it forward.
- ``st_dev`` is in the key because two file systems can hold the same inode number.

Two further guards keep a stale digest out of the cache:

- The file is stat-ed before and after it is read; if the two keys differ (it changed while being
  read) the digest is returned but not stored.
- A digest is stored only once the file's ctime is at least ``racy_window_s`` in the past when the
  read finishes. File timestamps have a coarse granularity (a kernel tick, or worse on some file
  systems), so a write landing in the same tick as the last change could otherwise leave the
  whole key unchanged -- git's "racily clean" problem. Recently changed files are simply hashed
  again next time.

The cache is an SQLite database (stdlib :mod:`sqlite3`) in WAL mode with a busy timeout, so
several processes can share one cache file; every update is a transaction, so no reader ever sees
a half-written row. The cache is only an optimisation: a corrupt or unreadable cache file is
rebuilt (or, failing that, replaced by an in-memory cache) with a logged warning, never an error.

Nothing here knows about audio; any file set can be cached.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from kedro_repro.hashing import file_digest

__all__ = ["DigestCache"]

logger = logging.getLogger(__name__)

_TABLE = "file_digests_v1"  # a new schema gets a new table name; old rows are simply ignored
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    path TEXT PRIMARY KEY,
    stat_key TEXT NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID
"""
# A pool task hashes files until it has this many bytes or files.
_BATCH_BYTES = 4 << 20
_BATCH_FILES = 64
# SQLite primary result codes that mean "this file is not a usable database".
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

StatKey = str


def _stat_key(st: os.stat_result) -> StatKey:
    """The stat fields a cached digest depends on, as text (st_ino may not fit SQLite's int64)."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _is_corruption(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    message = str(error).lower()
    return "not a database" in message or "malformed" in message


class DigestCache:
    """Digests of files keyed by (resolved path, st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns).

    Digests are those of :func:`kedro_repro.hashing.file_digest` (``blake3:<hex>``).

    Args:
        path: SQLite database file holding the cache; its directory is created if missing.
            ``None`` keeps the cache in memory for the life of this object only.
        racy_window_s: a digest is stored only if the file's ctime was at least this long ago
            when its read finished (see the module docstring); must exceed the file system's
            timestamp granularity.
        timeout_s: how long to wait for another process's write lock before giving up on
            caching (the digest is still returned).

    ``hits`` and ``misses`` count looked-up paths served from the cache and hashed, since
    construction. One instance may be shared between threads; each process should open its own.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        racy_window_s: float = 2.0,
        timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.racy_window_ns = int(racy_window_s * 1e9)
        self.timeout_s = timeout_s
        self.hits = 0
        self.misses = 0
        self._lock = threading.RLock()
        self._conn = self._open()

    # -- database handling -------------------------------------------------------------------

    def _connect(self, target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            target, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            if target != ":memory:":
                # WAL: readers never block the writer and never see uncommitted rows. Changing
                # the journal mode needs a brief exclusive lock, so retry while others hold it.
                deadline = time.monotonic() + self.timeout_s
                while True:
                    try:
                        conn.execute("PRAGMA journal_mode=WAL").fetchone()
                        break
                    except sqlite3.OperationalError as error:
                        if "locked" not in str(error) or time.monotonic() > deadline:
                            raise
                        time.sleep(0.01)
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            conn.execute(f"SELECT 1 FROM {_TABLE} LIMIT 1").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> sqlite3.Connection:
        """Connect to the cache file, rebuilding it if corrupt; in memory as a last resort."""
        if self.path is None:
            return self._connect(":memory:")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                return self._connect(str(self.path))
            except sqlite3.DatabaseError as error:
                if not _is_corruption(error):
                    raise
                logger.warning(
                    "Digest cache %s is corrupt (%s); rebuilding it empty", self.path, error
                )
                self._remove_files()
                return self._connect(str(self.path))
        except (OSError, sqlite3.Error) as error:
            logger.warning(
                "Digest cache %s is unusable (%s); caching in memory for this process only",
                self.path,
                error,
            )
            return self._connect(":memory:")

    def _remove_files(self) -> None:
        assert self.path is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _recover(self, error: sqlite3.Error, action: str) -> None:
        """Handle a database error met while in use: rebuild if corrupt, otherwise carry on."""
        if _is_corruption(error):
            logger.warning(
                "Digest cache %s became corrupt while %s (%s); rebuilding it empty",
                self.path,
                action,
                error,
            )
            self._conn.close()
            if self.path is not None:
                with contextlib.suppress(OSError):
                    self._remove_files()
            self._conn = self._open()
        else:
            logger.warning(
                "Digest cache %s failed while %s (%s); continuing without it for this call",
                self.path,
                action,
                error,
            )

    def _lookup(self, keys: Sequence[tuple[str, StatKey]]) -> dict[str, str]:
        """Cached digests of those ``(path, stat key)`` pairs whose stored key matches."""
        found: dict[str, str] = {}
        with self._lock:
            try:
                cursor = self._conn.cursor()
                cursor.execute("BEGIN")  # one consistent snapshot for the whole batch
                try:
                    for resolved, key in keys:
                        row = cursor.execute(
                            f"SELECT stat_key, digest FROM {_TABLE} WHERE path = ?", (resolved,)
                        ).fetchone()
                        if row is not None and row[0] == key:
                            found[resolved] = row[1]
                finally:
                    cursor.execute("COMMIT")
            except sqlite3.Error as error:
                self._recover(error, "reading")
                return {}
        return found

    def _store(self, rows: Sequence[tuple[str, StatKey, str]]) -> None:
        """Insert or replace ``(path, stat key, digest)`` rows in one transaction."""
        if not rows:
            return
        with self._lock:
            try:
                cursor = self._conn.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    cursor.executemany(
                        f"INSERT OR REPLACE INTO {_TABLE} (path, stat_key, digest) VALUES (?, ?, ?)",
                        rows,
                    )
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
            except sqlite3.Error as error:
                self._recover(error, "writing")

    # -- public API --------------------------------------------------------------------------

    def digest(self, path: str | Path) -> str:
        """Digest of one file's content, from the cache when its stat key is unchanged.

        Raises:
            FileNotFoundError: if ``path`` does not exist.
        """
        return self.digests([path], workers=1)[0]

    def digests(self, paths: Sequence[str | Path], workers: int = 2) -> list[str]:
        """Digests of many files, in the order of ``paths``.

        Cache lookups happen in one read transaction; misses are hashed in a pool of ``workers``
        threads (BLAKE3 releases the GIL while hashing) and stored in one write transaction.

        Raises:
            FileNotFoundError: if any path does not exist (before anything is hashed).
        """
        resolved: list[str] = []
        before: dict[str, StatKey] = {}
        sizes: dict[str, int] = {}
        for path in paths:
            name = os.path.realpath(path)  # as Path.resolve(), without pathlib's overhead
            try:
                st = os.stat(name)
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, "No such file to digest", str(path)) from None
            resolved.append(name)
            before[name] = _stat_key(st)
            sizes[name] = st.st_size

        cached = self._lookup(list(before.items()))
        to_hash = [name for name in before if name not in cached]
        hit_count = sum(name in cached for name in resolved)
        with self._lock:
            self.hits += hit_count
            self.misses += len(resolved) - hit_count

        def hash_one(name: str) -> tuple[str, str, StatKey | None]:
            digest = file_digest(name)
            st = os.stat(name)
            finished_ns = time.time_ns()
            key = _stat_key(st)
            unchanged = key == before[name]
            settled = finished_ns - st.st_ctime_ns >= self.racy_window_ns
            return name, digest, key if unchanged and settled else None

        def hash_batch(batch: list[str]) -> list[tuple[str, str, StatKey | None]]:
            return [hash_one(name) for name in batch]

        if workers > 1 and len(to_hash) > 1:
            # Small files go to the pool in batches: one task per file costs more than hashing it.
            batches: list[list[str]] = [[]]
            batch_bytes = 0
            for name in to_hash:
                if batches[-1] and (
                    batch_bytes >= _BATCH_BYTES or len(batches[-1]) >= _BATCH_FILES
                ):
                    batches.append([])
                    batch_bytes = 0
                batches[-1].append(name)
                batch_bytes += sizes[name]
            with ThreadPoolExecutor(max_workers=min(workers, len(batches))) as pool:
                results = [row for rows in pool.map(hash_batch, batches) for row in rows]
        else:
            results = hash_batch(to_hash)

        computed = {name: digest for name, digest, _ in results}
        self._store([(name, key, digest) for name, digest, key in results if key is not None])
        return [cached[name] if name in cached else computed[name] for name in resolved]

    def close(self) -> None:
        """Close the database connection; the cache file stays for the next run."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> DigestCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
