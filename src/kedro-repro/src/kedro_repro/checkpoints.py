"""A directory of step-numbered training checkpoints, written atomically, loaded without pickle.

Every committed checkpoint's file digest is recorded in the store's manifest, ``CHECKPOINTS.json``
(itself written atomically)::

    {"schema_version": 1,
     "checkpoints": {"step-000000005.safetensors":
                         {"step": 5, "digest": "blake3:<hex>", "bytes": 12345,
                          "state": "blake3:<hex>", "epoch": 0, "kept": true}}}

:meth:`CheckpointStore.latest` checks each checkpoint against it before loading, newest first, so
a bit-flipped or truncated checkpoint is named and passed over instead of resumed from.

``state`` is the digest of the checkpoint's content (:func:`state_digest`): safetensors writes
its metadata keys in a per-process order, so two processes saving the same state write
different file bytes but the same content. ``epoch`` marks a checkpoint that ends an epoch (the
boundaries of segment verification); ``kept: false`` marks one the retention policy
(:class:`RetentionPolicy`) removed, so the history of what existed outlives the files.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kedro_repro.atomic import atomic_open, remove_stale_temps
from kedro_repro.hashing import bytes_digest, file_digest
from kedro_repro.state import load_state, save_state

logger = logging.getLogger(__name__)

MANIFEST_FILE = "CHECKPOINTS.json"
MANIFEST_SCHEMA = 1
_NAME = re.compile(r"^step-(\d{9})\.safetensors$")

Status = Literal["ok", "unverified", "missing", "truncated", "mismatch", "unreadable"]


@dataclass(frozen=True)
class RetentionPolicy:
    """Which checkpoints a store keeps: every ``keep_every_epochs``-th epoch end plus the last
    ``keep_last``; the rest are removed when a newer one is saved. Both None: keep everything.

    Epoch ``e`` (counted from 0) is kept when ``(e + 1) % keep_every_epochs == 0``, so with 1
    every epoch end stays: the boundaries segment verification replays between.
    """

    keep_last: int | None = None
    keep_every_epochs: int | None = None

    def __post_init__(self) -> None:
        for name in ("keep_last", "keep_every_epochs"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"checkpoint retention {name} must be a positive integer or null")

    def kept(self, entries: dict[str, dict[str, Any]]) -> set[str]:
        """The names of ``entries`` (this store's present checkpoints) the policy keeps."""
        if self.keep_last is None and self.keep_every_epochs is None:
            return set(entries)
        by_step = sorted(entries, key=lambda name: entries[name]["step"])
        keep = set(by_step[-self.keep_last :]) if self.keep_last else set()
        if self.keep_every_epochs:
            keep |= {
                name
                for name, entry in entries.items()
                if isinstance(entry.get("epoch"), int)
                and (entry["epoch"] + 1) % self.keep_every_epochs == 0
            }
        return keep

    def to_dict(self) -> dict[str, int | None]:
        """As recorded in the run record."""
        return {"keep_last": self.keep_last, "keep_every_epochs": self.keep_every_epochs}


class CorruptCheckpointError(RuntimeError):
    """Checkpoints exist but none of them is intact, so training cannot continue from any."""

    def __init__(self, problems: list[CheckpointCheck]):
        self.problems = problems
        lines = "\n".join(f"  {p.path}: {p.reason}" for p in problems)
        super().__init__(
            f"no intact checkpoint to resume from; every checkpoint found is corrupt:\n{lines}\n"
            "Restore one of them, or start a fresh run (not resuming) to train from step 0."
        )


@dataclass(frozen=True)
class CheckpointCheck:
    """The outcome of checking one checkpoint file against its store's manifest."""

    path: Path
    status: Status
    expected: str | None = None
    """The digest the manifest recorded when the checkpoint was committed (None: no entry)."""
    actual: str | None = None
    """The digest of the file as it is now (None: missing)."""
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the file is byte for byte the one committed."""
        return self.status == "ok"

    @property
    def usable(self) -> bool:
        """Whether the file may be loaded: intact, or with nothing to check it against."""
        return self.status in ("ok", "unverified")

    @property
    def reason(self) -> str:
        """One phrase saying what is wrong, with both digests where they are known."""
        text = {
            "ok": "intact",
            "unverified": "unverified (no digest in the manifest)",
            "missing": "missing",
            "truncated": "truncated",
            "mismatch": "digest mismatch",
            "unreadable": "unreadable",
        }[self.status]
        if self.detail:
            text += f" ({self.detail})"
        if self.status in ("truncated", "mismatch"):
            text += f": expected {self.expected}, found {self.actual}"
        return text


class CheckpointStore:
    """Saves and finds checkpoints named ``step-000000123.safetensors`` in one directory.

    ``resume_from`` is another run's checkpoint directory: until this store holds an intact
    checkpoint of its own, :meth:`latest` returns the newest intact one there, so a new run
    continues an old one without touching it. ``keep`` bounds how many of its own checkpoints
    the store keeps (the newest ones), ``keep_every_epochs`` keeps every N-th epoch end besides
    (:class:`RetentionPolicy`). After :meth:`latest`, :attr:`skipped` lists the ``(path, reason)`` of every
    checkpoint it passed over as corrupt, for the run record.

    Opening a store removes the temporary files that interrupted writes (a run killed while
    writing a checkpoint) left in its directory and in ``resume_from``; a live writer's are kept.
    """

    def __init__(
        self,
        directory: str | Path,
        resume_from: str | Path | None = None,
        keep: int | None = None,
        keep_every_epochs: int | None = None,
    ):
        self.directory = Path(directory)
        self.resume_from = Path(resume_from) if resume_from else None
        self.keep = keep
        self.policy = RetentionPolicy(keep_last=keep, keep_every_epochs=keep_every_epochs)
        self.skipped: list[tuple[str, str]] = []
        self.resumed: CheckpointCheck | None = None
        """The check of the checkpoint :meth:`latest` last returned (``unverified`` or ``ok``)."""
        for directory in (self.directory, self.resume_from):
            if directory is not None and directory.is_dir():
                remove_stale_temps(directory)

    def save(self, step: int, state: Any, epoch: int | None = None) -> Path:
        """Write the full training state reached after ``step`` optimizer steps; ``epoch`` when
        the step ends that epoch (counted from 0).

        The checkpoint is committed (renamed into place) first, then its digest is recorded; a
        crash in between leaves a complete checkpoint that :meth:`latest` loads as unverified.
        Checkpoints the retention policy no longer keeps are then removed, and stay in the
        manifest as ``kept: false`` (their digests are the record of what existed).
        """
        path = self.directory / _name(step)
        save_state(path, state, metadata={"step": str(step)})
        present = {_name(s) for s in _steps(self.directory)}
        manifest = _read_manifest(self.directory)
        entries = {n: e for n, e in manifest.items() if n in present}
        history = {n: e for n, e in manifest.items() if n not in present and not e.get("kept", 1)}
        entries[path.name] = {
            "step": step,
            "digest": file_digest(path),
            "bytes": _size(path),
            "state": state_digest(path),
            **({"epoch": epoch} if epoch is not None else {}),
        }
        for name in present - entries.keys():  # on disk but never recorded: keep it, unverified
            entries[name] = {"step": int(_NAME.match(name).group(1))}  # type: ignore[union-attr]
        kept = self.policy.kept(entries)
        pruned = sorted(n for n in entries if n not in kept)
        for name in pruned:
            history[name] = {**entries.pop(name), "kept": False}
        # One manifest write per save, before the pruned files go: a crash after it leaves only
        # old files marked as pruned, which the next save removes again.
        _write_manifest(
            self.directory,
            {**{n: {**e, "kept": True} for n, e in entries.items() if "digest" in e}, **history},
        )
        for name in pruned:
            (self.directory / name).unlink(missing_ok=True)
        return path

    def history(self) -> dict[str, dict[str, Any]]:
        """Every checkpoint this store wrote, kept or pruned, by name: step, digests, epoch."""
        present = {_name(step) for step in self.steps()}
        return {
            name: {**entry, "kept": name in present}
            for name, entry in sorted(_read_manifest(self.directory).items())
            if name in present or entry.get("kept") is False
        }

    def steps(self) -> list[int]:
        """Steps with a complete checkpoint in this store's own directory, ascending."""
        return _steps(self.directory)

    def digests(self) -> dict[str, str]:
        """File name -> digest recorded at commit, for the checkpoints this store holds now."""
        entries = _read_manifest(self.directory)
        present = {_name(step) for step in self.steps()}
        return {name: e["digest"] for name, e in sorted(entries.items()) if name in present}

    def verify(self, path: str | Path) -> CheckpointCheck:
        """Check one checkpoint file against the manifest of the directory it lies in.

        A file the manifest does not list (a store written before manifests existed, or a crash
        between commit and record) is ``unverified``: it has nothing to be checked against.
        """
        path = Path(path)
        entry = _read_manifest(path.parent).get(path.name)
        expected = entry["digest"] if entry else None
        if not path.is_file():
            return CheckpointCheck(path, "missing", expected=expected)
        actual = file_digest(path)
        if entry is None:
            return CheckpointCheck(path, "unverified", actual=actual)
        if actual == expected:
            return CheckpointCheck(path, "ok", expected=expected, actual=actual)
        size, recorded = _size(path), entry.get("bytes")
        if isinstance(recorded, int) and size < recorded:
            detail = f"{size} of {recorded} bytes"
            return CheckpointCheck(path, "truncated", expected, actual, detail)
        return CheckpointCheck(path, "mismatch", expected=expected, actual=actual)

    def load(self, step: int) -> Any:
        """The state this store saved at ``step``; raises :class:`CorruptCheckpointError` if the
        file is not the one committed."""
        check, state = self._checked_load(self.directory / _name(step))
        if not check.usable:
            raise CorruptCheckpointError([check])
        return state

    def latest(self) -> tuple[int, Any] | None:
        """The newest intact checkpoint as ``(step, state)``: this store's, else the resumed run's.

        Checkpoints are tried newest first; one that is missing, truncated, unreadable or not
        byte for byte the one committed is skipped with a warning naming it and the checkpoint
        used instead. ``None`` only when there are no checkpoints at all: if there are some but
        none is intact, :class:`CorruptCheckpointError` names each, so a run never silently
        starts again from step 0.
        """
        self.skipped, self.resumed = [], None
        problems: list[CheckpointCheck] = []
        for directory in (self.directory, self.resume_from):
            if directory is None:
                continue
            for step in reversed(_steps(directory)):
                path = directory / _name(step)
                check, state = self._checked_load(path)
                if not check.usable:
                    problems.append(check)
                    continue
                self._report(problems, step, path, check)
                return step, state
        if problems:
            raise CorruptCheckpointError(problems)
        return None

    def _checked_load(self, path: Path) -> tuple[CheckpointCheck, Any]:
        """Verify ``path``, then load it if it passed; a file that fails to parse is unreadable."""
        check = self.verify(path)
        if not check.usable:
            return check, None
        try:
            return check, load_state(path)
        except Exception as error:  # whatever a damaged file makes the parser raise
            return CheckpointCheck(
                path, "unreadable", check.expected, check.actual, _brief(error)
            ), None

    def _report(
        self, problems: list[CheckpointCheck], step: int, path: Path, used: CheckpointCheck
    ) -> None:
        """Log each checkpoint passed over and an unverified one resumed from; keep them for the
        record."""
        for problem in problems:
            logger.warning(
                "Checkpoint %s is corrupt: %s; falling back to the checkpoint at step %d (%s)",
                problem.path,
                problem.reason,
                step,
                path,
            )
        if used.status == "unverified":
            logger.warning(
                "Checkpoint %s is unverified: %s has no digest for it (written by older code, or "
                "the run stopped between writing it and recording it); it parses, so it is used",
                path,
                path.parent / MANIFEST_FILE,
            )
        self.skipped = [(str(p.path), p.reason) for p in problems]
        self.resumed = used


def single_checkpoint_store(
    directory: str | Path, source: str | Path, entry: dict[str, Any]
) -> Path:
    """A store directory holding one recorded checkpoint (hard-linked from ``source``, copied
    where links fail) and its manifest ``entry``: what a replay continues from, checked against
    the recorded digest when it is loaded."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / Path(source).name
    try:
        os.link(source, target)
    except OSError:
        import shutil

        shutil.copy2(source, target)
    _write_manifest(directory, {target.name: entry})
    return directory


def state_digest(path: str | Path) -> str:
    """The digest of a checkpoint's content: its safetensors header with keys sorted, then its
    tensor bytes. Equal for equal states whichever process wrote them (file digests are not:
    safetensors orders metadata keys per process)."""
    data = Path(path).read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return bytes_digest(len(canonical).to_bytes(8, "little") + canonical + data[8 + size :])


def _name(step: int) -> str:
    return f"step-{step:09d}.safetensors"


def _steps(directory: Path) -> list[int]:
    """Steps with a complete checkpoint file (an interrupted write's temp file never matches)."""
    if not directory.is_dir():
        return []
    return sorted(
        int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)) and p.is_file()
    )


def _size(path: Path) -> int:
    return os.stat(path).st_size


def _read_manifest(directory: Path) -> dict[str, dict[str, Any]]:
    """The manifest's entries; ``{}`` (with a warning) if it is absent or cannot be read."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text())
        entries = document["checkpoints"]
        if document.get("schema_version") != MANIFEST_SCHEMA or not isinstance(entries, dict):
            raise ValueError(f"unknown manifest schema {document.get('schema_version')!r}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        # Not fatal: its checkpoints are then loaded as unverified, each with its own warning.
        logger.warning("Checkpoint manifest %s is unreadable (%s)", path, _brief(error))
        return {}
    return {
        name: entry
        for name, entry in entries.items()
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str)
    }


def _write_manifest(directory: Path, entries: dict[str, dict[str, Any]]) -> None:
    document = {"schema_version": MANIFEST_SCHEMA, "checkpoints": dict(sorted(entries.items()))}
    with atomic_open(directory / MANIFEST_FILE) as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")


def _brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
