"""What ``kedro repro verify`` concluded about each run, kept where people and trackers can read it.

A run's record is sealed when the run ends, so a later verification cannot go into it. Each
finished ``verify`` appends one line to ``data/.cache/verifications.jsonl``: the run id, the
grade, when, with which code and environment, and the replay's id. It is a note for people
(``kedro repro show``, the MLflow tag ``kedro_repro.verify``), never evidence: anyone who can
write the folder can write a line, and what proves a run is replaying it again. It lives with the
caches, outside the bundles and the runs log, because verify leaves the project it checks as it
found it; deleting it loses notes, nothing else. A line that does not parse is reported, never
believed.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from kedro_repro.record import RunId

VERIFICATIONS_FILE = "data/.cache/verifications.jsonl"
"""Relative to the project."""

Grade = Literal["bitwise", "tolerance", "metric", "diverged", "incomplete", "failed", "tampered"]
"""A full replay's grades, then those of a verification by segments."""


class VerificationNote(BaseModel):
    """One finished ``kedro repro verify``: which run, the grade, when, and how it was replayed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: RunId
    overall: Grade
    verified_at: str
    """UTC, ISO 8601."""
    replay_id: str
    code: str
    """Which code the replay ran: the recorded commit and patch, or the current tree."""
    environment: str
    """Which interpreter and packages the replay ran in."""
    host: str
    scope: str = "full replay"
    """What was replayed (the whole run, or part of it)."""

    def describe(self) -> str:
        """``bitwise (2026-12-03T12:00:00Z, full replay, recorded code)``."""
        return f"{self.overall} ({self.verified_at}, {self.scope}, {self.code})"


def note_verification(
    project: Path,
    run_id: str,
    overall: str,
    replay_id: str,
    code: str,
    environment: str,
    scope: str = "full replay",
) -> VerificationNote:
    """Append a verification of ``run_id`` to ``project``'s notes and return it."""
    note = VerificationNote(
        run_id=run_id,
        overall=overall,
        verified_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        replay_id=replay_id,
        code=code,
        environment=environment,
        host=os.uname().nodename,
        scope=scope,
    )
    line = (note.model_dump_json() + "\n").encode()
    # One write of one line to a file opened for appending: concurrent verifies do not interleave.
    path = project / VERIFICATIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return note


def verifications_of(project: Path, run_id: str) -> list[VerificationNote]:
    """Every noted verification of ``run_id``, oldest first; unreadable lines are named on
    standard error and skipped."""
    path = project / VERIFICATIONS_FILE
    if not path.is_file():
        return []
    notes = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            note = VerificationNote.model_validate_json(line)
        except ValidationError as error:
            first = str(error).splitlines()[0]
            print(f"warning: {path} line {number} is not a verification ({first}); skipped",
                  file=sys.stderr)  # fmt: skip
            continue
        if note.run_id == run_id:
            notes.append(note)
    return notes


def latest_verification(project: Path, run_id: str) -> VerificationNote | None:
    """The newest noted verification of ``run_id``, or None when it was never verified here."""
    notes = verifications_of(project, run_id)
    return notes[-1] if notes else None
