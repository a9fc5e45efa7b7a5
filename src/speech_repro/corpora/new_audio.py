"""New audio to transcribe: audio files, a folder of them, or a manifest in a corpus format.

:func:`index_audio` turns one path into an index table (``utt_id``, ``audio_path``, ``start``,
``end``, ``transcript``) with ``audio_path`` relative to a root attached as ``attrs`` (as the
corpus readers do, :mod:`speech_repro.corpora.paths`). What a path is follows from the path:

- a manifest in one of the corpus formats (:data:`speech_repro.corpora.formats.READERS`): a
  ``.jsonl`` NeMo manifest, a ``.tsv`` Common Voice table, a folder with ``wav.scp`` (Kaldi) or
  with ``<speaker>/<chapter>/*.trans.txt`` files (LibriSpeech); ``format`` names it explicitly;
- an audio file (one of :data:`AUDIO_SUFFIXES`): its id is the file name without suffix;
- any other folder: every audio file under it, its id the relative path without suffix.

Anything else, and audio whose header cannot be read, is refused with one
:class:`AudioInputError` naming every such path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from speech_repro.corpora.formats import READERS, CorpusFormatError, read_corpus
from speech_repro.corpora.paths import CORPUS_ROOT, audio_files, corpus_root

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf",
                  ".w64", ".rf64")  # fmt: skip
"""File name endings read as audio (libsndfile decodes them)."""
MANIFEST_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".tsv": "common_voice"}
COLUMNS = ["utt_id", "audio_path", "start", "end", "transcript"]


class AudioInputError(ValueError):
    """A path to transcribe is not audio, not a supported manifest, or not readable."""


def detect_format(path: Path) -> str | None:
    """The corpus format of a manifest at ``path``; None for an audio file or a folder of audio."""
    if path.is_dir():
        if (path / "wav.scp").is_file():
            return "kaldi"
        if next(path.glob("*/*/*.trans.txt"), None) is not None:
            return "librispeech"
        return None
    return MANIFEST_SUFFIXES.get(path.suffix.lower())


def _unsupported(path: Path) -> AudioInputError:
    return AudioInputError(
        f"{path}: not audio ({', '.join(AUDIO_SUFFIXES)}), a folder of audio, or a manifest "
        f"(.jsonl NeMo, .tsv Common Voice, a Kaldi or LibriSpeech folder; --format "
        f"{'|'.join(sorted(READERS))})"
    )


def index_audio(path: str | Path, format: str | None = None) -> pd.DataFrame:
    """The utterances at ``path`` (see the module docstring), sorted by id.

    Raises :class:`AudioInputError` for a missing or unsupported path, a folder without audio,
    repeated ids, audio libsndfile cannot read, or an invalid manifest (every problem at once).
    """
    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"{path}: no such file or folder")
    if format is not None and format not in READERS:
        raise AudioInputError(
            f"unknown manifest format {format!r}; known: {', '.join(sorted(READERS))}"
        )
    format = format or detect_format(path)
    if format is not None:
        try:
            index = read_corpus(format, path)
        except CorpusFormatError as error:
            raise AudioInputError(str(error)) from None
        index = index[COLUMNS].copy() if len(index) else pd.DataFrame(columns=COLUMNS)
        index.attrs[CORPUS_ROOT] = str(Path(path if path.is_dir() else path.parent).resolve())
    elif path.is_dir():
        root = path.resolve()
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise AudioInputError(
                f"{path}: a folder without audio files ({', '.join(AUDIO_SUFFIXES)})"
            )
        index = _plain(root, [f.relative_to(root).as_posix() for f in files])
    elif path.suffix.lower() in AUDIO_SUFFIXES:
        index = _plain(path.resolve().parent, [path.resolve().name])
    else:
        raise _unsupported(path)
    if index.empty:
        raise AudioInputError(f"{path}: the manifest lists no utterance")
    _refuse_repeated(index["utt_id"], str(path))
    _refuse_unreadable(audio_files(corpus_root(index), index["audio_path"]))
    return index.sort_values("utt_id").reset_index(drop=True)


def _plain(root: Path, stored: list[str]) -> pd.DataFrame:
    index = pd.DataFrame(
        {
            "utt_id": [str(PurePosixPath(s).with_suffix("")) for s in stored],
            "audio_path": stored,
            "start": 0.0,
            "end": math.nan,
            "transcript": "",
        },
        columns=COLUMNS,
    )
    index.attrs[CORPUS_ROOT] = str(root)
    return index


def _refuse_repeated(ids: pd.Series, where: str) -> None:
    repeated = sorted(ids[ids.duplicated()].unique())
    if repeated:
        raise AudioInputError(
            f"{where}: utterance id(s) {', '.join(repeated)} name several files (ids are file "
            "names without their suffix): rename them or transcribe them apart"
        )


def _refuse_unreadable(files: Sequence[str]) -> None:
    import soundfile as sf

    problems = []
    for file in dict.fromkeys(files):  # a recording with several segments is read once
        try:
            sf.info(file)
        except Exception as error:  # libsndfile raises several types; its message says why
            problems.append(f"{file}: {str(error).strip()}")
    if problems:
        raise AudioInputError(
            f"{len(problems)} audio file(s) cannot be read:\n  " + "\n  ".join(problems)
        )


def index_many(paths: Sequence[str | Path], format: str | None = None) -> pd.DataFrame:
    """:func:`index_audio` of every path, one table with absolute ``audio_path`` strings, in the
    order given; ids must be unique across the paths."""
    if not paths:
        raise AudioInputError("no audio given")
    frames = []
    for path in paths:
        index = index_audio(path, format)
        index["audio_path"] = audio_files(corpus_root(index), index["audio_path"])
        frames.append(index)
    table = pd.concat(frames, ignore_index=True)
    _refuse_repeated(table["utt_id"], "the audio given")
    return table


class NewAudioDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """Audio to transcribe (``index_audio``): audio files, a folder of them, or a manifest.

    ``load()`` returns ``utt_id``, ``audio_path`` (relative to the root it attaches as
    ``attrs["corpus_root"]``), ``start``, ``end``, ``transcript`` and the audio's BLAKE3
    ``digest``, so the run record names the audio it transcribed, not only its paths. Never
    written.

    Example::

        new_audio:
          type: speech_repro.corpora.new_audio.NewAudioDataset
          path: data/01_raw/new_audio      # or a manifest: .jsonl, .tsv, a Kaldi folder
          format: null                     # or librispeech, kaldi, jsonl, common_voice
    """

    def __init__(self, *, path: str, format: str | None = None, metadata: dict | None = None):
        self._path, self._format = path, format
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        from kedro_repro.digest_cache import DigestCache

        index = index_audio(self._path, self._format)
        with DigestCache(None) as cache:
            index["digest"] = cache.digests(audio_files(corpus_root(index), index["audio_path"]))
        return index

    def save(self, data: pd.DataFrame) -> None:
        raise DatasetError(f"new_audio is the audio at {self._path}, which is read, never written")

    def _exists(self) -> bool:
        return Path(self._path).exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path, "format": self._format}
