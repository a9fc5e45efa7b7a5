"""What differs between two run records, grouped: parameters, code, environment, data, ledger,
metrics. Only differences are kept; nested sections are compared key by dotted key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro_repro.record import SNAPSHOT_FILE, Environment, RunRecord

THREAD_KEYS = ("num_threads", "num_interop_threads", "deterministic_algorithms", "cpu_capability")
"""The torch section's fields that decide CPU results besides the packages."""


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys (``training.seed``); other values are leaves."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    """Dotted key -> ``[a's value, b's value]`` for every key whose values differ (None: absent)."""
    fa, fb = flatten(a), flatten(b)
    return {
        k: [fa.get(k), fb.get(k)] for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)
    }


def read_snapshot(runs_dir: Path, run_id: str) -> dict[str, str]:
    """The run's data snapshot (item -> digest), empty when the run prepared no data."""
    path = runs_dir / run_id / SNAPSHOT_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _threads(environment: Environment) -> dict[str, Any]:
    torch_section = environment.torch or {}  # None: torch was not imported by the run
    return {k: torch_section.get(k) for k in THREAD_KEYS} | environment.determinism_env


def diff_records(
    a: RunRecord,
    b: RunRecord,
    snapshot_a: dict[str, str] | None = None,
    snapshot_b: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Only what differs between records ``a`` and ``b``, grouped; the data group compares
    their snapshots (see :func:`read_snapshot`) and says whether both runs recorded one."""
    ea, eb = a.environment, b.environment
    sa, sb = snapshot_a or {}, snapshot_b or {}
    metrics = {}
    for key, (x, y) in changes(a.metrics or {}, b.metrics or {}).items():
        delta = y - x if isinstance(x, int | float) and isinstance(y, int | float) else None
        metrics[key] = {"a": x, "b": y, "delta": delta}
    return {
        "parameters": changes(
            a.parameters.design | a.parameters.tunable,
            b.parameters.design | b.parameters.tunable,
        ),
        "code": changes(
            {"git": ea.git, "lock_files": ea.lock_files},
            {"git": eb.git, "lock_files": eb.lock_files},
        ),
        "environment": {
            "packages": changes(ea.packages, eb.packages),
            "hardware": changes(ea.hardware, eb.hardware),
            "threads": changes(_threads(ea), _threads(eb)),
            "python": changes(ea.python, eb.python),
        },
        "data": {
            "recorded": bool(sa) and bool(sb),  # a run that did not prepare data has no snapshot
            "added": sorted(sb.keys() - sa.keys()) if sa and sb else [],
            "removed": sorted(sa.keys() - sb.keys()) if sa and sb else [],
            "changed": sorted(k for k in sa.keys() & sb.keys() if sa[k] != sb[k]),
        },
        "ledger": {
            name: [a.ledger[name].digest, b.ledger[name].digest]
            for name in sorted(a.ledger.keys() & b.ledger.keys())
            if a.ledger[name].digest != b.ledger[name].digest
        },
        "metrics": metrics,
    }


def explain_divergence(old: RunRecord, new: RunRecord) -> dict[str, Any]:
    """The differences that can explain a replay's divergence: parameters, code, environment.

    A replay's copy is no git checkout, so git fields are not compared (they would all differ);
    the lock files it ran with are.
    """
    groups = diff_records(old, new)
    groups["code"] = {k: v for k, v in groups["code"].items() if not k.startswith("git")}
    return {k: groups[k] for k in ("parameters", "code", "environment")}
