"""Which process is this, and is a recorded one still alive?

A pid alone does not name a process: pids are reused. A process is named by its host, its pid
and its start time (``/proc/<pid>/stat`` field 22, clock ticks since boot), plus the boot id so
a reboot, which restarts both counters, never makes a dead process look alive.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Liveness = Literal["alive", "dead", "unknown"]


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as a run record or a temporary file's name records it."""

    host: str
    pid: int
    start_time: int | None
    """Clock ticks after boot at which the process started (None where /proc is absent)."""
    boot_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks after boot; None if there is no such process
    (or no /proc to ask)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of the whole line; fields[0] here is field 3


def boot_id() -> str | None:
    """This boot's random id (Linux), None elsewhere."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def current_process() -> ProcessIdentity:
    """This process."""
    pid = os.getpid()
    return ProcessIdentity(os.uname().nodename, pid, start_time(pid), boot_id())


def pid_exists(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (a zombie counts: it is not reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def is_alive_here(pid: int, started: int | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs on this host.

    A pid that now belongs to a process with another start time is a reused pid: the recorded
    process is dead. Without a recorded start time, an existing pid counts as alive.
    """
    if not pid_exists(pid):
        return False
    if started is None:
        return True
    now = start_time(pid)
    return now is None or now == started


def liveness(process: ProcessIdentity) -> Liveness:
    """``alive``/``dead`` for a process of this host (and boot); ``unknown`` for another host's."""
    if process.host != os.uname().nodename:
        return "unknown"
    if process.boot_id is not None and boot_id() not in (None, process.boot_id):
        return "dead"  # this host rebooted since
    return "alive" if is_alive_here(process.pid, process.start_time) else "dead"
