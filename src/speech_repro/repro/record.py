"""The run record: one JSON document per run, with a schema version, rewritten atomically.

It lives at ``data/09_runs/<run id>/record.json`` beside the run's data snapshot. It is written
when the run starts, after every node and when the run ends, so a crashed run still leaves an
honest partial record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from speech_repro.repro.atomic import atomic_open

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"
SNAPSHOT_FILE = "data_snapshot.json"


def write_json(path: Path, document: Any) -> None:
    """Atomically write ``document`` as indented JSON."""
    with atomic_open(path) as handle:
        json.dump(document, handle, indent=1, sort_keys=False, default=str)
        handle.write("\n")


def read_record(runs_dir: Path, run_id: str) -> dict[str, Any]:
    """The record of ``run_id``; raises FileNotFoundError naming the known runs when absent."""
    path = runs_dir / run_id / RECORD_FILE
    if not path.exists():
        known = ", ".join(r["run_id"] for r in list_records(runs_dir)[-5:]) or "none"
        raise FileNotFoundError(f"no record for run {run_id!r} in {runs_dir} (latest: {known})")
    return json.loads(path.read_text())


def list_records(runs_dir: Path) -> list[dict[str, Any]]:
    """Every readable record under ``runs_dir``, oldest first."""
    if not runs_dir.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(runs_dir.glob(f"*/{RECORD_FILE}"))]


def status(record: dict[str, Any]) -> str:
    """complete, resumed (complete after continuing another run), crashed, or running."""
    if record["status"] == "complete":
        return "resumed" if record.get("resumed_from") else "complete"
    if record["status"] == "running" and not _alive(record):
        return "crashed"
    return record["status"]


def _alive(record: dict[str, Any]) -> bool:
    if record.get("hostname") != os.uname().nodename:
        return True  # cannot tell from here
    try:
        os.kill(int(record["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError):
        return False
    except PermissionError:
        return True
    return True
