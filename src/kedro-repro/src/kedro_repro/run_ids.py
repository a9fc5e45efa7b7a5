"""Run ids people can type: ``latest``, ``latest~N``, unique prefixes and tags.

A run id is a millisecond timestamp (``2026-12-03T09.41.07.118Z``); nobody types one. Every
command resolves what it is given through :func:`resolve_run_id` first:

- a full run id that has a bundle is itself;
- ``latest`` is the newest recorded run, ``latest~N`` the N-th before it (run ids sort by time);
- a tag (``kedro repro tag RUN best``) is the run it points to;
- anything else that starts with a digit is a prefix, and must match exactly one run.

An unknown or ambiguous name is a :class:`RunIdError`: one line naming the closest ids.

Tags are names for people, never evidence. They live in one file beside the bundles,
``data/09_runs/TAGS.json``, outside every record, so a tag cannot change what a record, its seal
or its signature say; each tag points to the id of a run that has a record when it is set, and
a command given a tag checks that run's bytes as it would for the id. Writes are serialised by
a lock file and replace ``TAGS.json`` atomically.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from kedro_repro.record import RECORD_FILE, RecordError, RunId, is_run_id, write_json

TAGS_FILE = "TAGS.json"
"""Tag -> run id, beside the bundles (``data/09_runs/TAGS.json``); no record refers to it."""
LATEST = "latest"
TAG_PATTERN = r"^[A-Za-z][A-Za-z0-9_.+-]{0,63}$"
"""A tag starts with a letter, so it is never read as a run-id prefix (those start with a digit)."""
_LATEST = re.compile(r"^latest(?:~([0-9]+))?$")
SHOWN = 3
"""Candidate ids an error names."""


class RunIdError(RecordError):
    """A name that resolves to no run, or to several: the message names the closest ids."""


class Tags(BaseModel):
    """The contents of ``TAGS.json``."""

    model_config = ConfigDict(extra="forbid")

    tags: dict[str, RunId] = {}


def recorded_run_ids(runs_dir: Path) -> list[str]:
    """Ids of every bundle under ``runs_dir`` that holds a record, oldest first."""
    if not runs_dir.is_dir():
        return []
    return sorted(
        path.name
        for path in runs_dir.iterdir()
        if is_run_id(path.name) and (path / RECORD_FILE).is_file()
    )


def read_tags(runs_dir: Path) -> dict[str, str]:
    """Tag -> run id as ``TAGS.json`` holds them (none when there is no file)."""
    path = runs_dir / TAGS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise RecordError(f"{path} cannot be read: {error}") from None
    try:
        return Tags.model_validate(json.loads(text)).tags
    except (json.JSONDecodeError, ValidationError) as error:
        raise RecordError(f"{path} is not a tags file: {str(error).splitlines()[0]}") from None


def tags_by_run(runs_dir: Path) -> dict[str, list[str]]:
    """Run id -> its tags, sorted."""
    found: dict[str, list[str]] = {}
    for tag, run_id in sorted(read_tags(runs_dir).items()):
        found.setdefault(run_id, []).append(tag)
    return found


def resolve_run_id(runs_dir: Path, name: str) -> str:
    """The run id ``name`` stands for (see the module's docstring); :class:`RunIdError` if none."""
    name = name.strip()
    ids = recorded_run_ids(runs_dir)
    if is_run_id(name):
        if (runs_dir / name).is_dir():
            return name  # a bundle without a record yet: the command says what is missing
        raise _unknown(runs_dir, name, ids)
    if match := _LATEST.fullmatch(name):
        back = int(match.group(1) or 0)
        if back >= len(ids):
            raise RunIdError(
                f"{name!r}: there are {len(ids)} recorded run(s) in {runs_dir}"
                + (f" (oldest: {ids[0]} = latest~{len(ids) - 1})" if ids else "")
            )
        return ids[-1 - back]
    tags = read_tags(runs_dir)
    if name in tags:
        target = tags[name]
        if target not in ids:
            raise RunIdError(
                f"tag {name!r} points to run {target}, which has no record in {runs_dir} "
                f"(`kedro repro tag --delete {name}` removes it)"
            )
        return target
    if name[:1].isdigit():
        matches = [run_id for run_id in ids if run_id.startswith(name)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(matches[:SHOWN]) + (", ..." if len(matches) > SHOWN else "")
            raise RunIdError(
                f"{name!r} is the start of {len(matches)} run ids ({shown}): give more of it"
            )
    raise _unknown(runs_dir, name, ids, tags)


def _unknown(
    runs_dir: Path, name: str, ids: list[str], tags: dict[str, str] | None = None
) -> RunIdError:
    """No run is called ``name``: name the closest ids and tags (or the newest, when none is)."""
    tags = read_tags(runs_dir) if tags is None else tags
    known = [*ids, *tags, LATEST] if ids else list(tags)
    close = difflib.get_close_matches(name, known, n=SHOWN, cutoff=0.6)
    if close:
        hint = "closest: " + ", ".join(close)
    elif ids:
        hint = "latest: " + ", ".join(reversed(ids[-SHOWN:]))
        if tags:
            hint += "; tags: " + ", ".join(sorted(tags)[:SHOWN])
    else:
        hint = "no run is recorded yet"
    return RunIdError(f"no run {name!r} in {runs_dir} ({hint}; `kedro repro runs` lists them)")


def check_tag_name(tag: str) -> None:
    """Refuse a tag that could be read as something else (a run id, a prefix, ``latest``)."""
    if _LATEST.fullmatch(tag) or not re.fullmatch(TAG_PATTERN, tag):
        raise RunIdError(
            f"{tag!r} cannot be a tag: a tag starts with a letter, has up to 64 letters, digits "
            f"or _ . + -, and is not {LATEST!r} or {LATEST + '~N'!r}"
        )


def set_tag(runs_dir: Path, tag: str, run_id: str, *, move: bool = False) -> str | None:
    """Point ``tag`` at ``run_id`` (a recorded run); the run it pointed to before, if any.

    A tag that already points to another run is moved only with ``move``.
    """
    check_tag_name(tag)
    if run_id not in recorded_run_ids(runs_dir):
        raise RunIdError(f"run {run_id} has no record in {runs_dir}: not tagged")
    with _locked(runs_dir):
        tags = read_tags(runs_dir)
        previous = tags.get(tag)
        if previous not in (None, run_id) and not move:
            raise RunIdError(
                f"tag {tag!r} already points to run {previous}; pass --force to move it"
            )
        tags[tag] = run_id
        _write_tags(runs_dir, tags)
    return previous


def delete_tag(runs_dir: Path, tag: str) -> str:
    """Remove ``tag``; the run id it pointed to."""
    with _locked(runs_dir):
        tags = read_tags(runs_dir)
        if tag not in tags:
            raise _unknown_tag(tag, tags)
        run_id = tags.pop(tag)
        _write_tags(runs_dir, tags)
    return run_id


def _unknown_tag(tag: str, tags: dict[str, str]) -> RunIdError:
    close = difflib.get_close_matches(tag, list(tags), n=SHOWN, cutoff=0.6)
    hint = f"closest: {', '.join(close)}" if close else f"tags: {', '.join(sorted(tags)) or 'none'}"
    return RunIdError(f"no tag {tag!r} ({hint})")


def _write_tags(runs_dir: Path, tags: dict[str, str]) -> None:
    write_json(runs_dir / TAGS_FILE, Tags(tags=dict(sorted(tags.items()))).model_dump())


@contextmanager
def _locked(runs_dir: Path) -> Iterator[None]:
    """Serialise read-modify-write of ``TAGS.json`` between processes (one lock file)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(runs_dir / ".tags.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
