"""A tamper-evident, append-only log of finished runs: ``<runs dir>/RUNS.log``.

Each line is one JSON object (an :class:`Entry`), written in a fixed key order with no spaces::

    {"seq":3,"run_id":"...","record_digest":"blake3:...","prev":"blake3:...","at":"...Z"}

``record_digest`` is the digest of the run's ``record.json`` bytes when the run was sealed;
``prev`` is the digest of the previous entry's line exactly as stored (without its newline), or
:data:`GENESIS` for the first entry; ``seq`` counts entries from 1. A run may be sealed more than
once (a record re-sealed after an intended rewrite): its latest entry is authoritative.

What this proves, and what it does not:

* Editing a record after it was sealed is detected (:func:`check_record` says ``"modified"``).
* Editing, removing or reordering a log entry breaks the link of the entry after it
  (:func:`verify_chain` names the line and seq), so covering an edited record by editing its
  entry is detected -- unless the edited entry is the last one.
* It is *not* proof against someone who can write the log: they can rewrite every entry from
  some point on and recompute the chain, or truncate the log. Only an anchor kept elsewhere
  closes that gap: note the head digest (:func:`head`) somewhere the attacker cannot rewrite
  (a commit message, a paper's appendix, an e-mail), or sign it, and pass it later as
  ``verify_chain(runs_dir, anchor=...)``; every entry up to the anchored one is then fixed.

Appends from concurrent processes are serialised by an exclusive ``fcntl.flock`` on
``RUNS.log.lock`` and fsync'ed, so entries never interleave or get lost (local file systems; NFS
locking is only as good as the server's). A crash mid-append can leave a truncated last line:
readers report it as a problem instead of failing, and the next append starts a new line after
it and links to the last complete entry, so the chain stays valid.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from kedro_repro.atomic import fsync_path
from kedro_repro.hashing import bytes_digest, file_digest

LOG_NAME = "RUNS.log"
LOCK_NAME = "RUNS.log.lock"
RECORD_NAME = "record.json"
GENESIS = "blake3:" + "0" * 64  # the ``prev`` of the first entry
_FIELDS = ("seq", "run_id", "record_digest", "prev", "at")

SealStatus = Literal["sealed", "modified", "missing", "unsealed", "log-broken"]


@dataclass(frozen=True)
class Entry:
    """One line of the runs log; ``line`` is its 1-based line number in the file (not stored)."""

    seq: int
    run_id: str
    record_digest: str
    prev: str
    at: str
    line: int = field(default=0, compare=False)

    def to_line(self) -> bytes:
        """The entry's canonical line, without the newline: fixed key order, no spaces, ASCII."""
        values = {name: getattr(self, name) for name in _FIELDS}
        return json.dumps(values, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class RecordSeal:
    """Whether a run's record still has the bytes the runs log sealed.

    ``status``: ``"sealed"`` (matches its latest entry), ``"modified"`` (digest differs),
    ``"missing"`` (an entry exists but the record file is gone), ``"unsealed"`` (no entry: still
    running, or older than the log) or ``"log-broken"`` (the chain is broken at or before the
    link that vouches for the run's latest entry, or anywhere when the run has none, so the log
    cannot vouch for it).
    """

    run_id: str
    status: SealStatus
    expected: str | None  # record_digest of the latest entry for the run
    actual: str | None  # digest of the record file now; None when it does not exist
    entry: Entry | None
    problems: tuple[str, ...] = ()  # chain problems that made the status "log-broken"

    @property
    def ok(self) -> bool:
        """True only for ``"sealed"``."""
        return self.status == "sealed"

    def describe(self) -> str:
        """One human-readable line."""
        if self.status == "sealed":
            return f"{self.run_id}: sealed (log seq {self.entry.seq if self.entry else '?'})"
        if self.status == "modified":
            return f"{self.run_id}: MODIFIED: sealed as {self.expected}, now {self.actual}"
        if self.status == "missing":
            return f"{self.run_id}: record missing (sealed as {self.expected})"
        if self.status == "unsealed":
            return f"{self.run_id}: unsealed (no entry in the runs log)"
        return f"{self.run_id}: runs log broken: " + "; ".join(self.problems)


@dataclass(frozen=True)
class _Problem:
    line: int
    kind: Literal["link", "unparsable"]
    text: str


@dataclass(frozen=True)
class _Scan:
    entries: list[Entry]
    digests: list[str]  # digest of each entry's stored line, parallel to ``entries``
    problems: list[_Problem]


def log_path(runs_dir: str | Path) -> Path:
    """Path of the runs log inside ``runs_dir``."""
    return Path(runs_dir) / LOG_NAME


def append(runs_dir: str | Path, run_id: str, record_path: str | Path) -> Entry:
    """Seal ``record_path``'s current bytes for ``run_id``: append an entry and fsync it.

    Safe to call from many processes at once. Appending never checks the chain (a broken log
    must not stop runs from being recorded); :func:`verify_chain` reports breaks.
    """
    if not run_id or "\n" in run_id:
        raise ValueError(f"invalid run id {run_id!r}")
    digest = file_digest(record_path)  # before taking the lock, to keep it short
    directory = Path(runs_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOG_NAME
    with _locked(directory / LOCK_NAME):
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            content = _read_all(fd)
            scan = _scan(content)
            last = scan.entries[-1] if scan.entries else None
            entry = Entry(
                seq=last.seq + 1 if last else 1,
                run_id=run_id,
                record_digest=digest,
                prev=scan.digests[-1] if last else GENESIS,
                at=datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
                line=content.count(b"\n") + (2 if content and not content.endswith(b"\n") else 1),
            )
            # A torn last line (crash mid-append) is left for readers to report; start afresh.
            repair = b"\n" if content and not content.endswith(b"\n") else b""
            _write_all(fd, repair + entry.to_line() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_path(directory)  # make the new file's directory entry durable too
    return entry


def read_log(runs_dir: str | Path) -> list[Entry]:
    """The log's well-formed entries in file order; unparsable lines are skipped (see
    :func:`verify_chain`). A missing log is an empty log."""
    return _scan(_read_log_bytes(runs_dir)).entries


def latest_entries(runs_dir: str | Path) -> dict[str, Entry]:
    """The latest (authoritative) entry of each run id in the log."""
    return {entry.run_id: entry for entry in read_log(runs_dir)}


def verify_chain(runs_dir: str | Path, anchor: str | None = None) -> list[str]:
    """Problems with the log, one sentence each naming the line (and seq); empty when intact.

    ``anchor``: a digest once printed by :func:`head`; it is a problem if no entry has it, i.e.
    the log was rewritten or truncated at or before the anchored entry.
    """
    scan = _scan(_read_log_bytes(runs_dir))
    problems = [p.text for p in scan.problems]
    if anchor is not None and anchor not in scan.digests:
        problems.append(f"anchor {anchor} matches no entry: the log was rewritten or truncated")
    return problems


def head(runs_dir: str | Path) -> str | None:
    """Digest of the last complete entry's line, the value to keep elsewhere as an anchor;
    None for an empty log."""
    scan = _scan(_read_log_bytes(runs_dir))
    return scan.digests[-1] if scan.digests else None


def check_record(
    runs_dir: str | Path, run_id: str, record_path: str | Path | None = None
) -> RecordSeal:
    """Whether ``run_id``'s record (default ``<runs_dir>/<run_id>/record.json``) is as sealed."""
    path = Path(record_path) if record_path is not None else Path(runs_dir) / run_id / RECORD_NAME
    actual = file_digest(path) if path.is_file() else None
    scan = _scan(_read_log_bytes(runs_dir))
    index = next(
        (i for i in reversed(range(len(scan.entries))) if scan.entries[i].run_id == run_id), None
    )
    entry = scan.entries[index] if index is not None else None
    # An edit to this entry shows as a broken link in the *next* one, so breaks up to the next
    # entry's line count. Torn lines do not: links skip them, so an entry mangled into garbage
    # still breaks the next link. Without an entry, any break may be the entry's removal.
    if index is None:
        upto = None
    elif index + 1 < len(scan.entries):
        upto = scan.entries[index + 1].line
    else:
        upto = scan.entries[index].line
    links = [p for p in scan.problems if p.kind == "link"]
    breaks = tuple(p.text for p in links if upto is None or p.line <= upto)
    expected = entry.record_digest if entry else None
    status: SealStatus
    if breaks:
        status = "log-broken"
    elif entry is None:
        status = "unsealed"
    elif actual is None:
        status = "missing"
    elif actual != expected:
        status = "modified"
    else:
        status = "sealed"
    return RecordSeal(run_id, status, expected, actual, entry, breaks)


def _scan(content: bytes) -> _Scan:
    """Parse the log and check every link; later entries link to the last well-formed one."""
    entries: list[Entry] = []
    digests: list[str] = []
    problems: list[_Problem] = []
    lines = content.split(b"\n")
    torn = lines[-1] != b""  # the file does not end with a newline
    if not torn:
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        entry, reason = _parse(raw, number)
        if entry is None:
            if number == len(lines) and torn:
                reason += "; a truncated last line, probably a crash while appending"
            problems.append(_Problem(number, "unparsable", f"line {number}: unparsable: {reason}"))
            continue
        if entries:
            previous, expected_prev = entries[-1], digests[-1]
            where = f"line {previous.line} (seq {previous.seq})"
        else:
            previous, expected_prev, where = None, GENESIS, "the genesis value"
        if entry.prev != expected_prev:
            problems.append(
                _Problem(
                    number,
                    "link",
                    f"line {number} (seq {entry.seq}): broken link: prev does not match {where}; "
                    "an entry was edited, removed or reordered",
                )
            )
        expected_seq = previous.seq + 1 if previous else 1
        if entry.seq != expected_seq:
            problems.append(
                _Problem(
                    number,
                    "link",
                    f"line {number} (seq {entry.seq}): expected seq {expected_seq}",
                )
            )
        entries.append(entry)
        digests.append(bytes_digest(raw))  # the stored bytes, so any reformatting shows too
    return _Scan(entries, digests, problems)


def _parse(raw: bytes, number: int) -> tuple[Entry | None, str]:
    if not raw.strip():
        return None, "empty line"
    try:
        value: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"not JSON ({exc})"
    if not isinstance(value, dict) or set(value) != set(_FIELDS):
        return None, f"not a log entry (expected the keys {', '.join(_FIELDS)})"
    seq = value["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return None, "not a log entry (seq is not a positive integer)"
    if not all(isinstance(value[name], str) for name in _FIELDS[1:]):
        return None, "not a log entry (a field that must be text is not)"
    return Entry(line=number, **value), ""


def _read_log_bytes(runs_dir: str | Path) -> bytes:
    try:
        return log_path(runs_dir).read_bytes()
    except FileNotFoundError:
        return b""


@contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    # A separate lock file, not the log itself: its inode never changes, even if someone
    # replaces RUNS.log, so every writer always locks the same object.
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
