"""Replay a recorded run in isolation and grade how closely it reproduces, dataset by dataset.

Grades, best first: ``bitwise`` (same content digest), ``tolerance`` (tensors or numeric tables
allclose within rtol/atol), ``metric`` (the project's own equivalence test on its metrics), and
``diverged``. Nothing here knows about speech: the project passes its dataset names and its
metric-equivalence test in.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from speech_repro.repro.record import read_record
from speech_repro.repro.session import RUNS_DIR
from speech_repro.repro.state import flatten_state

GRADES = ["bitwise", "tolerance", "metric", "diverged"]


class DataChangedError(RuntimeError):
    """The data a run used is no longer what its record says; nothing was re-executed."""


@dataclass
class DatasetVerdict:
    """How one dataset of the replay compares with the recorded one."""

    dataset: str
    node: str
    grade: str
    max_abs_diff: float | None = None
    detail: str = ""


@dataclass
class Verification:
    """The outcome of :func:`verify`."""

    run_id: str
    replay_id: str
    workdir: str
    datasets: list[DatasetVerdict] = field(default_factory=list)
    overall: str = "bitwise"
    first_divergent_node: str | None = None
    explanation: dict[str, Any] = field(default_factory=dict)
    metric_test: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "datasets": [d.__dict__ for d in self.datasets]}


def check_data(snapshot: dict[str, str], current: dict[str, str]) -> dict[str, list[str]]:
    """Items added, removed and changed between the recorded snapshot and the current data."""
    return {
        "added": sorted(current.keys() - snapshot.keys()),
        "removed": sorted(snapshot.keys() - current.keys()),
        "changed": sorted(k for k in snapshot.keys() & current.keys() if snapshot[k] != current[k]),
    }


def isolated_copy(
    project: Path,
    record: dict[str, Any],
    workdir: Path,
    data_dirs: tuple[str, ...],
    overrides: dict[str, Any],
) -> None:
    """A project copy that replays ``record``: current code and catalog, recorded parameters.

    Raw data folders are hard-linked (copied across file systems): the replay writes new files by
    atomic rename, so the originals are never modified.
    """
    for name in ("conf", "src"):
        shutil.copytree(
            project / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("pyproject.toml", ".telemetry"):
        if (project / name).exists():
            shutil.copy2(project / name, workdir / name)
    shutil.rmtree(workdir / "conf" / "local", ignore_errors=True)
    (workdir / "conf" / "local").mkdir()
    for parameters in (workdir / "conf").glob("*/parameters*.yml"):
        parameters.unlink()
    recorded = copy.deepcopy({**record["parameters"]["design"], **record["parameters"]["tunable"]})
    for dotted, value in overrides.items():
        _set(recorded, dotted.split("."), value)
    (workdir / "conf" / "base" / "parameters.yml").write_text(
        yaml.safe_dump(recorded, sort_keys=False)
    )
    for data_dir in data_dirs:
        source = project / data_dir
        if source.exists():
            shutil.copytree(source, workdir / data_dir, copy_function=_link_or_copy)
    (workdir / "data").mkdir(exist_ok=True)


def _set(tree: dict, path: list[str], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def replay(workdir: Path, record: dict[str, Any], until: str | None) -> str:
    """Run the recorded pipelines in ``workdir`` in a fresh process; returns the replay's run id."""
    command = [sys.executable, "-m", "kedro", "run", "--pipelines", ",".join(record["pipelines"])]
    if record.get("env"):
        command += ["--env", record["env"]]
    if until:
        command += ["--to-nodes", until]
    result = subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"},
    )
    runs = (
        sorted(p.name for p in (workdir / RUNS_DIR).iterdir())
        if (workdir / RUNS_DIR).exists()
        else []
    )
    if result.returncode != 0 and not runs:
        raise RuntimeError(f"the replay failed before it started:\n{result.stderr[-4000:]}")
    return runs[-1]


def compare_values(a: Any, b: Any, rtol: float, atol: float) -> tuple[bool, float | None]:
    """Whether two non-identical values agree within tolerance, and their largest absolute difference."""
    if hasattr(a, "shards") and hasattr(b, "shards"):  # sharded tensors: compare item by item
        if list(a) != list(b):
            return False, None
        return compare_values({i: a[i] for i in a}, {i: b[i] for i in b}, rtol, atol)
    if isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame):
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            return False, None
        numeric = a.select_dtypes("number").columns
        if not a.drop(columns=numeric).equals(b.drop(columns=numeric)):
            return False, None
        diff = (a[numeric].astype(float) - b[numeric].astype(float)).abs().to_numpy()
        worst = float(diff.max()) if diff.size else 0.0
        return bool(
            ((a[numeric] - b[numeric]).abs() <= atol + rtol * b[numeric].abs()).all().all()
        ), worst
    try:
        tensors_a, skeleton_a = flatten_state(a)
        tensors_b, skeleton_b = flatten_state(b)
    except TypeError:
        return False, None
    if skeleton_a != skeleton_b and not tensors_a:
        return _json_close(skeleton_a, skeleton_b, rtol, atol)
    if tensors_a.keys() != tensors_b.keys() or any(
        tensors_a[k].shape != tensors_b[k].shape for k in tensors_a
    ):
        return False, None
    worst = max(
        (
            float((tensors_a[k].double() - tensors_b[k].double()).abs().max())
            for k in tensors_a
            if tensors_a[k].numel()
        ),
        default=0.0,
    )
    close = all(
        torch.allclose(tensors_a[k].double(), tensors_b[k].double(), rtol=rtol, atol=atol)
        for k in tensors_a
    )
    return close and _json_close(skeleton_a, skeleton_b, rtol, atol)[0], worst


def _json_close(a: Any, b: Any, rtol: float, atol: float) -> tuple[bool, float | None]:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(a - b) <= atol + rtol * abs(b), abs(a - b)
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        results = [_json_close(a[k], b[k], rtol, atol) for k in a]
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        results = [_json_close(x, y, rtol, atol) for x, y in zip(a, b, strict=True)]
    else:
        return a == b, None
    worst = max((r[1] for r in results if r[1] is not None), default=None)
    return all(r[0] for r in results), worst


def verify(
    project: Path,
    run_id: str,
    *,
    load_recorded: Callable[[Path, str, str], Any],
    node_order: list[tuple[str, list[str], list[str]]],
    metric_test: Callable[[Path, str, Path, str], dict[str, Any]] | None = None,
    explain: Callable[[dict, dict], dict] | None = None,
    data_dirs: tuple[str, ...] = ("data/01_raw",),
    until: str | None = None,
    overrides: dict[str, Any] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    workdir: Path | None = None,
) -> Verification:
    """Replay ``run_id`` in an isolated copy of ``project`` and grade every dataset it saves.

    ``load_recorded(project, run_id, dataset)`` loads a dataset as a run saved it;
    ``node_order`` lists ``(node, inputs, outputs)`` in execution order; ``metric_test`` decides
    metric equivalence from the two runs' outputs; ``explain`` lists the differences that can
    explain a divergence (environment, data, parameters).
    """
    record = read_record(project / RUNS_DIR, run_id)
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"verify-{run_id}-"))
    isolated_copy(project, record, workdir, data_dirs, overrides or {})
    replay_id = replay(workdir, record, until)
    new = read_record(workdir / RUNS_DIR, replay_id)
    result = Verification(run_id=run_id, replay_id=replay_id, workdir=str(workdir))
    if new["status"] != "complete":
        result.overall = "diverged"
        result.explanation = {
            "replay_error": new.get("error"),
            **(explain(record, new) if explain else {}),
        }
        return result
    worst = 0
    grades: dict[str, str] = {}
    for name, entry in new["ledger"].items():
        old = record["ledger"].get(name)
        if old is None:
            continue
        if old["digest"] == entry["digest"]:
            verdict = DatasetVerdict(name, entry["node"], "bitwise", 0.0)
        else:
            close, diff = compare_values(
                load_recorded(project, run_id, name),
                load_recorded(workdir, replay_id, name),
                rtol,
                atol,
            )
            verdict = DatasetVerdict(
                name, entry["node"], "tolerance" if close else "diverged", diff
            )
        grades[name] = verdict.grade
        result.datasets.append(verdict)
        worst = max(worst, GRADES.index(verdict.grade))
    result.overall = GRADES[worst]
    if worst >= GRADES.index("tolerance"):
        for node, inputs, outputs in node_order:
            inputs_match = all(grades.get(i, "bitwise") == "bitwise" for i in inputs)
            if inputs_match and any(grades.get(o) not in (None, "bitwise") for o in outputs):
                result.first_divergent_node = node
                break
        result.explanation = explain(record, new) if explain else {}
    if worst == GRADES.index("diverged") and metric_test is not None and "metrics" in grades:
        result.metric_test = metric_test(project, run_id, workdir, replay_id)
        if result.metric_test["equivalent"]:
            result.overall = "metric"
    return result


def to_json(verification: Verification) -> str:
    """The verification as JSON."""
    return json.dumps(verification.to_dict(), indent=1, default=str)
