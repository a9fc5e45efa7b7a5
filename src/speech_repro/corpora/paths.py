"""Where a corpus's audio lies: stored paths are relative to the corpus root, never absolute.

A corpus index (``raw_corpus``) and every table derived from it store ``audio_path`` as a POSIX
path relative to the corpus root, so what a run stores and digests is the same wherever the corpus
or the project lies (a corpus symlinked into ``data/01_raw/``, copied or moved elsewhere, or
replayed by ``kedro repro verify`` in another project folder). The root itself is where the data is read *from*, not part of the
data: the corpus datasets keep it in the index's ``DataFrame.attrs`` (``CORPUS_ROOT``), which
content digests and stored tables do not include, and readers of audio resolve each stored path
against it with :func:`audio_file`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import pandas as pd

CORPUS_ROOT = "corpus_root"  # DataFrame.attrs key: the resolved root audio paths are relative to


class AudioPathError(ValueError):
    """A stored audio path is not a plain path inside its corpus root."""


def is_stored_path(stored: object) -> bool:
    """Whether ``stored`` is a plain root-relative POSIX path, as a corpus index stores it.

    Not absolute, no ``..``, ``.`` or empty components, no backslashes (which another OS would
    read as separators).
    """
    return (
        isinstance(stored, str)
        and bool(stored)
        and not stored.startswith("/")
        and "\\" not in stored
        and all(part not in ("", ".", "..") for part in stored.split("/"))
    )


def audio_file(root: str | Path, stored: str) -> Path:
    """The file a stored (root-relative) audio path names under ``root``.

    Refuses what could leave the root lexically: absolute paths, ``..``, ``.`` or empty
    components and backslashes. Symlinks are not followed here: every stored path comes from a
    corpus index, whose dataset checked on loading that it resolves inside the root
    (``formats.read_corpus``), and checking again per file would cost a ``stat`` per component.
    """
    # Stored paths come from a corpus index; anything else is a hand-edited or foreign table.
    if not is_stored_path(stored):
        raise AudioPathError(
            f"stored audio path {stored!r} is not a plain path relative to the corpus root"
        )
    return Path(root).joinpath(*PurePosixPath(stored).parts)


def corpus_root(index: pd.DataFrame) -> Path:
    """The corpus root a corpus dataset attached to ``index`` (see the module docstring)."""
    root = index.attrs.get(CORPUS_ROOT)
    if root is None:
        raise AudioPathError(
            "the corpus index carries no corpus root (DataFrame.attrs['corpus_root']): load it "
            "through a corpus dataset (raw_corpus), which knows where its audio lies"
        )
    return Path(root)


def audio_files(root: str | Path, stored: Iterable[str]) -> list[str]:
    """Absolute paths (as strings) of stored audio paths under ``root``, for reading the audio."""
    return [os.fspath(audio_file(root, path)) for path in stored]
