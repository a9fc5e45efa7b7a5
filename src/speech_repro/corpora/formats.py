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
for "to the end of the file". Transcripts are kept verbatim. Every number a manifest holds (offset,
duration, segment times) must be finite and within ``[0, MAX_MANIFEST_SECONDS]``.

Problems are :class:`~speech_repro.corpora.problems.CorpusProblem` records naming ``file:line``
and the utterance. Called with a ``problems`` list, a reader appends to it and returns the rows
it could read (a malformed line yields no row); without one it raises ``CorpusFormatError``
listing them all. ``read_corpus`` additionally checks that each audio file exists and lies inside
the corpus root, that utterance ids are unique, and that no two utterance ids, speaker ids or file
names differ only in their Unicode spelling (:mod:`speech_repro.corpora.identifiers`).

``read_corpus`` returns the index as it is stored: ``audio_path`` relative to the corpus root
(POSIX, no ``..``), with the resolved root in ``index.attrs`` (:mod:`speech_repro.corpora.paths`),
so nothing stored depends on where the corpus lies.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from speech_repro.corpora.identifiers import colliding_ids, spellings
from speech_repro.corpora.paths import CORPUS_ROOT
from speech_repro.corpora.problems import CorpusProblem, CorpusProblemsError

INDEX_COLUMNS = ["utt_id", "speaker", "audio_path", "transcript", "start", "end"]
# No recording is longer than ~116 days; beyond it a time is a typo or an overflow waiting to
# happen (1e308 s times a sample rate is inf).
MAX_MANIFEST_SECONDS = 1e7

# "<id><spaces/tabs><rest>": the rest is kept verbatim (it may be empty where allowed).
_KEY_REST = re.compile(r"^(\S+)(?:[ \t]+(.*))?$")
_ARK_OFFSET = re.compile(r":\d+$")

# Problem kinds, in the order a report usually lists them.
MALFORMED = "malformed line"
UNSUPPORTED_ENTRY = "unsupported wav.scp entry"
INCONSISTENT = "utterance missing from a table"
BAD_NUMBER = "invalid number"
MISSING_FILE = "missing audio file"
OUTSIDE_ROOT = "audio outside the corpus root"
DUPLICATE_ID = "duplicate utterance id"
COLLIDING_IDS = "identifiers spelled several ways"

_COLLISION_FIX = (
    "spell each identifier one way (one Unicode normal form, no zero-width or control characters)"
)


class CorpusFormatError(CorpusProblemsError):
    """A corpus cannot be indexed; ``problems`` names every offending row, line or file."""


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


def _malformed(where: str, reason: str, utterance: str = "") -> CorpusProblem:
    return CorpusProblem(MALFORMED, where, utterance, reason)


def _read_lines(path: Path, problems: list[CorpusProblem]) -> list[tuple[int, str]]:
    """Non-blank lines of a UTF-8 text file as ``(line number, text without the newline)``."""
    lines = []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as error:
            problems.append(_malformed(f"{path}:{lineno}", f"not valid UTF-8 ({error.reason})"))
            continue
        if line.strip():
            lines.append((lineno, line))
    return lines


def _row(
    source: str,
    utt_id: str,
    speaker: str,
    audio: Path,
    transcript: str,
    start: float = 0.0,
    end: float = math.nan,
) -> dict[str, Any]:
    """One index row; ``source`` (``file:line``) travels with it to name it in problems."""
    return {
        "source": source,
        "utt_id": utt_id,
        "speaker": speaker,
        "audio_path": str(audio.resolve()),
        "transcript": transcript,
        "start": float(start),
        "end": float(end),
    }


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    for column in ("utt_id", "speaker", "audio_path", "transcript"):
        frame[column] = frame[column].astype(object)
    frame["start"] = frame["start"].astype(float)
    frame["end"] = frame["end"].astype(float)
    if any("split" in row for row in rows):
        frame["split"] = pd.Series([row.get("split", "") for row in rows], dtype=object)
    return frame.sort_values("utt_id", kind="stable").reset_index(drop=True)


def _seconds(value: object, what: str) -> tuple[float, str]:
    """``value`` as seconds, or NaN and why it is not a finite time in range."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return math.nan, f"{what} must be a number of seconds, got {value!r}"
    try:
        seconds = float(value)
    except (ValueError, OverflowError):  # "zero", or an int too large for a float
        return math.nan, f"{what} {value!r} is not a number of seconds"
    if not math.isfinite(seconds):
        return math.nan, f"{what} {value!r} is not finite"
    if not 0 <= seconds <= MAX_MANIFEST_SECONDS:
        return math.nan, f"{what} {value!r} is outside [0, {MAX_MANIFEST_SECONDS:g}] s"
    return seconds, ""


def _read(
    indexer: Callable[[Path, list[CorpusProblem]], list[dict[str, Any]]],
    path: Path | str,
    problems: list[CorpusProblem] | None,
    what: str,
) -> pd.DataFrame:
    """The rows of ``indexer`` as a frame; its problems appended to ``problems`` or raised."""
    found: list[CorpusProblem] = []
    rows = indexer(Path(path), found)
    if problems is None:
        if found:
            raise CorpusFormatError(f"malformed {what} {path}", found)
    else:
        problems.extend(found)
    return _frame(rows)


# --------------------------------------------------------------------------- LibriSpeech


def _index_librispeech(root: Path, problems: list[CorpusProblem]) -> list[dict[str, Any]]:
    root = _existing_dir(root, "LibriSpeech root")
    transcripts = sorted(root.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise CorpusFormatError(
            f"no transcript files <speaker>/<chapter>/<speaker>-<chapter>.trans.txt under {root}"
        )
    rows = []
    for trans in transcripts:
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        expected = f"{speaker}-{chapter}.trans.txt"
        if trans.name != expected:
            problems.append(
                _malformed(str(trans), f"expected the transcript file to be named {expected}")
            )
            continue
        prefix = f"{speaker}-{chapter}-"
        for lineno, line in _read_lines(trans, problems):
            where = f"{trans}:{lineno}"
            match = _KEY_REST.match(line)
            if match is None or not match.group(2):
                problems.append(_malformed(where, f"expected 'UTTID TRANSCRIPT', got {line!r}"))
                continue
            utt_id, transcript = match.groups()
            if not utt_id.startswith(prefix) or utt_id == prefix or "/" in utt_id:
                problems.append(
                    _malformed(
                        where, f"utterance id {utt_id!r} is not of the form {prefix}<utt>", utt_id
                    )
                )
                continue
            rows.append(_row(where, utt_id, speaker, trans.parent / f"{utt_id}.flac", transcript))
    return rows


def read_librispeech(root: Path, problems: list[CorpusProblem] | None = None) -> pd.DataFrame:
    """Index a LibriSpeech-style tree: ``<root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt``.

    Each transcript line is ``<speaker>-<chapter>-<utt> TRANSCRIPT``; its audio is the ``.flac``
    of that id next to the transcript file. The speaker is the speaker directory name. Problems
    go to ``problems`` when given, else they are raised as one ``CorpusFormatError``.
    """
    return _read(_index_librispeech, root, problems, "LibriSpeech corpus")


# --------------------------------------------------------------------------- Kaldi


def _read_kaldi_table(
    path: Path, problems: list[CorpusProblem], allow_empty: bool = False
) -> dict[str, tuple[int, str]]:
    """``key -> (line number, rest of the line)`` of a Kaldi table; duplicate keys are problems."""
    table: dict[str, tuple[int, str]] = {}
    for lineno, line in _read_lines(path, problems):
        where = f"{path}:{lineno}"
        match = _KEY_REST.match(line)
        if match is None or (not allow_empty and not (match.group(2) or "").strip()):
            problems.append(_malformed(where, f"expected '<id> <value>', got {line!r}"))
            continue
        key, rest = match.group(1), match.group(2) or ""
        if key in table:
            problems.append(
                CorpusProblem(
                    DUPLICATE_ID,
                    where,
                    key,
                    f"duplicate id {key!r} (first on line {table[key][0]})",
                )
            )
            continue
        table[key] = (lineno, rest)
    return table


def _is_archive_offset(root: Path, value: str) -> bool:
    """``foo.ark:123`` is a Kaldi archive offset; an existing file named ``take:12`` is a path."""
    return bool(_ARK_OFFSET.search(value)) and not (root / value).is_file()


def _wav_scp_paths(
    root: Path, wav_scp: Path, problems: list[CorpusProblem]
) -> tuple[dict[str, tuple[int, Path]], set[str]]:
    """Plain audio paths of ``wav.scp`` by id, and the ids whose entries were rejected."""
    paths, rejected = {}, set()
    for key, (lineno, value) in _read_kaldi_table(wav_scp, problems).items():
        value = value.strip()
        where = f"{wav_scp}:{lineno}"
        if value.endswith("|") or value.startswith("|"):
            problems.append(
                CorpusProblem(
                    UNSUPPORTED_ENTRY,
                    where,
                    reason=f"recording {key!r} is a piped command ({value!r}); only plain audio "
                    "paths are supported",
                    fix="run the command once and point wav.scp at the audio files it writes",
                )
            )
            rejected.add(key)
        elif value == "-" or _is_archive_offset(root, value):
            problems.append(
                CorpusProblem(
                    UNSUPPORTED_ENTRY,
                    where,
                    reason=f"recording {key!r} is not a plain audio path ({value!r}: stdin or an "
                    "archive offset)",
                    fix="extract the archive to audio files (e.g. wav-copy ark:... ) and point "
                    "wav.scp at them",
                )
            )
            rejected.add(key)
        else:
            paths[key] = (lineno, root / value)
    return paths, rejected


def _segment_times(
    where: str, utt: str, start_text: str, end_text: str, problems: list[CorpusProblem]
) -> tuple[float, float] | None:
    """``(start, end)`` of a segment (end NaN for Kaldi's ``-1``), or None after a problem."""
    start, start_error = _seconds(start_text, "segment start")
    end, end_error = (
        (math.nan, "") if end_text.strip() == "-1" else _seconds(end_text, "segment end")
    )
    errors = [error for error in (start_error, end_error) if error]
    if not errors and not (math.isnan(end) or end > start):
        errors.append(f"segment end {end_text} is not after its start {start_text}")
    if errors:
        problems.append(CorpusProblem(BAD_NUMBER, where, utt, "; ".join(errors)))
        return None
    return start, end


def _index_kaldi(root: Path, problems: list[CorpusProblem]) -> list[dict[str, Any]]:
    root = _existing_dir(root, "Kaldi data directory")
    required = [root / name for name in ("wav.scp", "text", "utt2spk")]
    missing = [
        CorpusProblem(MISSING_FILE, str(name), reason="required file is missing")
        for name in required
        if not name.is_file()
    ]
    if missing:
        raise CorpusFormatError(f"Kaldi data directory {root} lacks required files", missing)

    def inconsistent(where: str, utt: str, reason: str) -> None:
        problems.append(CorpusProblem(INCONSISTENT, where, utt, reason))

    audio, rejected = _wav_scp_paths(root, root / "wav.scp", problems)
    text = _read_kaldi_table(root / "text", problems, allow_empty=True)
    utt2spk = _read_kaldi_table(root / "utt2spk", problems)
    for utt, (lineno, speaker) in utt2spk.items():
        where = f"{root / 'utt2spk'}:{lineno}"
        if len(speaker.split()) != 1:
            problems.append(_malformed(where, f"expected '<utt> <speaker>', got {speaker!r}", utt))
        if utt not in text:
            inconsistent(where, utt, f"utterance {utt!r} is not in text")
    for utt, (lineno, _) in text.items():
        if utt not in utt2spk:
            inconsistent(f"{root / 'text'}:{lineno}", utt, f"utterance {utt!r} is not in utt2spk")

    segments_file = root / "segments"
    spans: dict[str, tuple[str, float, float]] = {}
    sources: dict[str, str] = {}
    reported: set[str] = set()  # a bad segment line is not also "not in segments"
    if segments_file.is_file():
        for utt, (lineno, rest) in _read_kaldi_table(segments_file, problems).items():
            where = f"{segments_file}:{lineno}"
            fields = rest.split()
            if len(fields) != 3:
                problems.append(
                    _malformed(where, "expected '<utt> <recording> <start> <end>'", utt)
                )
                reported.add(utt)
                continue
            recording = fields[0]
            times = _segment_times(where, utt, fields[1], fields[2], problems)
            if recording not in audio and recording not in rejected:
                inconsistent(where, utt, f"recording {recording!r} is not in wav.scp")
            if utt not in text:
                inconsistent(where, utt, f"utterance {utt!r} is not in text")
            if times is None:
                reported.add(utt)
            else:
                spans[utt] = (recording, *times)
                sources[utt] = where
        for utt, (lineno, _) in text.items():
            if utt not in spans and utt not in reported:
                inconsistent(
                    f"{root / 'text'}:{lineno}", utt, f"utterance {utt!r} is not in segments"
                )
    else:
        for utt, (lineno, _) in text.items():
            if utt not in audio and utt not in rejected:
                inconsistent(
                    f"{root / 'text'}:{lineno}", utt, f"utterance {utt!r} is not in wav.scp"
                )
        for utt, (lineno, _) in audio.items():
            sources[utt] = f"{root / 'wav.scp'}:{lineno}"
            if utt not in text:
                inconsistent(sources[utt], utt, f"utterance {utt!r} is not in text")

    rows = []
    for utt, (_, transcript) in text.items():
        if utt not in utt2spk or len(utt2spk[utt][1].split()) != 1:
            continue
        speaker = utt2spk[utt][1].strip()
        if segments_file.is_file():
            if utt not in spans or spans[utt][0] not in audio:
                continue
            recording, start, end = spans[utt]
            rows.append(
                _row(sources[utt], utt, speaker, audio[recording][1], transcript, start, end)
            )
        elif utt in audio:
            rows.append(_row(sources[utt], utt, speaker, audio[utt][1], transcript))
    return rows


def read_kaldi_dir(root: Path, problems: list[CorpusProblem] | None = None) -> pd.DataFrame:
    """Index a Kaldi/ESPnet data directory: ``wav.scp``, ``text``, ``utt2spk``, optional ``segments``.

    Without ``segments`` the ``wav.scp`` ids are utterance ids; with it they are recording ids and
    each segment ``utt rec start end`` (end ``-1``: to the end of the recording) becomes one row.
    Relative ``wav.scp`` paths resolve against the data directory; piped commands, stdin and
    archive offsets (``foo.ark:123``; an existing file whose name ends in ``:<digits>`` is a path)
    are rejected. Every utterance must appear in ``text``, ``utt2spk`` and ``wav.scp``/``segments``.
    Problems go to ``problems`` when given, else they are raised as one ``CorpusFormatError``.
    """
    return _read(_index_kaldi, root, problems, "Kaldi data directory")


# --------------------------------------------------------------------------- NeMo JSONL


class _DuplicateKeys(ValueError):
    def __init__(self, keys: list[str]):
        self.keys = keys
        super().__init__(", ".join(map(repr, keys)))


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json`` keeps the last of repeated keys silently; a manifest line must not repeat one."""
    entry: dict[str, Any] = {}
    repeated = []
    for key, value in pairs:
        if key in entry:
            repeated.append(key)
        entry[key] = value
    if repeated:
        raise _DuplicateKeys(repeated)
    return entry


def _index_nemo_jsonl(manifest: Path, problems: list[CorpusProblem]) -> list[dict[str, Any]]:
    manifest = _existing_file(manifest, "NeMo manifest")
    base = Path(os.path.abspath(manifest.parent))
    rows = []
    for lineno, line in _read_lines(manifest, problems):
        where = f"{manifest}:{lineno}"
        try:
            entry = json.loads(line, object_pairs_hook=_refuse_duplicate_keys)
        except json.JSONDecodeError as error:
            problems.append(_malformed(where, f"invalid JSON ({error.msg}, column {error.colno})"))
            continue
        except _DuplicateKeys as error:
            problems.append(
                _malformed(
                    where,
                    f"duplicate key(s) {error} in one JSON object (JSON would keep "
                    "the last one silently)",
                )
            )
            continue
        if not isinstance(entry, dict):
            problems.append(
                _malformed(where, f"expected a JSON object, got {type(entry).__name__}")
            )
            continue
        bad = []
        audio, text = entry.get("audio_filepath"), entry.get("text")
        utt_id, lexical = "", None
        if not isinstance(audio, str) or not audio:
            bad.append("'audio_filepath' must be a non-empty string")
        else:
            lexical = Path(os.path.normpath(base / audio))  # `..` folded without following symlinks
            utt_id = os.path.splitext(os.path.relpath(lexical, base))[0]
            utt_id = utt_id.replace(os.sep, "/").replace("/", "__")
        if not isinstance(text, str):
            bad.append("'text' must be a string")
        speaker = entry.get("speaker")
        if speaker is not None and not (
            (isinstance(speaker, str) and speaker.strip())
            or (isinstance(speaker, int) and not isinstance(speaker, bool))
        ):
            bad.append(f"'speaker' must be a non-empty string or an integer, got {speaker!r}")
        times, bad_numbers = {}, []
        for key in ("offset", "duration"):
            if entry.get(key) is not None:
                times[key], error = _seconds(entry[key], repr(key))
                bad_numbers += [error] if error else []
        if not bad_numbers and sum(times.values()) > MAX_MANIFEST_SECONDS:
            bad_numbers.append(f"'offset' + 'duration' is beyond {MAX_MANIFEST_SECONDS:g} s")
        if bad:
            problems.append(_malformed(where, "; ".join(bad), utt_id))
        if bad_numbers:
            problems.append(CorpusProblem(BAD_NUMBER, where, utt_id, "; ".join(bad_numbers)))
        if bad or bad_numbers:
            continue
        assert lexical is not None
        start = times.get("offset", 0.0)
        end = start + times["duration"] if "duration" in times else math.nan
        row = _row(
            where,
            utt_id,
            str(lexical.parent.name if speaker is None else speaker),
            lexical,
            text,
            start,
            end,
        )
        if "split" in entry:
            row["split"] = str(entry["split"])
        rows.append(row)
    return rows


def read_nemo_jsonl(manifest: Path, problems: list[CorpusProblem] | None = None) -> pd.DataFrame:
    """Index a NeMo JSONL manifest (``audio_filepath``, ``text``, optional ``duration``/``offset``/``speaker``).

    Relative audio paths resolve against the manifest's folder. The utterance id is the audio path
    relative to that folder without its extension, ``/`` replaced by ``__`` (so a repeated audio
    path is a duplicate id). ``start`` is ``offset`` (default 0.0) and ``end`` is
    ``offset + duration`` when ``duration`` is given (NeMo's reading window), else NaN. The speaker
    defaults to the audio file's parent directory name. A line that repeats a key is refused.
    Problems go to ``problems`` when given, else they are raised as one ``CorpusFormatError``.
    """
    return _read(_index_nemo_jsonl, manifest, problems, "NeMo manifest")


# --------------------------------------------------------------------------- Common Voice

_CV_REQUIRED = ("path", "sentence", "client_id")


def _index_common_voice(tsv: Path, problems: list[CorpusProblem]) -> list[dict[str, Any]]:
    tsv = _existing_file(tsv, "Common Voice TSV")
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
                _malformed(where, f"expected {len(header)} tab-separated fields, got {len(fields)}")
            )
            continue
        path, sentence, client = (fields[index[column]] for column in _CV_REQUIRED)
        if not path or not client:
            problems.append(_malformed(where, "empty 'path' or 'client_id'"))
            continue
        rows.append(_row(where, Path(path).stem, client, clips / path, sentence))
    return rows


def read_common_voice(tsv: Path, problems: list[CorpusProblem] | None = None) -> pd.DataFrame:
    """Index a Common Voice TSV (``path``, ``sentence``, ``client_id``; other columns ignored).

    Audio lies under ``<tsv folder>/clips/``; the utterance id is the clip's file name without
    extension and the speaker is ``client_id``. Fields are split on tabs only (no quoting), so
    sentences containing quotes are kept verbatim. Problems go to ``problems`` when given, else
    they are raised as one ``CorpusFormatError``.
    """
    return _read(_index_common_voice, tsv, problems, "Common Voice TSV")


# --------------------------------------------------------------------------- entry point

READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "librispeech": read_librispeech,
    "kaldi": read_kaldi_dir,
    "jsonl": read_nemo_jsonl,
    "common_voice": read_common_voice,
}
_INDEXERS: dict[str, Callable[[Path, list[CorpusProblem]], list[dict[str, Any]]]] = {
    "librispeech": _index_librispeech,
    "kaldi": _index_kaldi,
    "jsonl": _index_nemo_jsonl,
    "common_voice": _index_common_voice,
}


def _root_fix(corpus_root: Path, outside: list[str]) -> str:
    """The ``root`` option that would hold every file found outside the corpus root."""
    common = os.path.commonpath([str(corpus_root), *outside])
    return (
        f"set `root: {common}` on the raw_corpus entry (CorpusDataset), a folder holding all "
        "the audio, or move the audio under the corpus folder"
    )


def _file_problems(
    rows: list[dict[str, Any]], corpus_root: Path, problems: list[CorpusProblem]
) -> list[dict[str, Any]]:
    """Rows whose audio exists inside ``corpus_root``; the others become problems."""
    kept, outside = [], []
    for row in rows:
        audio_path = Path(row["audio_path"])
        if not audio_path.is_relative_to(corpus_root):
            outside.append(row)
        elif not audio_path.is_file():
            problems.append(
                CorpusProblem(
                    MISSING_FILE,
                    row["source"],
                    row["utt_id"],
                    f"audio file {audio_path} does not exist",
                )
            )
        else:
            kept.append(row)
    if outside:
        fix = _root_fix(corpus_root, [row["audio_path"] for row in outside])
        problems.extend(
            CorpusProblem(
                OUTSIDE_ROOT,
                row["source"],
                row["utt_id"],
                f"{row['audio_path']} lies outside the corpus root {corpus_root}"
                + ("" if Path(row["audio_path"]).is_file() else " (and does not exist)"),
                fix,
            )
            for row in outside
        )
    return kept


def _unique_ids(rows: list[dict[str, Any]], problems: list[CorpusProblem]) -> list[dict[str, Any]]:
    """The first row of every utterance id; each repeated id is one problem naming its files."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["utt_id"], []).append(row)
    for utt_id in sorted(by_id):
        group = by_id[utt_id]
        if len(group) > 1:
            problems.append(
                CorpusProblem(
                    DUPLICATE_ID,
                    group[1]["source"],
                    utt_id,
                    f"utterance id {utt_id!r} occurs {len(group)} times: "
                    + ", ".join(row["audio_path"] for row in group)
                    + f" (lines {', '.join(row['source'] for row in group)})",
                )
            )
    return [group[0] for group in by_id.values()]


def _identifier_collisions(
    rows: list[dict[str, Any]], corpus_root: Path, problems: list[CorpusProblem]
) -> None:
    """Utterance ids, speaker ids and file names that are one identifier spelled several ways."""
    for column, what in (
        ("utt_id", "utterance ids"),
        ("speaker", "speaker ids"),
        ("audio_path", "file names"),
    ):
        first_source: dict[str, str] = {}
        for row in rows:
            first_source.setdefault(row[column], row["source"])
        for spelled in colliding_ids(first_source).values():
            shown = spelled
            if column == "audio_path":
                shown = [Path(name).relative_to(corpus_root).as_posix() for name in spelled]
            problems.append(
                CorpusProblem(
                    COLLIDING_IDS,
                    first_source[spelled[1]],
                    "",
                    f"{what} {spellings(shown)} are one identifier after Unicode normalisation "
                    f"(first at {', '.join(first_source[s] for s in spelled)})",
                    _COLLISION_FIX,
                )
            )


def read_corpus(
    format: str,
    path: str | Path,
    root: str | Path | None = None,
    problems: list[CorpusProblem] | None = None,
) -> pd.DataFrame:
    """Index the corpus at ``path`` in ``format`` (a ``READERS`` key) and validate it.

    Every audio path must, once resolved (``..`` and symlinks followed), lie inside ``root``
    (default: ``path`` if it is a directory, else its parent) and exist; utterance ids must be
    unique; no two utterance ids, speaker ids or file names may differ only in their Unicode
    spelling. With ``problems`` every problem is appended to it and the index holds the rows that
    can be read (the first of a repeated id; none of a missing or outside file); without it all
    problems are raised as one ``CorpusFormatError``. A corpus that cannot be indexed at all (no
    such folder, a required file missing) always raises.

    The returned ``audio_path`` is the resolved file's POSIX path relative to the resolved root,
    and ``index.attrs[CORPUS_ROOT]`` is that root: read audio with
    :func:`speech_repro.corpora.paths.audio_file`.
    """
    indexer = _INDEXERS.get(format)
    if indexer is None:
        raise CorpusFormatError(
            f"unknown corpus format {format!r}; known formats: {', '.join(sorted(READERS))}"
        )
    path = Path(path)
    if not path.exists():
        raise CorpusFormatError(f"corpus path {path} does not exist")
    corpus_root = Path(root if root is not None else (path if path.is_dir() else path.parent))
    corpus_root = corpus_root.resolve()
    found: list[CorpusProblem] = []
    rows = indexer(path, found)
    rows = _unique_ids(_file_problems(rows, corpus_root, found), found)
    _identifier_collisions(rows, corpus_root, found)
    if problems is None:
        if found:
            raise CorpusFormatError(f"invalid {format} corpus {path} (root {corpus_root})", found)
    else:
        problems.extend(found)
    index = _frame(rows)
    # Stored relative to the root (checked above to hold every file): the same table wherever the
    # corpus lies. The resolved form keeps one name per file, however it was reached.
    index["audio_path"] = pd.Series(
        [Path(audio).relative_to(corpus_root).as_posix() for audio in index["audio_path"]],
        index=index.index,
        dtype=object,
    )
    index.attrs[CORPUS_ROOT] = str(corpus_root)
    return index
