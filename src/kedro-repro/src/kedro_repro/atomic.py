"""Crash-safe file writes: write to a temporary sibling, flush, fsync, then rename into place.

A reader therefore sees either the old file or the complete new one, never a torn write.

A temporary file is named after its target and its writer, ``.<name>.<pid>-<start time>.<random>.tmp``,
so one that a killed writer left behind can be told from one a live writer is still filling:
:func:`remove_stale_temps` removes only those whose writer process is gone.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from kedro_repro.processes import current_process, is_alive_here

logger = logging.getLogger(__name__)

_TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-(?P<start>\d+)\.[A-Za-z0-9_]+\.tmp$")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsync'ed and renamed to ``path``.

    Temporary files of earlier, interrupted writes of the same ``path`` are removed first.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent, target.name)
    writer = current_process()
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.{writer.pid}-{writer.start_time or 0}.",
        suffix=".tmp",
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600, and so do writers that replace the file (safetensors writes its
        # own temporary and renames it over ours): give the file the umask's permissions last.
        os.chmod(tmp, 0o666 & ~_umask())
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(target.parent)  # make the rename itself durable
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` atomically when closed."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def remove_stale_temps(
    directory: str | Path, target: str | None = None, opened: float | None = None
) -> list[Path]:
    """Remove the temporary files in ``directory`` that interrupted writes left; returns them.

    A temporary file is removed only when it is older than ``opened`` (default: now) and its
    writer, named in the file name by pid and start time, no longer runs on this host: a
    concurrent writer's file is never touched, and a pid reused by another process does not
    keep a dead writer's file alive. ``target`` limits this to the temporaries of one file.
    Temporaries named otherwise (other programs, older code) are left alone.
    """
    directory = Path(directory)
    opened = time.time() if opened is None else opened
    pattern = f".{glob.escape(target)}.*.tmp" if target else ".*.tmp"
    removed = []
    for temp in sorted(directory.glob(pattern)):
        match = _TEMP.match(temp.name)
        if match is None or (target is not None and match["target"] != target):
            continue
        started = int(match["start"]) or None  # 0: the writer's start time was unknown
        try:
            if temp.lstat().st_mtime >= opened or is_alive_here(int(match["pid"]), started):
                continue
            temp.unlink()
        except FileNotFoundError:  # another process cleaned it up first
            continue
        logger.info("Removed %s, left by an interrupted write (its writer is gone)", temp)
        removed.append(temp)
    return removed


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (os.umask can only
    be read by setting it, which would briefly loosen it for every other thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: Path) -> None:
    """fsync a file or directory by path (a directory: make its entries durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
