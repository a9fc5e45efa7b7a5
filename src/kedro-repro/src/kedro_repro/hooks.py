"""The run record hook: what a run read, saved, ran on and printed, written as it happens."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset
from kedro.io.core import VersionNotFoundError

from kedro_repro import identity, runlog, workers
from kedro_repro.code import capture_code
from kedro_repro.config import ReproConfig
from kedro_repro.environment import capture_environment
from kedro_repro.hashing import file_digest, json_digest
from kedro_repro.integrity import check_pinned_inputs
from kedro_repro.ledger import content_digest
from kedro_repro.outcome import outcome_lines
from kedro_repro.processes import current_process
from kedro_repro.record import (
    RECORD_FILE,
    SCHEMA_VERSION,
    SNAPSHOT_FILE,
    CheckpointEntry,
    CheckpointSection,
    DataSnapshot,
    Environment,
    InputEntry,
    LedgerEntry,
    NodeEntry,
    ParametersSection,
    ProcessSection,
    RetentionSection,
    RunOptions,
    RunRecord,
    WorkerEntry,
    is_run_id,
    write_json,
    write_record,
)
from kedro_repro.redaction import (
    redact_command,
    redact_logging,
    redact_text,
    redact_value,
)
from kedro_repro.session import RUNS_DIR

logger = logging.getLogger(__name__)


def _parameters(catalog: Any) -> dict[str, Any]:
    return catalog.load("parameters") if "parameters" in catalog else {}


class RunRecordHook:
    """Writes the run record (see :mod:`kedro_repro.record`) and pins run-local versions.

    - Versioned datasets a run produces are loaded back at the run's own version, so two
      concurrent runs never read each other's "latest".
    - A dataset pinned to another run's version (``--load-versions``, ``repro run --from-run``,
      ``repro resume``) has its stored bytes checked against that run's ledger before any node
      runs: a flipped byte stops the run, naming the dataset, file and both digests.
    - The record holds the command, pipeline, parameters (design choices and tunable ones apart,
      each with its digest), seeds, environment, the code snapshot (commit, stored patch, lock
      files), the digest and version of every input, the ledger (content digest and stored-file
      digests of every dataset each node saves), node timings and completion, checkpoint
      digests, metrics, non-deterministic operators met, and the status.
    - A node is complete only once every one of its outputs is saved.
    - A final record is sealed in the runs log (:mod:`kedro_repro.runlog`).
    - What is the project's own comes from ``config`` (:class:`~kedro_repro.config.ReproConfig`):
      the design sections, the table written beside the record as the data snapshot (its
      ``key``/``value`` columns), the dataset copied as the record's metrics, the checkpoint
      store a resumed run loads, and the project's part of the environment. Without one, the
      record holds what every project has.
    """

    def __init__(self, config: ReproConfig | None = None, runs_dir: str = RUNS_DIR):
        self.config = ReproConfig() if config is None else config
        self.runs_dir = Path(runs_dir)
        self.design_sections = self.config.design_sections
        self.snapshot = self.config.snapshot
        self.metrics_dataset = self.config.metric_dataset
        self.resume_dataset = self.config.resume_dataset
        self._lock = threading.RLock()  # ThreadRunner calls the hooks from several threads
        self._reset()

    def _reset(self) -> None:
        self.record: RunRecord | None = None
        self._catalog: Any = None
        self._free_inputs: set[str] = set()
        self._pinned: dict[str, str] = {}
        self._node_started: dict[str, float] = {}
        self._stores: dict[str, Any] = {}
        self._started = 0.0
        self._showwarning: Any = None

    @property
    def _dir(self) -> Path:
        assert self.record is not None
        return self._project / self.runs_dir / self.record.run_id

    def _write(self) -> None:
        if self.record is not None:
            # write_record redacts every string once more, by shape and by name where users
            # name things: nothing a hook or node put in the record is written verbatim.
            write_record(self._dir / RECORD_FILE, self.record)

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project = Path(context.project_path)
        redact_logging()  # logging is configured by now: no handler prints a secret

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        runner = _runner_name(run_params.get("runner"))
        if runner in PROCESS_RUNNERS:
            raise RuntimeError(
                f"{runner} runs nodes in other processes, where this project's run record cannot "
                "see what they save; use the default SequentialRunner or --runner ThreadRunner"
            )
        self._reset()
        run_id = run_params["run_id"]
        # The session pins what the run saves to the run's own id (ClaimedRunSession); only the
        # versions of other runs are the user's pins.
        pinned = {k: v for k, v in (run_params.get("load_versions") or {}).items() if v != run_id}
        check_pinned_inputs(
            self._project, pinned, exempt={self.resume_dataset} if self.resume_dataset else set()
        )
        self._catalog = catalog
        self._pinned = pinned
        self._free_inputs = {
            d for d in pipeline.inputs() if not d.startswith("params:") and d != "parameters"
        }
        # Secrets in parameters are redacted before anything (digests included) is derived, so
        # the record's values still hash to its digests.
        params = redact_value(_parameters(catalog))
        design = {k: v for k, v in params.items() if k in self.design_sections}
        tunable = {k: v for k, v in params.items() if k not in self.design_sections}
        self._started = time.time()
        self.record = RunRecord(
            schema_version=SCHEMA_VERSION,
            run_id=run_id,
            status="running",
            started_at=_now(),
            finished_at=None,
            duration_seconds=None,
            pid=os.getpid(),
            hostname=os.uname().nodename,
            # Host, pid and start time: `repro resume` refuses a run whose process still runs.
            process=ProcessSection(**current_process().to_dict()),
            command=redact_command(sys.argv),
            pipelines=run_params.get("pipeline_names") or ["__default__"],
            env=run_params.get("env"),
            runner=runner,
            run_options=RunOptions(**_redacted_json({k: run_params.get(k) for k in RUN_OPTIONS})),
            load_versions=pinned,
            resumed_from=pinned.get(self.resume_dataset) if self.resume_dataset else None,
            parameters=ParametersSection(
                design=design,
                tunable=tunable,
                design_digest=json_digest(design),
                tunable_digest=json_digest(tunable),
                digest=json_digest(params),
            ),
            seeds=dict(_seeds(params)),
            environment=Environment(**capture_environment(self._project, self.config.environment)),
            inputs={},
            ledger={},
            nodes={},
            nondeterministic_operations=[],
            metrics=None,
            data_snapshot=None,
            error=None,
        )
        self.record.code = capture_code(self._project, self._dir)
        # Datasets that present the run (a report's header) read its identity from this record.
        identity.publish(lambda: self.record)
        # Processes a node starts (the machines of a multi-machine training) report here.
        workers.publish(self._add_workers)
        self._capture_warnings()
        self._write()

    def _add_workers(self, entries: list[dict[str, Any]]) -> None:
        """Add processes that computed part of the run, with their environments, to the record."""
        with self._lock:
            if self.record is None:
                return
            self.record.workers.extend(WorkerEntry(**entry) for entry in entries)
            self._write()

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        with self._lock:
            if (
                self.record is None
                or dataset_name not in self._free_inputs
                or dataset_name in self.record.inputs
            ):
                return
            if hasattr(data, "digests") and hasattr(data, "resume_from"):  # a checkpoint store
                self._stores[dataset_name] = data
                if data.resume_from is None:
                    return  # a fresh store: the run read nothing from another run
            pinned = self._pinned.get(dataset_name)
            self.record.inputs[dataset_name] = InputEntry(
                version=pinned or _resolved_load_version(self._catalog, dataset_name),
                digest=content_digest(data, self._project),
                run=pinned if pinned and is_run_id(pinned) else None,
            )

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._node_started[node.name] = time.perf_counter()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        with self._lock:
            if self.record is None:
                return
            if isinstance(data, Iterator):  # a stream the dataset consumed: digest what was stored
                data = self._catalog.load(dataset_name)
            dataset = _dataset(self._catalog, dataset_name)
            record = self.record
            version = record.run_id if is_versioned(dataset) else None
            try:
                digest = content_digest(data, self._project)
            except TypeError as error:
                raise TypeError(f"dataset {dataset_name!r}: {error}") from None
            record.ledger[dataset_name] = LedgerEntry(
                node=node.name,
                version=version,
                digest=digest,
                files=stored_files(dataset, version, self._project),
            )
            if self.metrics_dataset is not None and dataset_name == self.metrics_dataset:
                record.metrics = data
            entry = record.nodes.get(node.name)
            if entry is None:
                entry = record.nodes[node.name] = NodeEntry(
                    inputs=list(node.inputs), outputs=sorted(node.outputs), complete=False
                )
            if node.name in self._node_started:  # streamed outputs are computed while saved
                entry.seconds = round(time.perf_counter() - self._node_started[node.name], 3)
            entry.complete = set(node.outputs) <= record.ledger.keys()
            if self.snapshot is not None and dataset_name == self.snapshot.dataset:
                snapshot = dict(
                    zip(data[self.snapshot.key], data[self.snapshot.value], strict=True)
                )
                write_json(self._dir / SNAPSHOT_FILE, snapshot)
                record.data_snapshot = DataSnapshot(
                    file=SNAPSHOT_FILE, items=len(snapshot), digest=json_digest(snapshot)
                )
            self._write()

    @hook_impl
    def after_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        """Kedro calls this *before* the node's outputs are saved: the node is not complete yet."""
        with self._lock:
            if self.record is None:
                return
            started = self._node_started.get(node.name, time.perf_counter())
            self.record.nodes[node.name] = NodeEntry(
                seconds=round(time.perf_counter() - started, 3),
                inputs=list(node.inputs),
                outputs=sorted(node.outputs),
                complete=not node.outputs,
            )
            for name in inputs:
                if name in self._stores:
                    self.record.checkpoints[name] = _checkpoint_section(
                        self._stores[name], self._project
                    )
            self._write()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._finish("complete")

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        if self.record is not None:
            self.record.error = redact_text(f"{type(error).__name__}: {error}")[:4000]
        self._finish("crashed")

    def _finish(self, status: Literal["complete", "crashed"]) -> None:
        with self._lock:
            if self.record is None:
                return
            if self._showwarning is not None:
                warnings.showwarning = self._showwarning
            self.record.status = status
            self.record.finished_at = _now()
            self.record.duration_seconds = round(time.time() - self._started, 3)
            self._write()
            runlog.append(
                self._project / self.runs_dir, self.record.run_id, self._dir / RECORD_FILE
            )
            self._print_outcome()
            self._reset()

    def _print_outcome(self) -> None:
        """The run's last lines on standard error: id, headline numbers, review, report."""
        record = self.record
        assert record is not None
        try:
            if record.status == "complete":
                lines = outcome_lines(record, self.config.presentation, self._load_own)
            else:
                # The error's kind only: Kedro prints its message next, and twice is noise.
                kind = (record.error or "unknown error").split(":", 1)[0][:100]
                lines = [
                    f"Run {record.run_id} crashed after {record.duration_seconds:.1f} s "
                    f"({kind}; the error follows)",
                    f"  resume   kedro repro resume {record.run_id}",
                ]
        except Exception as error:  # the run itself succeeded: say so and why there is no summary
            lines = [f"Run {record.run_id} {record.status} (no summary: {error})"]
        print(redact_text("\n".join(lines)), file=sys.stderr, flush=True)

    def _load_own(self, name: str) -> Any:
        """``name`` as this run saved it (its own version, whatever is newer on disk)."""
        assert self.record is not None
        return self._catalog.load(name, version=self.record.ledger[name].version)

    def _capture_warnings(self) -> None:
        """Record every 'no deterministic implementation' warning (determinism mode 'warn')."""
        original = warnings.showwarning
        # The record's own list: a warning met later lands in the record written next.
        operations = self.record.nondeterministic_operations if self.record else []

        def showwarning(message, category, filename, lineno, file=None, line=None):
            text = str(message)
            if "deterministic" in text and text not in operations:
                operations.append(text)
            original(message, category, filename, lineno, file, line)

        self._showwarning = original
        warnings.showwarning = showwarning
        warnings.filterwarnings("always", message=".*deterministic.*")


RUN_OPTIONS = (
    "tags",
    "node_names",
    "from_nodes",
    "to_nodes",
    "from_inputs",
    "to_outputs",
    "namespaces",
    "runtime_params",
)
PROCESS_RUNNERS = {"ParallelRunner"}
"""Runners whose nodes run in worker processes, out of sight of this process's hooks."""


def _runner_name(runner: Any) -> str:
    """``ThreadRunner`` from Kedro's ``str(runner)`` (``<kedro.runner...ThreadRunner object at ..>``)."""
    text = "SequentialRunner" if runner in (None, "None") else str(runner)
    match = re.search(r"([A-Za-z_][A-Za-z0-9_]*) object at", text)
    return match.group(1) if match else text.rsplit(".", 1)[-1]


def _project_relative(path: Path, project: Path) -> str:
    if path.is_absolute() and path.is_relative_to(project):
        path = path.relative_to(project)
    return path.as_posix()


def _checkpoint_section(store: Any, project: Path) -> CheckpointSection:
    policy = getattr(store, "policy", None)
    history = store.history() if hasattr(store, "history") else {}
    fields = ("step", "epoch", "digest", "state", "bytes", "kept")
    return CheckpointSection(
        directory=_project_relative(Path(store.directory), project),
        files=dict(store.digests()),
        skipped=[
            f"{_project_relative(Path(path), project)}: {reason}"
            for path, reason in getattr(store, "skipped", [])
        ],
        policy=RetentionSection(**policy.to_dict()) if policy is not None else None,
        history={
            name: CheckpointEntry(**{k: entry[k] for k in fields if k in entry})
            for name, entry in history.items()
        },
    )


def stored_files(dataset: Any, version: str | None, project: Path) -> dict[str, str]:
    """Project-relative path -> file digest of everything ``dataset`` stored at ``version``.

    A versioned dataset owns its whole ``<filepath>/<version>/`` folder (a report's HTML beside
    its Markdown, every shard of a store); an unversioned one its file or folder. Datasets that
    are not local files (memory, remote, corpus readers without a ``filepath``) store nothing
    this can check and give ``{}``.
    """
    filepath = getattr(dataset, "_filepath", None)
    if filepath is None or getattr(dataset, "_protocol", "file") not in ("file", None):
        return {}
    location = project / str(filepath)
    if version is not None:
        location = location / version
    if location.is_file():
        paths = [location]
    elif location.is_dir():
        paths = sorted(p for p in location.rglob("*") if p.is_file())
    else:
        return {}
    return {p.relative_to(project).as_posix(): file_digest(p) for p in paths}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _seeds(params: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(params, dict):
        for key, value in params.items():
            if key == "seed" or key.endswith("_seed"):
                yield f"{prefix}{key}", value
            yield from _seeds(value, f"{prefix}{key}.")


def _redacted_json(value: Any) -> Any:
    """``value`` as plain JSON data, secrets redacted by shape and by name."""
    return redact_value(json.loads(json.dumps(value, default=str)))


def _dataset(catalog: Any, name: str) -> Any:
    try:
        return catalog.get(name)
    except Exception:
        return None


def is_versioned(dataset: Any) -> bool:
    """Whether ``dataset`` (from a session's catalog) keeps a version per run."""
    # A versioned dataset always has a save version inside a session; an unversioned one none.
    return (
        isinstance(dataset, AbstractVersionedDataset) and dataset.resolve_save_version() is not None
    )


def _resolved_load_version(catalog: Any, name: str) -> str | None:
    dataset = _dataset(catalog, name)
    if is_versioned(dataset):
        try:
            return dataset.resolve_load_version()
        except VersionNotFoundError:  # e.g. a store the run creates itself
            return None
    return None
