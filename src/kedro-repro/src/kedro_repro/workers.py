"""Processes other than the Kedro one that compute part of a run, and their environments.

A node may hand work to other processes, on this machine or on others (one per machine of a
multi-machine training, say). The run record's ``environment`` is the Kedro process's own; each
of those processes has its own interpreter, packages, variables, hardware and checkout, and a
run on several machines is only described when every one is recorded. So:

1. each such process calls :func:`write_worker`, which captures its environment as
   :func:`~kedro_repro.environment.capture_environment` does for the Kedro process (secrets
   redacted the same way) into a JSON file in a directory its launcher reads;
2. the launcher reads them back (:func:`read_workers`) and calls :func:`report`;
3. the :class:`~kedro_repro.hooks.RunRecordHook` adds them to the record's ``workers``.

Reporting observes the run like logging does; it changes no output, and outside a recorded run
(a node called from a test) it does nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kedro_repro.atomic import atomic_open
from kedro_repro.config import EnvironmentSpec
from kedro_repro.environment import capture_environment
from kedro_repro.processes import current_process

WORKER_SUFFIX = ".worker.json"

_sink: Callable[[list[dict[str, Any]]], None] | None = None


def write_worker(
    directory: Path,
    name: str,
    details: dict[str, Any],
    project: Path | None = None,
    spec: EnvironmentSpec | None = None,
) -> Path:
    """Capture this process (identity, ``details``, environment) as ``<directory>/<name>.worker.json``.

    ``project`` is the checkout this process runs (its git state and lock-file digests are
    recorded), ``spec`` the project's environment specification. Returns the file written.
    """
    entry = {
        "name": name,
        "process": current_process().to_dict(),
        "details": details,
        "environment": capture_environment(project, spec),
    }
    path = Path(directory) / f"{name}{WORKER_SUFFIX}"
    with atomic_open(path) as handle:
        json.dump(entry, handle, indent=1)
    return path


def read_workers(directory: Path) -> list[dict[str, Any]]:
    """Every worker file in ``directory``, by name."""
    paths = sorted(Path(directory).glob(f"*{WORKER_SUFFIX}"))
    return [json.loads(path.read_text()) for path in paths]


def publish(sink: Callable[[list[dict[str, Any]]], None] | None) -> None:
    """Make ``sink`` (the record hook's) receive what :func:`report` is given; None: nothing."""
    global _sink
    _sink = sink


def report(workers: Iterable[dict[str, Any]]) -> None:
    """Add ``workers`` (as :func:`read_workers` returns them) to the record of the run in progress."""
    if _sink is not None:
        _sink(list(workers))
