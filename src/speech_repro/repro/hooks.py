"""Kedro hooks that apply the reproducibility machinery around every run."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset, Version
from kedro.io.core import VersionNotFoundError

from speech_repro.repro.determinism import DeterminismPolicy, apply_policy
from speech_repro.repro.environment import capture_environment, redact
from speech_repro.repro.hashing import json_digest
from speech_repro.repro.ledger import content_digest
from speech_repro.repro.params import check_parameters
from speech_repro.repro.record import RECORD_FILE, SCHEMA_VERSION, SNAPSHOT_FILE, write_json
from speech_repro.repro.session import RUNS_DIR

logger = logging.getLogger(__name__)


def _parameters(catalog: Any) -> dict[str, Any]:
    return catalog.load("parameters") if "parameters" in catalog else {}


class ParameterCheckHook:
    """Stops a run before its first node when conf/ holds a parameter key nothing declares."""

    def __init__(self, schema: Any):
        self.schema = schema

    @hook_impl
    def before_pipeline_run(self, catalog: Any) -> None:
        check_parameters(_parameters(catalog), self.schema)


class DeterminismHook:
    """Applies the ``determinism`` parameters before the first node runs."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        policy = DeterminismPolicy(**_parameters(catalog).get("determinism", {}))
        apply_policy(policy)
        logger.info("Determinism policy for run %s: %s", run_params.get("run_id"), policy)


class RunRecordHook:
    """Writes the run record (see :mod:`speech_repro.repro.record`) and pins run-local versions.

    - Versioned datasets a run produces are loaded back at the run's own version, so two
      concurrent runs never read each other's "latest".
    - The record holds the command, pipeline, parameters (design choices and tunable ones apart,
      each with its digest), seeds, environment, the digest and version of every input, the
      ledger (content digest of every dataset each node saves), node timings, metrics,
      non-deterministic operators met, and the status.
    - ``snapshot`` names a table whose ``key``/``value`` columns are written beside the record as
      the data snapshot (e.g. utterance id -> audio digest).
    """

    def __init__(
        self,
        runs_dir: str = RUNS_DIR,
        design_sections: tuple[str, ...] = (),
        snapshot: dict[str, str] | None = None,
        metrics_dataset: str = "metrics",
        resume_dataset: str | None = None,
    ):
        self.runs_dir = Path(runs_dir)
        self.design_sections = design_sections
        self.snapshot = snapshot
        self.metrics_dataset = metrics_dataset
        self.resume_dataset = resume_dataset
        self._reset()

    def _reset(self) -> None:
        self.record: dict[str, Any] | None = None
        self._catalog: Any = None
        self._free_inputs: set[str] = set()
        self._node_started: dict[str, float] = {}
        self._started = 0.0
        self._showwarning: Any = None

    @property
    def _dir(self) -> Path:
        assert self.record is not None
        return self._project / self.runs_dir / self.record["run_id"]

    def _write(self) -> None:
        if self.record is not None:
            write_json(self._dir / RECORD_FILE, self.record)

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._reset()
        run_id = run_params["run_id"]
        pinned = dict(run_params.get("load_versions") or {})
        _pin_run_local_versions(catalog, pipeline.all_outputs(), run_id, pinned)
        self._catalog = catalog
        self._free_inputs = {
            d for d in pipeline.inputs() if not d.startswith("params:") and d != "parameters"
        }
        params = _parameters(catalog)
        design = {k: v for k, v in params.items() if k in self.design_sections}
        tunable = {k: v for k, v in params.items() if k not in self.design_sections}
        self._started = time.time()
        self.record = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "status": "running",
            "started_at": _now(),
            "finished_at": None,
            "duration_seconds": None,
            "pid": os.getpid(),
            "hostname": os.uname().nodename,
            "command": [redact(a) for a in sys.argv],
            "pipelines": run_params.get("pipeline_names") or ["__default__"],
            "env": run_params.get("env"),
            "run_options": _redacted_json(
                {
                    k: run_params.get(k)
                    for k in (
                        "tags",
                        "node_names",
                        "from_nodes",
                        "to_nodes",
                        "namespaces",
                        "runtime_params",
                    )
                }
            ),
            "load_versions": pinned,
            "resumed_from": pinned.get(self.resume_dataset) if self.resume_dataset else None,
            "parameters": {
                "design": design,
                "tunable": tunable,
                "design_digest": json_digest(design),
                "tunable_digest": json_digest(tunable),
                "digest": json_digest(params),
            },
            "seeds": dict(_seeds(params)),
            "environment": capture_environment(self._project),
            "inputs": {},
            "ledger": {},
            "nodes": {},
            "nondeterministic_operations": [],
            "metrics": None,
            "data_snapshot": None,
            "error": None,
        }
        self._capture_warnings()
        self._write()

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        if (
            self.record is None
            or dataset_name not in self._free_inputs
            or dataset_name in self.record["inputs"]
        ):
            return
        self.record["inputs"][dataset_name] = {
            "version": _resolved_load_version(self._catalog, dataset_name),
            "digest": content_digest(data, self._project),
        }

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._node_started[node.name] = time.perf_counter()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if self.record is None:
            return
        if isinstance(data, Iterator):  # a stream the dataset consumed: digest what was stored
            data = self._catalog.load(dataset_name)
        version = self.record["run_id"] if _is_versioned(self._catalog, dataset_name) else None
        self.record["ledger"][dataset_name] = {
            "node": node.name,
            "version": version,
            "digest": content_digest(data, self._project),
        }
        if dataset_name == self.metrics_dataset:
            self.record["metrics"] = data
        if node.name in self._node_started:  # streamed outputs are computed while being saved
            entry = self.record["nodes"].setdefault(node.name, {"outputs": []})
            entry["seconds"] = round(time.perf_counter() - self._node_started[node.name], 3)
        if self.snapshot and dataset_name == self.snapshot["dataset"]:
            snapshot = dict(
                zip(data[self.snapshot["key"]], data[self.snapshot["value"]], strict=True)
            )
            write_json(self._dir / SNAPSHOT_FILE, snapshot)
            self.record["data_snapshot"] = {
                "file": SNAPSHOT_FILE,
                "items": len(snapshot),
                "digest": json_digest(snapshot),
            }
        self._write()

    @hook_impl
    def after_node_run(self, node: Any, outputs: dict[str, Any]) -> None:
        if self.record is None:
            return
        started = self._node_started.get(node.name, time.perf_counter())
        self.record["nodes"][node.name] = {
            "seconds": round(time.perf_counter() - started, 3),
            "outputs": sorted(outputs),
        }
        self._write()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._finish("complete")

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        if self.record is not None:
            self.record["error"] = redact(f"{type(error).__name__}: {error}")[:4000]
        self._finish("crashed")

    def _finish(self, status: str) -> None:
        if self.record is None:
            return
        if self._showwarning is not None:
            warnings.showwarning = self._showwarning
        self.record.update(
            status=status,
            finished_at=_now(),
            duration_seconds=round(time.time() - self._started, 3),
        )
        self._write()
        self._reset()

    def _capture_warnings(self) -> None:
        """Record every 'no deterministic implementation' warning (determinism mode 'warn')."""
        original = warnings.showwarning
        operations = self.record["nondeterministic_operations"] if self.record else []

        def showwarning(message, category, filename, lineno, file=None, line=None):
            text = str(message)
            if "deterministic" in text and text not in operations:
                operations.append(text)
            original(message, category, filename, lineno, file, line)

        self._showwarning = original
        warnings.showwarning = showwarning
        warnings.filterwarnings("always", message=".*deterministic.*")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _seeds(params: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(params, dict):
        for key, value in params.items():
            if key == "seed" or key.endswith("_seed"):
                yield f"{prefix}{key}", value
            yield from _seeds(value, f"{prefix}{key}.")


def _redacted_json(value: Any) -> Any:
    return json.loads(redact(json.dumps(value, default=str)))


def _dataset(catalog: Any, name: str) -> Any:
    try:
        return catalog.get(name)
    except Exception:
        return None


def _is_versioned(catalog: Any, name: str) -> bool:
    dataset = _dataset(catalog, name)
    return isinstance(dataset, AbstractVersionedDataset) and dataset._version is not None


def _resolved_load_version(catalog: Any, name: str) -> str | None:
    dataset = _dataset(catalog, name)
    if isinstance(dataset, AbstractVersionedDataset) and dataset._version is not None:
        try:
            return dataset.resolve_load_version()
        except VersionNotFoundError:  # e.g. a store the run creates itself
            return None
    return None


def _pin_run_local_versions(
    catalog: Any, outputs: set[str], run_id: str, pinned: dict[str, str]
) -> None:
    """Load what this run saves at this run's version, not whatever is newest on disk."""
    for name in outputs:
        dataset = _dataset(catalog, name)
        if (
            name not in pinned
            and isinstance(dataset, AbstractVersionedDataset)
            and dataset._version is not None
        ):
            # Kedro keeps the version in a private field; there is no public setter.
            dataset._version = Version(run_id, run_id)
            dataset._clear_version_cache()
