"""The run record: one JSON document per run, with a schema version, rewritten atomically.

It lives at ``data/09_runs/<run id>/record.json`` beside the run's data snapshot and code
snapshot. It is written when the run starts, after every node and when the run ends, so a crashed
run still leaves an honest partial record.

This module is the record's only writer and reader: :class:`~kedro_repro.hooks.RunRecordHook`
builds a :class:`RunRecord` and hands it to :func:`write_record`; every reader gets a
:class:`RunRecord` back (:func:`load_run`, :func:`list_records`, :func:`scan_records`) and reads
it by attribute. Only where the JSON document itself matters (``show --json``) is it read raw,
through :func:`record_document`.

A record read back is data from disk, possibly from someone else: :class:`RunRecord` parses it
strictly (unknown fields, malformed run ids, environment names that are paths, digests that are
not digests are refused with the field named), so nothing downstream ever builds a path, a
command or a configuration from an unchecked string.

Schema versions: this kedro-repro writes :data:`SCHEMA_VERSION` and reads
:data:`READABLE_VERSIONS`. A version 1 record is migrated on read (:func:`migrate`): the
sections version 2 added get the values that say "not recorded" (no stored-file digests, every
recorded node complete, no code snapshot, no checkpoints, no runner, no process section), and
its ``schema_version`` stays 1, so readers still know which claims it cannot make (it has no
stored-file digests to check, and it predates the runs log's seals). A record of any other
version (a newer kedro-repro's) is refused, naming the version found and the ones read here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from kedro_repro.atomic import atomic_open
from kedro_repro.processes import Liveness, ProcessIdentity, liveness
from kedro_repro.redaction import redact_record

RUNS_DIR = "data/09_runs"
"""Where run bundles live, relative to the project."""
SCHEMA_VERSION = 2
"""2 added stored-file digests, node completion, the code snapshot and checkpoint digests."""
READABLE_VERSIONS = (1, 2)
"""The schema versions this kedro-repro reads (1 is migrated on read, see :func:`migrate`)."""
RECORD_FILE = "record.json"
SNAPSHOT_FILE = "data_snapshot.json"
CODE_DIR = "code"
"""Folder of a bundle holding the code snapshot: the patch of a dirty tree and the lock files."""

RUN_ID_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}\.[0-9]{2}\.[0-9]{2}\.[0-9]{3}Z$"
DIGEST_PATTERN = r"^blake3:[0-9a-f]{64}$"
# A configuration environment is a folder name under conf/, never a path.
ENV_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$"


class RecordError(ValueError):
    """A record that cannot be read or does not have the shape of a run record."""


def _relative_posix(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in value:
        raise ValueError(f"{value!r} is not a relative path inside the project")
    return value


RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN)]
Digest = Annotated[str, Field(pattern=DIGEST_PATTERN)]
EnvName = Annotated[str, Field(pattern=ENV_PATTERN)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
RelativePath = Annotated[str, AfterValidator(_relative_posix)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class LedgerEntry(_Strict):
    """One dataset a node saved: its content digest and the digest of every file it stored."""

    node: Name
    version: RunId | None
    digest: Digest
    files: dict[RelativePath, Digest] = {}
    """Project-relative path -> file digest of what the dataset wrote (empty: not a local file)."""


class InputEntry(_Strict):
    """A dataset the run read without producing it."""

    version: str | None
    digest: Digest
    run: RunId | None = None
    """The run whose bundle holds this version (pinned inputs), when known."""


class NodeEntry(_Strict):
    """A node's timing, inputs and outputs; ``complete`` once every output is saved.

    ``inputs`` is None in records written before they were kept (export then reads the structure
    from the project's pipelines, which costs importing the node code).
    """

    seconds: float | None = None
    inputs: list[Name] | None = None
    outputs: list[Name] = []
    complete: bool = True


class ParametersSection(_Strict):
    """The parameters a run used, design choices apart from tunable ones, with digests."""

    design: dict[str, Any]
    tunable: dict[str, Any]
    design_digest: Digest
    tunable_digest: Digest
    digest: Digest


class DataSnapshot(_Strict):
    """The data snapshot file beside the record (item -> digest) and its canonical digest."""

    file: Literal["data_snapshot.json"]
    items: int
    digest: Digest


class CodeSnapshot(_Strict):
    """Which code a run executed: a commit, and the stored patch of a dirty tree.

    ``files`` maps a bundle-relative path under ``code/`` (``code/patch.diff``, ``code/uv.lock``,
    ``code/flake.lock``, ``code/pyproject.toml``) to its digest; a replay restores the commit with
    ``git archive`` and applies the patch.
    """

    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")] | None
    prefix: RelativePath | Literal[""] = ""
    """The project's folder inside its git repository ('' at the top)."""
    dirty: bool = False
    patch: RelativePath | None = None
    patch_missing_reason: str | None = None
    files: dict[RelativePath, Digest] = {}


class CheckpointEntry(_Strict):
    """One checkpoint a run's store wrote, kept or removed by its retention policy."""

    step: int
    epoch: int | None = None
    """The epoch (from 0) this checkpoint ends; None for one written inside an epoch."""
    digest: Digest
    """The file's digest (what ``check`` re-hashes)."""
    state: Digest | None = None
    """The content's digest, equal whichever process wrote the same state (what segment
    verification compares)."""
    bytes: int | None = None
    kept: bool = True


class RetentionSection(_Strict):
    """The checkpoint store's retention policy: every N-th epoch end plus the last K."""

    keep_last: int | None = None
    keep_every_epochs: int | None = None


class CheckpointSection(_Strict):
    """The checkpoints a run's store holds when the node ends, with their file digests."""

    directory: RelativePath
    files: dict[Name, Digest]
    skipped: list[str] = []
    """Checkpoints found corrupt and passed over on resume (path: reason)."""
    policy: RetentionSection | None = None
    """The retention policy the store ran with (absent from records written before it)."""
    history: dict[Name, CheckpointEntry] = {}
    """Every checkpoint the store wrote, by file name, those pruned included."""


class ProcessSection(_Strict):
    """The process that ran the run: with it, a live run is told from a dead one whose pid was
    reused (see :mod:`kedro_repro.processes`). Absent from records written before it."""

    host: str
    pid: int
    start_time: int | None
    """Clock ticks after boot at which the process started (``/proc/<pid>/stat`` field 22)."""
    boot_id: str | None = None

    def identity(self) -> ProcessIdentity:
        """As a :class:`ProcessIdentity`."""
        return ProcessIdentity(self.host, self.pid, self.start_time, self.boot_id)


class RunOptions(_Strict):
    """Kedro's run options, as the run was started with them."""

    tags: list[Name] | None = None
    node_names: list[Name] | None = None
    from_nodes: list[Name] | None = None
    to_nodes: list[Name] | None = None
    from_inputs: list[Name] | None = None
    to_outputs: list[Name] | None = None
    namespaces: list[Name] | None = None
    runtime_params: dict[str, Any] | None = None


class Environment(_Strict):
    """The captured environment (see :mod:`kedro_repro.environment`)."""

    python: dict[str, Any]
    packages: dict[str, str]
    torch: dict[str, Any] | None
    hardware: dict[str, Any]
    determinism_env: dict[str, str | None]
    environment_variables: dict[str, str]
    git: dict[str, Any] | None
    lock_files: dict[str, Digest | None]
    command: list[str]
    hostname: str


class WorkerEntry(_Strict):
    """A process other than the Kedro one that computed part of a run (e.g. one machine of a
    multi-machine training), with its own environment (see :mod:`kedro_repro.workers`)."""

    name: Name
    """What the launcher calls it (e.g. ``train_model/node-1``)."""
    process: ProcessSection
    details: dict[str, Any] = {}
    """The launcher's facts about it: its rank among the machines, the ranks it ran, ..."""
    environment: Environment


class RunRecord(_Strict):
    """A run record as stored in ``record.json``."""

    schema_version: Literal[1, 2]
    run_id: RunId
    status: Literal["running", "complete", "crashed"]
    started_at: str
    finished_at: str | None
    duration_seconds: float | None
    pid: int
    hostname: str
    process: ProcessSection | None = None
    command: list[str]
    pipelines: list[Name]
    env: EnvName | None
    runner: Name | None = None
    run_options: RunOptions
    load_versions: dict[Name, RunId]
    resumed_from: RunId | None
    parameters: ParametersSection
    seeds: dict[str, Any]
    environment: Environment
    # Fields in the order record.json has always listed them: the model dumps in this order.
    code: CodeSnapshot | None = None
    inputs: dict[Name, InputEntry]
    ledger: dict[Name, LedgerEntry]
    nodes: dict[Name, NodeEntry]
    checkpoints: dict[Name, CheckpointSection] = {}
    workers: list[WorkerEntry] = []
    """Other processes, on this machine or others, that computed part of the run (absent: none)."""
    nondeterministic_operations: list[str]
    metrics: dict[str, Any] | None
    data_snapshot: DataSnapshot | None
    error: str | None

    def process_identity(self) -> ProcessIdentity:
        """The process that ran the run: its ``process`` section, or (records from before it)
        host and pid alone."""
        if self.process is not None:
            return self.process.identity()
        return ProcessIdentity(self.hostname, self.pid, None)

    def completed_nodes(self) -> set[str]:
        """Nodes whose every output was saved (a node killed between two saves is not here)."""
        return {name for name, node in self.nodes.items() if node.complete}


def migrate(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of a version 1 ``document`` with what version 2 added filled in as "not recorded".

    Ledger entries get no stored-file digests (``files: {}``), recorded nodes count as complete
    (version 1 did not track completion: resuming such a record always assumed it), and the code
    snapshot, checkpoints, runner and process section are absent. ``schema_version`` stays 1: integrity checks tell such a record
    from a version 2 one that lost its digests. Documents of other versions are returned as is.
    """
    if document.get("schema_version") != 1:
        return document
    migrated = dict(document)
    migrated["ledger"] = {
        name: {"files": {}, **entry} if isinstance(entry, dict) else entry
        for name, entry in (document.get("ledger") or {}).items()
    }
    migrated["nodes"] = {
        name: {"complete": True, **entry} if isinstance(entry, dict) else entry
        for name, entry in (document.get("nodes") or {}).items()
    }
    for key, absent in (("code", None), ("checkpoints", {}), ("runner", None), ("process", None)):
        migrated.setdefault(key, absent)
    return migrated


def _check_version(document: Any, source: str) -> None:
    if not isinstance(document, dict) or "schema_version" not in document:
        return  # not a record at all: validation names what is missing
    found = document["schema_version"]
    if type(found) is not int or found not in READABLE_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        newer = type(found) is int and found > SCHEMA_VERSION
        raise RecordError(
            f"{source}: record schema version {found!r} is not one this kedro-repro reads "
            f"({readable})"
            + ("; a newer kedro-repro probably wrote it: upgrade to read it" if newer else "")
        )


def parse_record(document: Any, source: str = "record") -> RunRecord:
    """``document`` as a :class:`RunRecord`; :class:`RecordError` names the first bad fields.

    A version 1 document is migrated first (:func:`migrate`); a version this kedro-repro does
    not read is refused, naming it and :data:`READABLE_VERSIONS`.
    """
    _check_version(document, source)
    try:
        return RunRecord.model_validate(
            migrate(document) if isinstance(document, dict) else document
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in error.errors()[:5]
        )
        raise RecordError(f"{source} is not a valid run record: {problems}") from None


def write_json(path: Path, document: Any) -> None:
    """Atomically write ``document`` as indented JSON (only JSON-native values are accepted)."""
    with atomic_open(path) as handle:
        json.dump(document, handle, indent=1, sort_keys=False)
        handle.write("\n")


def record_json(record: RunRecord) -> dict[str, Any]:
    """``record`` as the JSON document ``record.json`` holds, every string redacted.

    Secrets are redacted here, on the document, by shape and by name where users name things
    (:func:`~kedro_repro.redaction.redact_record`): nothing a hook or node put in the record
    (warnings, metrics, errors) is written verbatim.
    """
    # Python mode, not "json": free-form values (metrics) reach json.dump as the node gave them,
    # as before the record was a model (pydantic's JSON mode would turn a NaN metric into null).
    return redact_record(record.model_dump())


def write_record(path: Path, record: RunRecord) -> None:
    """Atomically write ``record`` to ``path`` (a ``record.json``), redacted (:func:`record_json`).

    Called after every node: one dump of the model and one JSON write, nothing re-validated.
    """
    write_json(path, record_json(record))


def redacted(record: RunRecord) -> RunRecord:
    """``record`` with every string redacted again, for printing and exporting: a record written
    before redaction existed may hold secrets (records written since are unchanged by it)."""
    return parse_record(record_json(record), f"record of run {record.run_id}")


def load_run(runs_dir: Path, run_id: str) -> RunRecord:
    """The parsed record of ``run_id``.

    Raises FileNotFoundError naming the known runs when absent, :class:`RecordError` when the
    file is not a valid record (or ``run_id`` is not a run id at all: never used as a path then).
    """
    return parse_record(record_document(runs_dir, run_id), str(runs_dir / run_id / RECORD_FILE))


def record_document(runs_dir: Path, run_id: str) -> dict[str, Any]:
    """The JSON document of ``run_id``'s ``record.json`` as stored, once it validates as a record.

    For what needs the document itself (``kedro repro show --json``); everything else reads
    the :class:`RunRecord` of :func:`load_run`. Errors as :func:`load_run`'s.
    """
    if not isinstance(run_id, str) or not is_run_id(run_id):
        raise RecordError(f"{run_id!r} is not a run id (expected e.g. 2026-12-01T21.42.08.863Z)")
    path = runs_dir / run_id / RECORD_FILE
    if not path.exists():
        known = ", ".join(r.run_id for r in list_records(runs_dir)[-5:]) or "none"
        raise FileNotFoundError(f"no record for run {run_id!r} in {runs_dir} (latest: {known})")
    document = _read_json(path)
    record = parse_record(document, str(path))
    if record.run_id != run_id:
        raise RecordError(f"{path} names run {record.run_id!r}, not the folder's {run_id!r}")
    return document


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RecordError(f"{path} cannot be read as JSON: {error}") from None


def is_run_id(text: str) -> bool:
    """Whether ``text`` has the form of a run id (and so is safe as a folder name)."""
    return re.fullmatch(RUN_ID_PATTERN, text) is not None


def list_records(runs_dir: Path) -> list[RunRecord]:
    """Every valid record under ``runs_dir``, oldest first (see :func:`scan_records` for the rest)."""
    return [record for record in scan_records(runs_dir) if not isinstance(record, Unreadable)]


class Unreadable(BaseModel):
    """A bundle whose record cannot be read: listed with its reason, never fatal for the others."""

    path: str
    reason: str


def scan_records(runs_dir: Path) -> list[RunRecord | Unreadable]:
    """Every bundle under ``runs_dir`` in run-id order: its validated record, or why it is unreadable."""
    if not runs_dir.is_dir():
        return []
    found: list[RunRecord | Unreadable] = []
    for path in sorted(runs_dir.glob(f"*/{RECORD_FILE}")):
        try:
            record = parse_record(_read_json(path), str(path))
            if record.run_id != path.parent.name:
                raise RecordError(f"names run {record.run_id!r}, not its folder's")
            found.append(record)
        except RecordError as error:
            reason = str(error).removeprefix(f"{path}: ").replace(f"{path} ", "")
            found.append(Unreadable(path=str(path), reason=reason))
    return found


def status(record: RunRecord) -> str:
    """complete, resumed (complete after continuing another run), crashed, or running."""
    if record.status == "complete":
        return "resumed" if record.resumed_from else "complete"
    if record.status == "running" and run_liveness(record) == "dead":
        return "crashed"  # another host's run ("unknown") cannot be told dead from here
    return record.status


def run_liveness(record: RunRecord) -> Liveness:
    """Whether the process that ran ``record`` still runs: ``alive``, ``dead`` or ``unknown``.

    Records with a ``process`` section are judged by host, pid and start time, so a reused pid
    does not keep a dead run alive; older records by host and pid alone.
    """
    return liveness(record.process_identity())
