"""Bytes before trust: re-hash a run bundle's stored files against the digests its record claims.

A digest in a record is a claim; the bytes on disk are the evidence. :func:`check_run` re-reads
everything a run stored (every file of every ledger entry, the data snapshot, the code snapshot,
the checkpoints), checks that the record itself is the one the runs log sealed, and reports the
state of its signature. :func:`require_intact` is the guard every command that reads stored
artifacts calls first: it raises :class:`ArtifactTamperedError` naming the dataset, the file and
both digests.

File digests go through the persistent :class:`~kedro_repro.digest_cache.DigestCache`, so
re-checking an unchanged bundle costs ``stat`` calls, not reads; any change to a file (even one
that restores its mtime) moves its ctime and forces a re-read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kedro_repro import runlog
from kedro_repro.digest_cache import DigestCache
from kedro_repro.hashing import json_digest
from kedro_repro.record import (
    RECORD_FILE,
    RUNS_DIR,
    SNAPSHOT_FILE,
    RecordError,
    RunRecord,
    is_run_id,
    load_run,
)
from kedro_repro.signing import SignatureStatus, signature_status

DIGEST_CACHE = "data/.cache/digests.sqlite"


class ArtifactTamperedError(RuntimeError):
    """A stored artifact's bytes are not those its run recorded (or cannot be checked)."""


@dataclass(frozen=True)
class FileProblem:
    """One stored item whose bytes disagree with the record."""

    run_id: str
    item: str
    """The dataset name, or ``record``, ``data_snapshot``, ``code``, ``checkpoints:<dataset>``."""
    path: str
    expected: str | None
    actual: str | None
    reason: str

    def describe(self) -> str:
        """One line naming the item, the file and both digests."""
        return (
            f"run {self.run_id}: {self.item}: {self.path} {self.reason} "
            f"(recorded {self.expected}, found {self.actual})"
        )


@dataclass
class RunCheck:
    """The outcome of :func:`check_run` for one run."""

    run_id: str
    seal: str
    """The runs-log seal of the record (see :class:`kedro_repro.runlog.RecordSeal`)."""
    signature: SignatureStatus | None = None
    problems: list[FileProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files_checked: int = 0

    @property
    def verdict(self) -> str:
        """``intact`` (every byte as recorded) or ``tampered``."""
        return "tampered" if self.problems else "intact"

    def to_dict(self) -> dict:
        """JSON-ready form."""
        signature = self.signature
        return {
            "run_id": self.run_id,
            "verdict": self.verdict,
            "seal": self.seal,
            "signature": None
            if signature is None
            else {
                "state": signature.state,
                "principals": list(signature.principals),
                "fingerprint": signature.fingerprint,
                "description": signature.describe(),
            },
            "files_checked": self.files_checked,
            "problems": [p.__dict__ for p in self.problems],
            "notes": self.notes,
        }


def stored_items(record: RunRecord) -> list[tuple[str, str, str]]:
    """``(item, project-relative path, recorded digest)`` for every file the run stored."""
    bundle = f"{RUNS_DIR}/{record.run_id}"
    items = [
        (name, path, digest)
        for name, entry in record.ledger.items()
        for path, digest in entry.files.items()
    ]
    if record.code is not None:
        items += [("code", f"{bundle}/{path}", d) for path, d in record.code.files.items()]
    for name, section in record.checkpoints.items():
        items += [
            (f"checkpoints:{name}", f"{section.directory}/{file}", digest)
            for file, digest in section.files.items()
        ]
    return items


def check_run(
    project: Path,
    run_id: str,
    *,
    datasets: Iterable[str] | None = None,
    allowed_signers: Path | None = None,
    cache: DigestCache | None = None,
) -> RunCheck:
    """Check the record and every stored file of ``run_id`` (or only those of ``datasets``)."""
    project = Path(project)
    runs_dir = project / RUNS_DIR
    seal = runlog.check_record(runs_dir, run_id)
    result = RunCheck(run_id=run_id, seal=seal.status)
    record_path = f"{RUNS_DIR}/{run_id}/{RECORD_FILE}"
    if seal.status in ("modified", "missing", "log-broken"):
        result.problems.append(
            FileProblem(run_id, "record", record_path, seal.expected, seal.actual, seal.status)
        )
    try:
        record = load_run(runs_dir, run_id)
    except (RecordError, FileNotFoundError) as error:
        result.problems.append(FileProblem(run_id, "record", record_path, None, None, str(error)))
        return result
    if seal.status == "unsealed":
        if record.status == "running":
            result.notes.append("record not sealed yet: the run is running or was killed")
        elif record.schema_version >= 2:
            result.problems.append(
                FileProblem(
                    run_id,
                    "record",
                    record_path,
                    None,
                    seal.actual,
                    "is final but has no entry in the runs log",
                )
            )
        else:
            result.notes.append("record from before the runs log (schema 1): not sealed")
    result.signature = signature_status(project / record_path, allowed_signers, cwd=project)
    if result.signature.state == "invalid":
        result.problems.append(
            FileProblem(
                run_id,
                "record",
                record_path,
                None,
                None,
                f"signature does not verify: {result.signature.message}",
            )
        )
    if record.schema_version < 2:
        result.notes.append("schema 1 record: no stored-file digests; bytes cannot be checked")
    wanted = None if datasets is None else set(datasets)
    items = [
        item for item in stored_items(record) if wanted is None or item[0].split(":")[-1] in wanted
    ]
    result.problems += _check_files(project, run_id, items, cache)
    result.files_checked = len(items)
    if record.data_snapshot is not None and (wanted is None or "data_snapshot" in wanted):
        result.problems += _check_snapshot(project, record)
        result.files_checked += 1
    return result


def _check_files(
    project: Path, run_id: str, items: list[tuple[str, str, str]], cache: DigestCache | None
) -> list[FileProblem]:
    present = [(i, p, d) for i, p, d in items if (project / p).is_file()]
    problems = [
        FileProblem(run_id, i, p, d, None, "is missing")
        for i, p, d in items
        if not (project / p).is_file()
    ]
    own = cache is None
    cache = cache or open_cache(project)
    try:
        actual = cache.digests([project / p for _, p, _ in present])
    finally:
        if own:
            cache.close()
    problems += [
        FileProblem(run_id, i, p, d, a, "was modified")
        for (i, p, d), a in zip(present, actual, strict=True)
        if a != d
    ]
    return problems


def _check_snapshot(project: Path, record: RunRecord) -> list[FileProblem]:
    assert record.data_snapshot is not None
    path = f"{RUNS_DIR}/{record.run_id}/{SNAPSHOT_FILE}"
    expected = record.data_snapshot.digest
    try:
        actual = json_digest(json.loads((project / path).read_text()))
    except FileNotFoundError:
        return [FileProblem(record.run_id, "data_snapshot", path, expected, None, "is missing")]
    except (OSError, ValueError) as error:
        return [FileProblem(record.run_id, "data_snapshot", path, expected, None, str(error))]
    if actual != expected:
        return [FileProblem(record.run_id, "data_snapshot", path, expected, actual, "was modified")]
    return []


def open_cache(project: Path) -> DigestCache:
    """The project's persistent digest cache (shared with the corpus readers)."""
    return DigestCache(Path(project) / DIGEST_CACHE)


def require_intact(
    project: Path, run_id: str, datasets: Iterable[str] | None = None, *, what: str = "reading"
) -> RunCheck:
    """:func:`check_run`, raising :class:`ArtifactTamperedError` on any problem."""
    result = check_run(project, run_id, datasets=datasets)
    if result.problems:
        raise ArtifactTamperedError(
            f"refusing {what} run {run_id}: its stored bytes are not what it recorded:\n"
            + "\n".join(f"  {p.describe()}" for p in result.problems)
            + f"\n(`kedro repro check {run_id}` lists every file)"
        )
    return result


def check_pinned_inputs(project: Path, pinned: dict[str, str], exempt: set[str]) -> None:
    """Before a run loads another run's versions, check those bytes against that run's ledger.

    ``exempt`` names datasets that check themselves (a checkpoint store verifies each
    checkpoint's digest and falls back to an intact one).
    """
    by_run: dict[str, list[str]] = {}
    for dataset, version in sorted(pinned.items()):
        if dataset in exempt:
            continue
        if not is_run_id(version):
            raise ArtifactTamperedError(
                f"--load-versions {dataset}:{version}: {version!r} is not a run id, so no run "
                "record vouches for its bytes"
            )
        by_run.setdefault(version, []).append(dataset)
    for run_id, datasets in by_run.items():
        try:
            record = load_run(Path(project) / RUNS_DIR, run_id)
        except FileNotFoundError:
            raise ArtifactTamperedError(
                f"version {run_id} of {', '.join(datasets)} belongs to no recorded run: its "
                "bytes cannot be checked"
            ) from None
        unrecorded = [d for d in datasets if d not in record.ledger]
        if unrecorded:
            raise ArtifactTamperedError(
                f"run {run_id} did not save {', '.join(unrecorded)}: nothing to load at that version"
            )
        require_intact(project, run_id, datasets, what="to load the inputs of")
