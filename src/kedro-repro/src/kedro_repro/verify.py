"""Replay a recorded run in isolation and grade how closely it reproduces, dataset by dataset.

Grades, best first: ``bitwise`` (same content digest), ``tolerance`` (tensors or numeric tables
allclose within rtol/atol), ``metric`` (the project's own equivalence test on its metrics), and
``diverged``. Nothing here knows about the project: its data folders, its metric dataset and
the equivalence test come in as its :class:`~kedro_repro.config.ReproConfig`.
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

import yaml

from kedro_repro import runlog
from kedro_repro.code import CodeRestoreError, restore_code
from kedro_repro.config import ReproConfig
from kedro_repro.environment import installed_packages
from kedro_repro.hashing import file_digest
from kedro_repro.integrity import require_intact
from kedro_repro.record import (
    RECORD_FILE,
    RUNS_DIR,
    RunRecord,
    is_run_id,
    load_run,
)
from kedro_repro.redaction import redacted_keys
from kedro_repro.signing import signature_status
from kedro_repro.state import flatten_state, loaded_instance

GRADES = ["bitwise", "tolerance", "metric", "diverged"]

DEFAULT_RTOL = 1e-5
"""Relative tolerance of the ``tolerance`` grade (``kedro repro verify --rtol``)."""
DEFAULT_ATOL = 1e-6
"""Absolute tolerance of the ``tolerance`` grade (``kedro repro verify --atol``): float32
round-off of values near 1 is about 1e-7, so 1e-6 admits reordered sums, not other results."""


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
    code: str = ""
    """Which code the replay ran (the recorded commit and patch, or the current tree)."""
    environment: str = ""
    """Which interpreter and packages the replay ran in."""
    integrity: dict[str, Any] = field(default_factory=dict)
    """The recorded run's bytes check: runs-log seal, signature, files checked."""
    bisection: Any = None
    """With ``--bisect``: the :class:`~kedro_repro.bisect.Bisection` of a divergence."""

    def to_dict(self) -> dict[str, Any]:
        bisection = self.bisection.to_dict() if self.bisection is not None else None
        return {
            **self.__dict__,
            "datasets": [d.__dict__ for d in self.datasets],
            "bisection": bisection,
        }


def check_data(snapshot: dict[str, str], current: dict[str, str]) -> dict[str, list[str]]:
    """Items added, removed and changed between the recorded snapshot and the current data."""
    return {
        "added": sorted(current.keys() - snapshot.keys()),
        "removed": sorted(snapshot.keys() - current.keys()),
        "changed": sorted(k for k in snapshot.keys() & current.keys() if snapshot[k] != current[k]),
    }


class ReplayRefused(RuntimeError):
    """The replay cannot be made faithfully or safely; nothing was executed."""


PICKLE_MARKERS = ("pickle", "joblib", "dill", "pkl")
"""A catalog entry whose type or format names one of these can execute code when loaded."""


def pickle_entries(catalog_config: dict[str, Any]) -> list[str]:
    """Catalog entries (factories included) whose loading could unpickle, i.e. run code."""

    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return []

    return sorted(
        name
        for name, entry in catalog_config.items()
        if isinstance(entry, dict)
        and any(m in text.lower() for text in strings(entry) for m in PICKLE_MARKERS)
    )


def _escape_interpolation(value: Any) -> Any:
    """Recorded strings stay literal: OmegaConf must not resolve ``${...}`` found in a bundle."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, dict):
        return {k: _escape_interpolation(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_interpolation(v) for v in value]
    return value


def _copy_current_code(project: Path, workdir: Path) -> None:
    for name in ("conf", "src"):
        shutil.copytree(
            project / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in CODE_FILES:
        if (project / name).exists():
            shutil.copy2(project / name, workdir / name)


CODE_FILES = ("pyproject.toml", ".telemetry", "uv.lock", "flake.lock")


def prepare_workdir(
    project: Path,
    record: RunRecord,
    workdir: Path,
    data_dirs: tuple[str, ...],
    overrides: dict[str, Any],
    code: str = "recorded",
    trust_patch: bool = False,
) -> tuple[str, dict[str, Any]]:
    """Build the replay's project in ``workdir``; returns a description of its code and its catalog.

    ``code="recorded"`` rebuilds the commit and stored patch the run recorded (see
    :mod:`kedro_repro.code`); ``"current"`` copies today's ``src/`` and ``conf/``. Either
    way the configuration comes from that code, never from the bundle: only the recorded
    parameter *values* are taken, with interpolation disabled, and the recorded ``env`` must be
    a folder of that code's ``conf/``. Catalog entries that could unpickle are refused. Raw data
    folders are mirrored by hard links (symlinked corpora stay links to the same target), and the
    files of every input pinned to another run are linked in at their versions.
    """
    bundle = project / RUNS_DIR / record.run_id
    if code == "recorded":
        if record.code is None:
            raise ReplayRefused(
                f"run {record.run_id} recorded no code snapshot (schema {record.schema_version}); "
                "replay it with --code current"
            )
        if record.code.patch is not None and not trust_patch:
            seal = runlog.check_record(project / RUNS_DIR, record.run_id)
            signature = signature_status(bundle / RECORD_FILE, None, cwd=project)
            if not seal.ok and signature.state != "signed":
                raise ReplayRefused(
                    f"run {record.run_id} ran from a dirty tree and its code is a patch stored in "
                    f"the bundle ({bundle / record.code.patch}), which neither this project's runs "
                    "log nor a trusted signature vouches for: read it, then pass --trust-patch"
                )
        try:
            restore_code(project, bundle, record.code, workdir)
        except CodeRestoreError as error:
            raise ReplayRefused(str(error)) from None
        described = f"commit {record.code.commit}" + (
            f" + stored patch {record.code.files[record.code.patch]}" if record.code.patch else ""
        )
    elif code == "current":
        _copy_current_code(project, workdir)
        described = "the current working tree of " + str(project)
    else:
        raise ValueError(f"code must be 'recorded' or 'current', not {code!r}")
    conf = workdir / "conf"
    if record.env is not None and not (conf / record.env).is_dir():
        raise ReplayRefused(
            f"the run's configuration environment {record.env!r} is not a folder of the "
            f"replayed code's conf/ ({sorted(p.name for p in conf.iterdir() if p.is_dir())})"
        )
    shutil.rmtree(conf / "local", ignore_errors=True)
    (conf / "local").mkdir()
    for parameters in conf.glob("*/parameters*.yml"):
        parameters.unlink()
    recorded = copy.deepcopy({**record.parameters.design, **record.parameters.tunable})
    for dotted, value in overrides.items():
        _set(recorded, dotted.split("."), value)
    if redacted := redacted_keys(recorded):
        raise ReplayRefused(
            f"run {record.run_id} recorded parameter(s) {', '.join(redacted)} redacted (they held "
            "a secret), so the bundle does not hold the values the run used: give them again with "
            "--params " + ",".join(f"{key}=..." for key in redacted)
        )
    (conf / "base" / "parameters.yml").write_text(
        yaml.safe_dump(_escape_interpolation(recorded), sort_keys=False)
    )
    catalog = _catalog_config(conf, record.env)
    if unsafe := pickle_entries(catalog):
        raise ReplayRefused(
            f"the replayed catalog has pickle-based entries ({', '.join(unsafe)}): loading them "
            "could execute code; a replay never loads pickles"
        )
    for data_dir in data_dirs:
        if (project / data_dir).exists():
            _mirror(project / data_dir, workdir / data_dir)
    (workdir / "data").mkdir(exist_ok=True)
    link_pinned_inputs(project, record, workdir, catalog)
    return described, catalog


def _catalog_config(conf: Path, env: str | None) -> dict[str, Any]:
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        conf_source=str(conf), base_env="base", default_run_env=env or "local"
    )
    return dict(loader["catalog"])


def _mirror(source: Path, destination: Path) -> None:
    """Hard-link a tree; a symlink becomes a link to its resolved target (e.g. a corpus elsewhere)."""
    destination.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        target = destination / entry.name
        if entry.is_symlink():
            os.symlink(os.path.realpath(entry), target)
        elif entry.is_dir():
            _mirror(entry, target)
        elif entry.is_file():
            _link_or_copy(str(entry), str(target))


def link_pinned_inputs(
    project: Path, record: RunRecord, workdir: Path, catalog: dict[str, Any]
) -> None:
    """Make every ``--load-versions`` input of ``record`` (and its run's bundle) and every
    unversioned input it read present in ``workdir``, by hard links."""
    for dataset, version in record.load_versions.items():
        entry = catalog.get(dataset)
        folder = None
        if isinstance(entry, dict) and isinstance(entry.get("filepath"), str):
            folder = Path(entry["filepath"]) / version
        if folder is None or not (project / folder).exists():
            raise ReplayRefused(
                f"input {dataset} of run {record.run_id} was loaded at version {version}, "
                "which is not in this project"
            )
        _mirror(project / folder, workdir / folder)
        source_bundle = Path(RUNS_DIR) / version
        if (project / source_bundle).is_dir() and not (workdir / source_bundle).exists():
            _mirror(project / source_bundle, workdir / source_bundle)
    for dataset, entry in record.inputs.items():  # unversioned inputs, e.g. a split lock
        config = catalog.get(dataset)
        if entry.version is None and isinstance(config, dict):
            path = config.get("filepath") or config.get("path")
            if isinstance(path, str) and not Path(path).is_absolute():
                if (project / path).is_file() and not (workdir / path).exists():
                    (workdir / path).parent.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(str(project / path), str(workdir / path))
                elif (project / path).is_dir() and not (workdir / path).exists():
                    _mirror(project / path, workdir / path)
    log = project / RUNS_DIR / runlog.LOG_NAME
    if record.load_versions and log.is_file():
        shutil.copy2(log, workdir / RUNS_DIR / runlog.LOG_NAME)


def _set(tree: dict, path: list[str], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def replay_command(record: RunRecord, until: str | None, python: str) -> list[str]:
    """The ``kedro run`` that replays ``record``: its pipelines, env, runner, options, versions."""
    command = [python, "-m", "kedro", "run", "--pipelines", ",".join(record.pipelines)]
    if record.env:
        command += ["--env", record.env]
    if record.runner and record.runner != "SequentialRunner":
        command += ["--runner", record.runner]
    options = record.run_options
    for flag, values in (
        ("--tags", options.tags),
        ("--nodes", options.node_names),
        ("--from-nodes", options.from_nodes),
        ("--to-nodes", [until] if until else options.to_nodes),
        ("--from-inputs", options.from_inputs),
        ("--to-outputs", options.to_outputs),
        ("--namespaces", options.namespaces),
    ):
        if values:
            command += [flag, ",".join(values)]
    if record.load_versions:
        command += [
            "--load-versions",
            ",".join(f"{d}:{v}" for d, v in sorted(record.load_versions.items())),
        ]
    return command


def restored_import_paths(project: Path, workdir: Path, search_path: list[str]) -> list[str]:
    """Where the replay imports the project's own packages from: inside ``workdir``.

    Every entry of ``search_path`` (this process's ``sys.path``) that lies in ``project`` but not
    in its environment (an editable install of a package of this repository, e.g. a workspace
    member's ``src``) is mapped to the same place in the restored tree, so the replay runs the
    recorded code of those packages too, never today's copy from the working tree.
    """
    project, environment = project.resolve(), Path(sys.prefix).resolve()
    mapped = []
    for entry in search_path:
        path = Path(entry or ".").resolve()
        if path.is_relative_to(project) and not path.is_relative_to(environment):
            restored = workdir / path.relative_to(project)
            if restored.is_dir() and str(restored) not in mapped:
                mapped.append(str(restored))
    return mapped


def replay(
    workdir: Path,
    record: RunRecord,
    until: str | None,
    python: str = sys.executable,
    progress: Callable[[str], None] | None = None,
    project: Path | None = None,
) -> str:
    """Run the recorded pipelines in ``workdir`` in a fresh process; returns the replay's run id.

    Every line the replay prints is passed to ``progress`` as it comes (the user sees the replay
    advance as the run did); the last lines are kept for the error message. With ``project``,
    the project's own packages are imported from ``workdir`` (:func:`restored_import_paths`).
    """
    tail: list[str] = []
    variables = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    variables.pop("KEDRO_REPRO_RUN", None)  # it chooses what notebooks show; runs refuse it
    if project is not None:
        own = restored_import_paths(project, workdir, sys.path)
        variables["PYTHONPATH"] = os.pathsep.join(
            [*own, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    with subprocess.Popen(
        replay_command(record, until, python),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=variables,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            tail = [*tail[-80:], line]
            if progress is not None:
                progress(line.rstrip("\n"))
    replay_id = replayed_run_id(workdir, record)
    if replay_id is None:
        raise RuntimeError("the replay failed before it started:\n" + "".join(tail)[-4000:])
    return replay_id


def replayed_run_id(workdir: Path, record: RunRecord) -> str | None:
    """The run a replay of ``record`` in ``workdir`` recorded (the latest bundle there that is
    not one the replay loads from), or None if it recorded none."""
    runs = workdir / RUNS_DIR
    found = sorted(p.name for p in runs.iterdir() if is_run_id(p.name)) if runs.is_dir() else []
    replayed = [r for r in found if r not in record.load_versions.values()]
    return replayed[-1] if replayed else None


def compare_values(a: Any, b: Any, rtol: float, atol: float) -> tuple[bool, float | None]:
    """Whether two non-identical values agree within tolerance, and their largest absolute difference."""
    if hasattr(a, "shards") and hasattr(b, "shards"):  # sharded tensors: compare item by item
        if list(a) != list(b):
            return False, None
        return compare_values({i: a[i] for i in a}, {i: b[i] for i in b}, rtol, atol)
    if loaded_instance(a, "pandas", "DataFrame") and loaded_instance(b, "pandas", "DataFrame"):
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
    import torch  # tensors exist, so torch is installed

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


def package_differences(recorded: dict[str, str], current: dict[str, str]) -> dict[str, list]:
    """``name: [recorded version, current version]`` for every package that differs."""
    return {
        name: [recorded.get(name), current.get(name)]
        for name in sorted(recorded.keys() | current.keys())
        if recorded.get(name) != current.get(name)
    }


def recorded_environment(
    project: Path, record: RunRecord, workdir: Path, sync: bool, cache_name: str = "kedro-repro"
) -> tuple[str, str]:
    """The interpreter that replays ``record`` and a description of it.

    The current interpreter when its packages are the recorded ones; with ``sync``, an
    environment built from the recorded ``uv.lock`` (``uv sync --frozen``) in a cache keyed by
    the lock's digest (under ``$XDG_CACHE_HOME/<cache_name>/envs``); otherwise
    :class:`ReplayRefused` listing the package differences.
    """
    current = installed_packages()
    differences = package_differences(record.environment.packages, current)
    if not differences:
        return sys.executable, f"this interpreter ({sys.executable}), packages as recorded"
    if not sync:
        shown = "\n".join(f"  {n}: {a} -> {b}" for n, (a, b) in list(differences.items())[:40])
        raise ReplayRefused(
            f"this environment differs from run {record.run_id}'s in {len(differences)} "
            f"package(s) (recorded -> here):\n{shown}\nReplay in the recorded environment with "
            "--sync-env (uv sync --frozen of the recorded uv.lock), or with --code current to "
            "check today's code in today's environment"
        )
    lock = workdir / "uv.lock"
    if not lock.is_file():
        raise ReplayRefused(
            f"run {record.run_id} stored no uv.lock: its environment cannot be rebuilt"
        )
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / cache_name / "envs"
    target = cache / file_digest(lock).split(":", 1)[1][:32]
    result = subprocess.run(
        ["uv", "sync", "--frozen", "--project", str(workdir)],
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(target)},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ReplayRefused(f"uv sync --frozen of the recorded uv.lock failed:\n{result.stderr}")
    return str(target / "bin" / "python"), f"{target} (uv sync --frozen of the recorded uv.lock)"


def verify(
    project: Path,
    run_id: str,
    *,
    config: ReproConfig,
    load_recorded: Callable[[Path, str, str], Any],
    node_order: list[tuple[str, list[str], list[str]]],
    explain: Callable[[RunRecord, RunRecord], dict] | None = None,
    until: str | None = None,
    overrides: dict[str, Any] | None = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    workdir: Path | None = None,
    code: str = "recorded",
    sync_env: bool = False,
    trust_patch: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Verification:
    """Replay ``run_id`` in an isolated copy of ``project`` and grade every dataset it saves.

    Before anything runs, the run's stored bytes are checked against its record
    (:func:`~kedro_repro.integrity.require_intact`). ``code`` picks the code replayed: the
    ``recorded`` commit and patch (default) or the ``current`` tree. ``load_recorded(project,
    run_id, dataset)`` loads a dataset as a run saved it; ``node_order`` lists ``(node, inputs,
    outputs)`` in execution order; ``explain`` lists the differences that can explain a
    divergence (environment, data, parameters). From ``config`` come the data folders the replay
    mirrors (``data_dirs``), the replay-environment cache (``name``) and the metric test: when
    ``metric_dataset`` diverged, ``metric_test`` decides from the two runs whether their metrics
    are equivalent.
    """
    check = require_intact(project, run_id, what="to verify")
    for source in sorted(set(load_recorded_versions(project, run_id))):
        require_intact(project, source, what="to verify a run that loaded")
    record = load_run(project / RUNS_DIR, run_id)
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"verify-{run_id}-"))
    described_code, _ = prepare_workdir(
        project,
        record,
        workdir,
        config.data_dirs,
        overrides or {},
        code=code,
        trust_patch=trust_patch,
    )
    if code == "recorded":
        python, described_env = recorded_environment(
            project, record, workdir, sync_env, cache_name=config.name
        )
    else:
        python = sys.executable
        differing = package_differences(record.environment.packages, installed_packages())
        described_env = f"this interpreter ({sys.executable}), " + (
            f"{len(differing)} package(s) differ from the run's"
            if differing
            else "packages as recorded"
        )
    own = [
        Path(p).relative_to(workdir).as_posix()
        for p in restored_import_paths(project, workdir, sys.path)
    ]
    if own:  # editable installs of this repository's packages: replayed from the restored tree
        described_code += f", packages imported from its {', '.join(own)}"
    replay_id = replay(workdir, record, until, python=python, progress=progress, project=project)
    new = load_run(workdir / RUNS_DIR, replay_id)
    old = record
    result = Verification(
        run_id=run_id,
        replay_id=replay_id,
        workdir=str(workdir),
        code=described_code,
        environment=described_env,
        integrity={
            "seal": check.seal,
            "signature": check.signature.describe() if check.signature else "unsigned",
            "files_checked": check.files_checked,
        },
    )
    if new.status != "complete":
        result.overall = "diverged"
        result.explanation = {
            "replay_error": new.error,
            **(explain(old, new) if explain else {}),
        }
        return result
    worst = 0
    grades: dict[str, str] = {}
    for name, read in new.inputs.items():  # what the replay read must be what the run read
        recorded_input = old.inputs.get(name)
        if recorded_input is not None:
            same = recorded_input.digest == read.digest
            verdict = DatasetVerdict(name, "(input)", "bitwise" if same else "diverged")
            grades[name] = verdict.grade
            result.datasets.append(verdict)
            worst = max(worst, GRADES.index(verdict.grade))
    for name, entry in new.ledger.items():
        recorded_entry = old.ledger.get(name)
        if recorded_entry is None:
            continue
        if recorded_entry.digest == entry.digest:
            verdict = DatasetVerdict(name, entry.node, "bitwise", 0.0)
        else:
            try:
                recorded_value = load_recorded(project, run_id, name)
                replayed_value = load_recorded(workdir, replay_id, name)
            except Exception as error:  # e.g. a figure: saved as PNG, never loaded back
                verdict = DatasetVerdict(
                    name, entry.node, "diverged", None, f"digests differ; not loadable: {error}"
                )
            else:
                close, diff = compare_values(recorded_value, replayed_value, rtol, atol)
                verdict = DatasetVerdict(
                    name, entry.node, "tolerance" if close else "diverged", diff
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
        result.explanation = explain(old, new) if explain else {}
    if (
        worst == GRADES.index("diverged")
        and config.metric_test is not None
        and config.metric_dataset is not None
        and config.metric_dataset in grades
    ):
        test = config.metric_test
        result.metric_test = test.equivalent(
            load_recorded(project, run_id, test.dataset),
            load_recorded(workdir, replay_id, test.dataset),
        )
        if result.metric_test["equivalent"]:
            result.overall = "metric"
    return result


def load_recorded_versions(project: Path, run_id: str) -> list[str]:
    """The runs whose bundles ``run_id`` loaded inputs from (``--load-versions``)."""
    record = load_run(project / RUNS_DIR, run_id)
    return [v for v in record.load_versions.values() if is_run_id(v)]


def to_json(verification: Verification) -> str:
    """The verification as JSON."""
    return json.dumps(verification.to_dict(), indent=1, default=str)
