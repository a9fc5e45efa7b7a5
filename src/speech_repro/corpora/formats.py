"""Adapters that turn a speech corpus on disk into one index table (no audio is decoded).

Supported layouts (``READERS``):

- ``librispeech``: ``<root>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` plus
  ``<speaker>-<chapter>.trans.txt`` with ``UTTID TRANSCRIPT`` lines.
- ``kaldi``: a Kaldi/ESPnet data directory with ``wav.scp`` (plain paths only), ``text``,
  ``utt2spk`` and optionally ``segments`` (``utt rec start end``; an end of ``-1`` means "to the
  end of the recording", as in Kaldi), in which case ``wav.scp`` maps recording ids.
- ``jsonl``: a NeMo manifest, one JSON object per line with ``audio_filepath``, ``text`` and
  optionally ``duration``, ``offset`` and ``speaker``.
- ``common_voice``: a Common Voice TSV (``path``, ``sentence``, ``client_id``, others ignored) with
  the audio under ``<tsv folder>/clips/``.

Every reader returns ``INDEX_COLUMNS`` sorted by ``utt_id``: ``audio_path`` is an absolute,
resolved path string, ``start`` is in seconds (0.0 without a segment) and ``end`` in seconds or NaN
for "to the end of the file". Transcripts are kept verbatim. Readers raise ``CorpusFormatError``
naming every malformed line (``file:line``); ``read_corpus`` additionally checks that each audio
file exists and lies inside the corpus root and that utterance ids are unique, reporting all
violations in one error.

``read_corpus`` returns the index as it is stored: ``audio_path`` relative to the corpus root
(POSIX, no ``..``), with the resolved root in ``index.attrs`` (:mod:`speech_repro.corpora.paths`),
so nothing stored depends on where the corpus lies.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from speech_repro.corpora.paths import CORPUS_ROOT

INDEX_COLUMNS = ["utt_id", "speaker", "audio_path", "transcript", "start", "end"]

# "<id><spaces/tabs><rest>": the rest is kept verbatim (it may be empty where allowed).
_KEY_REST = re.compile(r"^(\S+)(?:[ \t]+(.*))?$")
_ARK_OFFSET = re.compile(r":\d+$")


class CorpusFormatError(ValueError):
    """A corpus cannot be indexed; the message names every offending row, line or file."""

    def __init__(self, summary: str, problems: Sequence[str] = ()):
        self.problems = list(problems)
        message = summary
        if self.problems:
            message += f" ({len(self.problems)} problem(s)):\n" + "\n".join(
                f"  - {problem}" for problem in self.problems
            )
        super().__init__(message)


# --------------------------------------------------------------------------- helpers


def _existing_dir(path: Path | str, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise CorpusFormatError(f"{what} {path} is not a directory")
    return path


def _existing_file(path: Path | str, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CorpusFormatError(f"{what} {path} is not a file")
    return path


def _read_lines(path: Path, problems: list[str]) -> list[tuple[int, str]]:
    """Non-blank lines of a UTF-8 text file as ``(line number, text without the newline)``."""
    lines = []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as error:
            problems.append(f"{path}:{lineno}: not valid UTF-8 ({error.reason})")
            continue
        if line.strip():
            lines.append((lineno, line))
    return lines


def _row(
    utt_id: str,
    speaker: str,
    audio: Path,
    transcript: str,
    start: float = 0.0,
    end: float = math.nan,
) -> dict:
    return {
        "utt_id": utt_id,
        "speaker": speaker,
        "audio_path": str(audio.resolve()),
        "transcript": transcript,
        "start": float(start),
        "end": float(end),
    }


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    for column in ("utt_id", "speaker", "audio_path", "transcript"):
        frame[column] = frame[column].astype(object)
    frame["start"] = frame["start"].astype(float)
    frame["end"] = frame["end"].astype(float)
    return frame.sort_values("utt_id", kind="stable").reset_index(drop=True)


def _raise_if(problems: list[str], summary: str) -> None:
    if problems:
        raise CorpusFormatError(summary, problems)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------- LibriSpeech


def read_librispeech(root: Path) -> pd.DataFrame:
    """Index a LibriSpeech-style tree: ``<root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt``.

    Each transcript line is ``<speaker>-<chapter>-<utt> TRANSCRIPT``; its audio is the ``.flac``
    of that id next to the transcript file. The speaker is the speaker directory name.
    """
    root = _existing_dir(root, "LibriSpeech root")
    transcripts = sorted(root.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise CorpusFormatError(
            f"no transcript files <speaker>/<chapter>/<speaker>-<chapter>.trans.txt under {root}"
        )
    problems: list[str] = []
    rows = []
    for trans in transcripts:
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        expected = f"{speaker}-{chapter}.trans.txt"
        if trans.name != expected:
            problems.append(f"{trans}: expected the transcript file to be named {expected}")
            continue
        prefix = f"{speaker}-{chapter}-"
        for lineno, line in _read_lines(trans, problems):
            match = _KEY_REST.match(line)
            if match is None or not match.group(2):
                problems.append(f"{trans}:{lineno}: expected 'UTTID TRANSCRIPT', got {line!r}")
                continue
            utt_id, transcript = match.groups()
            if not utt_id.startswith(prefix) or utt_id == prefix or "/" in utt_id:
                problems.append(
                    f"{trans}:{lineno}: utterance id {utt_id!r} is not of the form {prefix}<utt>"
                )
                continue
            rows.append(_row(utt_id, speaker, trans.parent / f"{utt_id}.flac", transcript))
    _raise_if(problems, f"malformed LibriSpeech corpus {root}")
    return _frame(rows)


# --------------------------------------------------------------------------- Kaldi


def _read_kaldi_table(
    path: Path, problems: list[str], allow_empty: bool = False
) -> dict[str, tuple[int, str]]:
    """``key -> (line number, rest of the line)`` of a Kaldi table; duplicate keys are problems."""
    table: dict[str, tuple[int, str]] = {}
    for lineno, line in _read_lines(path, problems):
        match = _KEY_REST.match(line)
        if match is None or (not allow_empty and not (match.group(2) or "").strip()):
            problems.append(f"{path}:{lineno}: expected '<id> <value>', got {line!r}")
            continue
        key, rest = match.group(1), match.group(2) or ""
        if key in table:
            problems.append(
                f"{path}:{lineno}: duplicate id {key!r} (first on line {table[key][0]})"
            )
            continue
        table[key] = (lineno, rest)
    return table


def _wav_scp_paths(
    root: Path, wav_scp: Path, problems: list[str]
) -> tuple[dict[str, tuple[int, Path]], set[str]]:
    """Plain audio paths of ``wav.scp`` by id, and the ids whose entries were rejected."""
    paths, rejected = {}, set()
    for key, (lineno, value) in _read_kaldi_table(wav_scp, problems).items():
        value = value.strip()
        where = f"{wav_scp}:{lineno}: recording {key!r}"
        if value.endswith("|") or value.startswith("|"):
            problems.append(
                f"{where} is a piped command ({value!r}); only plain audio paths are supported, "
                "so run the command once and point wav.scp at the audio files it writes"
            )
            rejected.add(key)
        elif value == "-" or _ARK_OFFSET.search(value):
            problems.append(
                f"{where} is not a plain audio path ({value!r}: stdin or an archive offset)"
            )
            rejected.add(key)
        else:
            paths[key] = (lineno, root / value)
    return paths, rejected


def read_kaldi_dir(root: Path) -> pd.DataFrame:
    """Index a Kaldi/ESPnet data directory: ``wav.scp``, ``text``, ``utt2spk``, optional ``segments``.

    Without ``segments`` the ``wav.scp`` ids are utterance ids; with it they are recording ids and
    each segment ``utt rec start end`` (end ``-1``: to the end of the recording) becomes one row.
    Relative ``wav.scp`` paths resolve against the data directory; piped commands are rejected.
    Every utterance must appear in ``text``, ``utt2spk`` and ``wav.scp``/``segments``.
    """
    root = _existing_dir(root, "Kaldi data directory")
    required = [root / name for name in ("wav.scp", "text", "utt2spk")]
    missing = [str(name) for name in required if not name.is_file()]
    _raise_if(missing, f"Kaldi data directory {root} lacks required files")

    problems: list[str] = []
    audio, rejected = _wav_scp_paths(root, root / "wav.scp", problems)
    text = _read_kaldi_table(root / "text", problems, allow_empty=True)
    utt2spk = _read_kaldi_table(root / "utt2spk", problems)
    for utt, (lineno, speaker) in utt2spk.items():
        if len(speaker.split()) != 1:
            problems.append(
                f"{root / 'utt2spk'}:{lineno}: expected '<utt> <speaker>', got {utt} {speaker!r}"
            )
        if utt not in text:
            problems.append(f"{root / 'utt2spk'}:{lineno}: utterance {utt!r} is not in text")
    for utt, (lineno, _) in text.items():
        if utt not in utt2spk:
            problems.append(f"{root / 'text'}:{lineno}: utterance {utt!r} is not in utt2spk")

    segments_file = root / "segments"
    spans: dict[str, tuple[str, float, float]] = {}
    if segments_file.is_file():
        for utt, (lineno, rest) in _read_kaldi_table(segments_file, problems).items():
            where = f"{segments_file}:{lineno}"
            fields = rest.split()
            if len(fields) != 3:
                problems.append(f"{where}: expected '<utt> <recording> <start> <end>'")
                continue
            recording = fields[0]
            try:
                start, end = float(fields[1]), float(fields[2])
            except ValueError:
                problems.append(f"{where}: start/end {fields[1]!r} {fields[2]!r} are not numbers")
                continue
            if end == -1:
                end = math.nan
            if not (math.isfinite(start) and start >= 0) or not (math.isnan(end) or end > start):
                problems.append(f"{where}: invalid segment times {fields[1]} {fields[2]}")
                continue
            if recording not in audio and recording not in rejected:
                problems.append(f"{where}: recording {recording!r} is not in wav.scp")
            if utt not in text:
                problems.append(f"{where}: utterance {utt!r} is not in text")
            spans[utt] = (recording, start, end)
        for utt, (lineno, _) in text.items():
            if utt not in spans:
                problems.append(f"{root / 'text'}:{lineno}: utterance {utt!r} is not in segments")
    else:
        for utt, (lineno, _) in text.items():
            if utt not in audio and utt not in rejected:
                problems.append(f"{root / 'text'}:{lineno}: utterance {utt!r} is not in wav.scp")
        for utt, (lineno, _) in audio.items():
            if utt not in text:
                problems.append(f"{root / 'wav.scp'}:{lineno}: utterance {utt!r} is not in text")
    _raise_if(problems, f"malformed Kaldi data directory {root}")

    rows = []
    for utt, (_, transcript) in text.items():
        speaker = utt2spk[utt][1].strip()
        if spans:
            recording, start, end = spans[utt]
            rows.append(_row(utt, speaker, audio[recording][1], transcript, start, end))
        else:
            rows.append(_row(utt, speaker, audio[utt][1], transcript))
    return _frame(rows)


# --------------------------------------------------------------------------- NeMo JSONL


def read_nemo_jsonl(manifest: Path) -> pd.DataFrame:
    """Index a NeMo JSONL manifest (``audio_filepath``, ``text``, optional ``duration``/``offset``/``speaker``).

    Relative audio paths resolve against the manifest's folder. The utterance id is the audio path
    relative to that folder without its extension, ``/`` replaced by ``__`` (so a repeated audio
    path is a duplicate id). ``start`` is ``offset`` (default 0.0) and ``end`` is
    ``offset + duration`` when ``duration`` is given (NeMo's reading window), else NaN. The speaker
    defaults to the audio file's parent directory name.
    """
    manifest = _existing_file(manifest, "NeMo manifest")
    base = Path(os.path.abspath(manifest.parent))
    problems: list[str] = []
    rows = []
    splits: dict[str, str] = {}
    for lineno, line in _read_lines(manifest, problems):
        where = f"{manifest}:{lineno}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"{where}: invalid JSON ({error.msg}, column {error.colno})")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a JSON object, got {type(entry).__name__}")
            continue
        bad = []
        audio, text = entry.get("audio_filepath"), entry.get("text")
        if not isinstance(audio, str) or not audio:
            bad.append("'audio_filepath' must be a non-empty string")
        if not isinstance(text, str):
            bad.append("'text' must be a string")
        for key in ("duration", "offset"):
            value = entry.get(key)
            if value is not None and not (_is_number(value) and value >= 0):
                bad.append(f"{key!r} must be a non-negative number, got {value!r}")
        speaker = entry.get("speaker")
        if speaker is not None and not (
            (isinstance(speaker, str) and speaker.strip())
            or (isinstance(speaker, int) and not isinstance(speaker, bool))
        ):
            bad.append(f"'speaker' must be a non-empty string or an integer, got {speaker!r}")
        if bad:
            problems.append(f"{where}: " + "; ".join(bad))
            continue
        lexical = Path(os.path.normpath(base / audio))  # `..` folded without following symlinks
        utt_id = os.path.splitext(os.path.relpath(lexical, base))[0]
        utt_id = utt_id.replace(os.sep, "/").replace("/", "__")
        if speaker is None:
            speaker = lexical.parent.name
        start = float(entry.get("offset") or 0.0)
        duration = entry.get("duration")
        end = math.nan if duration is None else start + float(duration)
        rows.append(_row(utt_id, str(speaker), lexical, text, start, end))
        if "split" in entry:
            splits[utt_id] = str(entry["split"])
    _raise_if(problems, f"malformed NeMo manifest {manifest}")
    frame = _frame(rows)
    if splits:
        frame["split"] = frame["utt_id"].map(splits).fillna("").astype(object)
    return frame


# --------------------------------------------------------------------------- Common Voice

_CV_REQUIRED = ("path", "sentence", "client_id")


def read_common_voice(tsv: Path) -> pd.DataFrame:
    """Index a Common Voice TSV (``path``, ``sentence``, ``client_id``; other columns ignored).

    Audio lies under ``<tsv folder>/clips/``; the utterance id is the clip's file name without
    extension and the speaker is ``client_id``. Fields are split on tabs only (no quoting), so
    sentences containing quotes are kept verbatim.
    """
    tsv = _existing_file(tsv, "Common Voice TSV")
    problems: list[str] = []
    lines = _read_lines(tsv, problems)
    if not lines:
        raise CorpusFormatError(f"Common Voice TSV {tsv} is empty", problems)
    header_lineno, header_line = lines[0]
    header = header_line.split("\t")
    missing = [column for column in _CV_REQUIRED if column not in header]
    if missing:
        raise CorpusFormatError(
            f"Common Voice TSV {tsv}:{header_lineno} lacks column(s) {', '.join(missing)}",
            problems,
        )
    index = {column: header.index(column) for column in _CV_REQUIRED}
    clips = tsv.parent / "clips"
    rows = []
    for lineno, line in lines[1:]:
        fields = line.split("\t")
        where = f"{tsv}:{lineno}"
        if len(fields) != len(header):
            problems.append(
                f"{where}: expected {len(header)} tab-separated fields, got {len(fields)}"
            )
            continue
        path, sentence, client = (fields[index[column]] for column in _CV_REQUIRED)
        if not path or not client:
            problems.append(f"{where}: empty 'path' or 'client_id'")
            continue
        rows.append(_row(Path(path).stem, client, clips / path, sentence))
    _raise_if(problems, f"malformed Common Voice TSV {tsv}")
    return _frame(rows)


# --------------------------------------------------------------------------- entry point

READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "librispeech": read_librispeech,
    "kaldi": read_kaldi_dir,
    "jsonl": read_nemo_jsonl,
    "common_voice": read_common_voice,
}


def read_corpus(format: str, path: str | Path, root: str | Path | None = None) -> pd.DataFrame:
    """Index the corpus at ``path`` in ``format`` (a ``READERS`` key) and validate it.

    Every audio path must, once resolved (``..`` and symlinks followed), lie inside ``root``
    (default: ``path`` if it is a directory, else its parent) and exist; utterance ids must be
    unique. All violations are collected and raised as one ``CorpusFormatError``.

    The returned ``audio_path`` is the resolved file's POSIX path relative to the resolved root,
    and ``index.attrs[CORPUS_ROOT]`` is that root: read audio with
    :func:`speech_repro.corpora.paths.audio_file`.
    """
    reader = READERS.get(format)
    if reader is None:
        raise CorpusFormatError(
            f"unknown corpus format {format!r}; known formats: {', '.join(sorted(READERS))}"
        )
    path = Path(path)
    if not path.exists():
        raise CorpusFormatError(f"corpus path {path} does not exist")
    corpus_root = Path(root if root is not None else (path if path.is_dir() else path.parent))
    corpus_root = corpus_root.resolve()
    index = reader(path)

    problems = []
    for utt_id, audio in zip(index["utt_id"], index["audio_path"], strict=True):
        audio_path = Path(audio)
        if not audio_path.is_relative_to(corpus_root):
            problems.append(f"utterance {utt_id!r}: {audio} lies outside the corpus root")
        if not audio_path.is_file():
            problems.append(f"utterance {utt_id!r}: audio file {audio} does not exist")
    duplicated = index[index["utt_id"].duplicated(keep=False)]
    for utt_id, group in duplicated.groupby("utt_id", sort=True):
        problems.append(
            f"utterance id {utt_id!r} occurs {len(group)} times: {', '.join(group['audio_path'])}"
        )
    _raise_if(problems, f"invalid {format} corpus {path} (root {corpus_root})")
    # Stored relative to the root (checked above to hold every file): the same table wherever the
    # corpus lies. The resolved form keeps one name per file, however it was reached.
    index["audio_path"] = pd.Series(
        [Path(audio).relative_to(corpus_root).as_posix() for audio in index["audio_path"]],
        index=index.index,
        dtype=object,
    )
    index.attrs[CORPUS_ROOT] = str(corpus_root)
    return index
