"""Run records into MLflow: one MLflow run per Kedro run, one nested run per namespace in it.

People browse and compare runs in MLflow; the record stays the evidence. :func:`sync_runs`
checks a run's stored bytes first (:func:`~kedro_repro.integrity.require_intact`), then logs
what its record holds: parameters (design and tunable sections, by dotted key), the headline
metrics the project names in :class:`~kedro_repro.config.Tracking` (read from the JSON files
the run saved), tags (run id, commit, data and parameter digests, determinism settings,
integrity), and the record and the chosen reports and figures as artifacts. A run whose ledger
holds namespaced datasets (``<namespace>.<dataset>``, e.g. one seed of a sweep run as one Kedro
run) gets one child run per namespace, under ``mlflow.parentRunId``.

Syncing is idempotent: MLflow runs are found again by the tag :data:`RUN_TAG` (and
:data:`NAMESPACE_TAG`), only what is missing is logged, and a run whose sync completed for the
same record (:data:`SYNCED_TAG` holds the record's digest) is left as it is.

mlflow is an optional dependency, imported only inside these functions: without it,
:class:`MlflowMissing` says how to install it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from kedro_repro.config import MetricSource, ReproConfig
from kedro_repro.hashing import file_digest, json_digest
from kedro_repro.integrity import RunCheck, require_intact
from kedro_repro.record import (
    RECORD_FILE,
    RUNS_DIR,
    SNAPSHOT_FILE,
    RunRecord,
    list_records,
    load_run,
)
from kedro_repro.verifications import latest_verification

INSTALL_HINT = "install the mlflow extra: uv sync --extra mlflow"
RUN_TAG = "kedro_repro.run_id"
"""Every MLflow run made from a Kedro run carries its run id here (children too)."""
NAMESPACE_TAG = "kedro_repro.namespace"
"""The namespace a child run stands for; absent on the run of the whole Kedro run."""
SYNCED_TAG = "kedro_repro.synced"
"""The digest of the record a completed sync logged: the same again means nothing to do."""
PARENT_TAG = "mlflow.parentRunId"
RECORD_ARTIFACTS = "kedro_repro"
"""Artifact folder of the record and the data snapshot."""
MAX_BATCH = 100  # MLflow's limit of parameters (and tags) per log_batch call
MAX_PARAM_VALUE = 6000  # MLflow's limit on a parameter value's length
STATUS = {"complete": "FINISHED", "crashed": "FAILED"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")  # MLflow's key alphabet


class MlflowMissing(RuntimeError):
    """mlflow is not installed."""


class SyncRefused(RuntimeError):
    """A run is not synced (still running, or the tracking server refused): the message says why."""


@dataclass(frozen=True)
class RunPart:
    """What one MLflow run receives: the whole Kedro run (``namespace`` None) or one namespace."""

    namespace: str | None
    name: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: list[tuple[str, Path]] = field(default_factory=list)
    """``(artifact folder, local file)`` pairs."""


@dataclass(frozen=True)
class Synced:
    """The outcome for one part of one run."""

    run_id: str
    namespace: str | None
    mlflow_run_id: str
    action: Literal["created", "updated", "unchanged"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def require_mlflow() -> Any:
    """The ``mlflow`` module, or :class:`MlflowMissing` with the one line that says what to do."""
    try:
        import mlflow
    except ImportError:
        raise MlflowMissing(INSTALL_HINT) from None
    return mlflow


LOCAL_STORE = "mlruns"
"""The project folder of the default local store: ``mlflow.db`` (SQLite) and ``artifacts/``."""


def default_tracking_uri(project: Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else the SQLite store ``mlruns/mlflow.db`` of ``project``.

    Not MLflow's plain ``./mlruns`` folder store: MLflow 3 refuses new writes to it.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{_local_store(project)}/mlflow.db"


def _local_store(project: Path) -> Path:
    return Path(project).resolve() / LOCAL_STORE


def flat_parameters(sections: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested parameters as ``dotted.key -> text`` (JSON for non-strings, as MLflow stores text).

    A value longer than MLflow accepts is logged as its digest (``blake3:...``), never cut.
    """
    flat: dict[str, str] = {}
    for key, value in sections.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flat_parameters(value, f"{name}.")
            continue
        text = _text(value)
        flat[_key(name)] = text if len(text) <= MAX_PARAM_VALUE else json_digest(value)
    return flat


def _text(value: Any) -> str:
    """A parameter or tag value as MLflow stores it: text as is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _key(name: str) -> str:
    return _UNSAFE.sub("_", name)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def read_metrics(document: Any, source: MetricSource) -> dict[str, float]:
    """The numbers ``source`` names in ``document`` (see :class:`~kedro_repro.config.MetricSource`)."""
    found: dict[str, float] = {}

    def walk(value: Any, segments: Sequence[str], group: str | None) -> None:
        if not isinstance(value, Mapping):
            return
        if not segments:
            for key, item in value.items():
                number = _number(item)
                if number is not None and (not source.keys or key in source.keys):
                    name = f"{source.prefix}{key}"
                    found[_key(f"{group}/{name}" if group else name)] = number
            return
        head, rest = segments[0], segments[1:]
        if head == "*":
            for key, item in value.items():
                walk(item, rest, f"{group}/{key}" if group else str(key))
        elif head in value:
            walk(value[head], rest, group)

    walk(document, source.path.split(".") if source.path else [], None)
    return found


def every_number(document: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number in a JSON document, by its ``/``-joined path."""
    if not isinstance(document, Mapping):
        number = _number(document)
        return {} if number is None or not prefix else {_key(prefix): number}
    found: dict[str, float] = {}
    for key, value in document.items():
        found |= every_number(value, f"{prefix}/{key}" if prefix else str(key))
    return found


def namespaces(record: RunRecord) -> list[str]:
    """The namespaces of the datasets a run saved (``seed_1.metrics`` -> ``seed_1``), sorted."""
    return sorted({name.rsplit(".", 1)[0] for name in record.ledger if "." in name})


def _json_of(project: Path, record: RunRecord, dataset: str) -> Any:
    """The document a JSON dataset of the run stored (its bytes checked by the caller)."""
    entry = record.ledger.get(dataset)
    if entry is None:
        return None
    stored = [path for path in entry.files if path.endswith(".json")]
    if len(stored) != 1:
        return None
    return json.loads((project / stored[0]).read_text())


def _milliseconds(stamp: str | None) -> int | None:
    return None if stamp is None else int(datetime.fromisoformat(stamp).timestamp() * 1000)


def _metrics_of(
    project: Path, record: RunRecord, config: ReproConfig, namespace: str | None
) -> dict[str, float]:
    sources = config.tracking.metrics
    if not sources:  # nothing configured: the record's own copy of the metrics (whole run only)
        return every_number(record.metrics) if namespace is None else {}
    found: dict[str, float] = {}
    for source in sources:
        dataset = f"{namespace}.{source.dataset}" if namespace else source.dataset
        found |= read_metrics(_json_of(project, record, dataset), source)
    return found


def _artifacts_of(
    project: Path, record: RunRecord, config: ReproConfig, namespace: str | None
) -> list[tuple[str, Path]]:
    files = []
    for name in config.tracking.artifacts:
        entry = record.ledger.get(f"{namespace}.{name}" if namespace else name)
        if entry is not None:
            files += [(name, project / path) for path in sorted(entry.files)]
    return files


def _common_tags(record: RunRecord, config: ReproConfig) -> dict[str, str]:
    git = record.environment.git or {}  # free-form: what git could tell
    commit = record.code.commit if record.code is not None else git.get("commit")
    tags = {
        RUN_TAG: record.run_id,
        "kedro_repro.status": record.status,
        "kedro_repro.env": str(record.env),
        "kedro_repro.pipelines": ",".join(record.pipelines),
        "kedro_repro.parameters_digest": record.parameters.digest,
        "kedro_repro.design_digest": record.parameters.design_digest,
        "kedro_repro.tunable_digest": record.parameters.tunable_digest,
    }
    if commit:
        tags |= {"kedro_repro.commit": commit, "mlflow.source.git.commit": commit}
        tags["kedro_repro.dirty"] = json.dumps(bool(git.get("dirty")))
    if record.data_snapshot is not None:
        tags["kedro_repro.data_digest"] = record.data_snapshot.digest
    section = config.determinism_section
    parameters = {**record.parameters.design, **record.parameters.tunable}
    if section and isinstance(parameters.get(section), Mapping):
        tags |= {
            _key(f"kedro_repro.determinism.{key}"): _text(value)
            for key, value in parameters[section].items()
        }
    tags["kedro_repro.nondeterministic_operations"] = str(len(record.nondeterministic_operations))
    return tags


def run_parts(project: Path, record: RunRecord, config: ReproConfig) -> list[RunPart]:
    """What the run and each of its namespaces send to MLflow, the whole run first.

    Reads the run's stored JSON files: call it once their bytes are checked.
    """
    project = Path(project)
    tags = _common_tags(record, config)
    bundle = project / RUNS_DIR / record.run_id
    record_files = [(RECORD_ARTIFACTS, bundle / RECORD_FILE)]
    if record.data_snapshot is not None:
        record_files.append((RECORD_ARTIFACTS, bundle / SNAPSHOT_FILE))
    seeds = {_key(f"kedro_repro.seed.{key}"): _text(v) for key, v in record.seeds.items()}
    parts = [
        RunPart(
            namespace=None,
            name=record.run_id,
            params=flat_parameters({**record.parameters.design, **record.parameters.tunable}),
            metrics=_metrics_of(project, record, config, None),
            tags=tags | seeds,
            artifacts=record_files + _artifacts_of(project, record, config, None),
        )
    ]
    parts += [
        RunPart(
            namespace=namespace,
            name=f"{record.run_id} {namespace}",
            params={"namespace": namespace},
            metrics=_metrics_of(project, record, config, namespace),
            tags=tags | {NAMESPACE_TAG: namespace},
            artifacts=_artifacts_of(project, record, config, namespace),
        )
        for namespace in namespaces(record)
    ]
    return parts


def sync_runs(
    project: Path,
    run_ids: Iterable[str] | None,
    config: ReproConfig,
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> list[Synced]:
    """Log each of ``run_ids`` (None: every run that is not running) to MLflow at ``tracking_uri``.

    Each run's stored bytes are checked first (:class:`~kedro_repro.integrity.ArtifactTamperedError`
    otherwise). Raises :class:`MlflowMissing` without mlflow and :class:`SyncRefused` for a run
    still running or a tracking server that refuses.
    """
    require_mlflow()
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    project = Path(project)
    runs_dir = project / RUNS_DIR
    if run_ids is None:
        records = [r for r in list_records(runs_dir) if r.status != "running"]
    else:
        records = [load_run(runs_dir, run_id) for run_id in run_ids]
    uri = tracking_uri or default_tracking_uri(project)
    local = uri == f"sqlite:///{_local_store(project)}/mlflow.db"
    if local:
        _local_store(project).mkdir(exist_ok=True)
    name = experiment or config.tracking.experiment or config.name
    results: list[Synced] = []
    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(name)
        # The local store keeps its artifacts beside its database, wherever kedro runs from.
        location = (_local_store(project) / "artifacts").as_uri() if local else None
        experiment_id = found.experiment_id if found else client.create_experiment(name, location)
        for record in records:
            if record.status == "running":
                raise SyncRefused(
                    f"run {record.run_id} is still running (or was killed): sync it once it ends"
                )
            checked = require_intact(project, record.run_id, what="syncing")
            results += _sync_one(client, experiment_id, project, record, config, checked)
    except MlflowException as error:
        first = str(error.message).strip().splitlines()[0] if error.message else type(error)
        raise SyncRefused(f"MLflow at {uri} refused: {first}") from None
    return results


def _sync_one(
    client: Any,
    experiment_id: str,
    project: Path,
    record: RunRecord,
    config: ReproConfig,
    checked: RunCheck,
) -> list[Synced]:
    verified = latest_verification(project, record.run_id)
    verify_tag = verified.describe() if verified else "not verified"
    # A verification noted after the last sync changes what the tags say: sync again then.
    fingerprint = json_digest(
        [file_digest(project / RUNS_DIR / record.run_id / RECORD_FILE), verify_tag]
    )
    existing = {
        run.data.tags.get(NAMESPACE_TAG): run
        for run in client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{record.run_id}'"
        )
    }
    results = []
    parent_id: str | None = None
    for part in run_parts(project, record, config):
        run = existing.get(part.namespace)
        tags = part.tags | {
            "kedro_repro.integrity": f"{checked.verdict} ({checked.files_checked} files)",
            "kedro_repro.record_seal": checked.seal,
            "kedro_repro.verify": verify_tag,
        }
        if parent_id:
            tags[PARENT_TAG] = parent_id
        if run is not None and run.data.tags.get(SYNCED_TAG) == fingerprint:
            action = "unchanged"
        else:
            if run is None:
                run = client.create_run(
                    experiment_id,
                    start_time=_milliseconds(record.started_at),
                    tags=tags,
                    run_name=part.name,
                )
                action = "created"
            else:
                action = "updated"
            _log_missing(client, run, part, tags, _milliseconds(record.finished_at))
            # MLflow prints the run's address on standard output: standard output stays data.
            with contextlib.redirect_stdout(sys.stderr):
                client.set_terminated(
                    run.info.run_id,
                    status=STATUS.get(record.status, "FAILED"),
                    end_time=_milliseconds(record.finished_at),
                )
            client.set_tag(run.info.run_id, SYNCED_TAG, fingerprint)
        results.append(Synced(record.run_id, part.namespace, run.info.run_id, action))
        if part.namespace is None:
            parent_id = run.info.run_id
    return results


def _log_missing(
    client: Any, run: Any, part: RunPart, tags: dict[str, str], when: int | None
) -> None:
    """Parameters, metrics and artifacts the MLflow run lacks; every tag (setting one again
    creates nothing)."""
    from mlflow.entities import Metric, Param, RunTag

    run_id = run.info.run_id
    params = [Param(k, v) for k, v in part.params.items() if k not in run.data.params]
    metrics = [
        Metric(k, v, when or 0, 0) for k, v in part.metrics.items() if k not in run.data.metrics
    ]
    tag_list = [RunTag(k, v) for k, v in tags.items()]
    for start in range(0, max(len(params), len(tag_list)), MAX_BATCH):
        client.log_batch(
            run_id,
            params=params[start : start + MAX_BATCH],
            tags=tag_list[start : start + MAX_BATCH],
        )
    for start in range(0, len(metrics), MAX_BATCH * 10):  # 1000 metrics a batch
        client.log_batch(run_id, metrics=metrics[start : start + MAX_BATCH * 10])
    folders = {folder for folder, _ in part.artifacts}
    present = {info.path for folder in folders for info in client.list_artifacts(run_id, folder)}
    for folder, local in part.artifacts:
        if f"{folder}/{local.name}" not in present:
            client.log_artifact(run_id, str(local), folder)
