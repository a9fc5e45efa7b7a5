"""Pandera schemas of the tables that flow through the pipelines.

Static rules live in the ``DataFrameModel`` classes and are checked by the catalog on every save
and load. Rules that depend on configuration (audio policy, vocabulary) are added by
:func:`validate_manifest`, which reports every failing utterance at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series

from speech_repro.asr.audio import AudioPolicy
from speech_repro.asr.text import CharVocabulary, TextNormalization
from speech_repro.corpora.identifiers import normalize_id
from speech_repro.corpora.paths import is_stored_path
from speech_repro.corpora.problems import CorpusProblem, CorpusProblemsError

DIGEST = r"^blake3:[0-9a-f]{64}$"


class Manifest(pa.DataFrameModel):
    """One row per utterance: where its audio is, what it contains, and its content digest."""

    utt_id: Series[str] = pa.Field(unique=True)
    speaker: Series[str] = pa.Field(str_length={"min_value": 1})
    audio_path: Series[str]  # relative to the corpus root: the same wherever the corpus lies
    start: Series[float] = pa.Field(ge=0)
    end: Series[float] = pa.Field(nullable=True)  # NaN: to the end of the file
    sample_rate: Series[int] = pa.Field(gt=0)
    channels: Series[int] = pa.Field(ge=1)
    num_samples: Series[int] = pa.Field(gt=0)
    duration: Series[float] = pa.Field(gt=0)
    transcript: Series[str]
    digest: Series[str] = pa.Field(str_matches=DIGEST)
    audio_error: Series[str] = pa.Field(str_length={"max_value": 0})  # empty: readable

    @pa.dataframe_check
    def duration_matches_samples(cls, df):
        return (df["duration"] - df["num_samples"] / df["sample_rate"]).abs() < 1e-6

    @pa.check("audio_path")
    def audio_path_is_relative_to_the_corpus_root(cls, paths):
        """Never absolute and never ``..``: a stored path cannot point outside the corpus root."""
        return paths.map(is_stored_path).astype(bool)


class SplitLock(pa.DataFrameModel):
    """The locked assignment of every utterance to a split, with the digest of its audio."""

    utt_id: Series[str] = pa.Field(unique=True)
    speaker: Series[str]
    split: Series[str] = pa.Field(isin=["train", "dev", "test"])
    digest: Series[str] = pa.Field(str_matches=DIGEST)

    @pa.dataframe_check
    def speakers_are_disjoint(cls, df):
        """No speaker in two splits, comparing ids after Unicode normalisation (``normalize_id``):
        a fullwidth spelling of ``en-us_m1`` and ``en-us_m1`` are one voice."""
        return df.groupby(normalized_ids(df["speaker"]))["split"].transform("nunique") == 1

    @pa.dataframe_check
    def audio_is_disjoint(cls, df):
        """No identical audio (same digest) in two splits."""
        return df.groupby("digest")["split"].transform("nunique") == 1


class FeatureStats(pa.DataFrameModel):
    """Per-utterance log-mel statistics: finite, frame count consistent with duration, sane range."""

    utt_id: Series[str] = pa.Field(unique=True)
    num_frames: Series[int] = pa.Field(gt=0)
    expected_frames: Series[int] = pa.Field(gt=0)
    non_finite: Series[int] = pa.Field(eq=0)
    mean: Series[float] = pa.Field(ge=-20.0, le=10.0)
    std: Series[float] = pa.Field(gt=0.1, le=20.0)
    min: Series[float]
    max: Series[float]

    @pa.dataframe_check
    def frames_match_duration(cls, df):
        return df["num_frames"] == df["expected_frames"]


class Hypotheses(pa.DataFrameModel):
    """Normalised references and hypotheses, one row per evaluated utterance."""

    utt_id: Series[str] = pa.Field(unique=True)
    split: Series[str]
    speaker: Series[str]
    reference: Series[str] = pa.Field(str_length={"min_value": 1})
    hypothesis: Series[str] = pa.Field(nullable=False)
    hypothesis_constrained: Series[str] | None = pa.Field(nullable=False)
    """Lexicon-constrained ``hypothesis`` (``evaluation.lexicon``); absent without a lexicon."""


class CorpusValidationError(CorpusProblemsError):
    """The corpus breaks the manifest's rules; ``problems`` holds every one, grouped in the message."""


# Kinds of problems found in the audio and transcripts, with the option that fixes each.
UNREADABLE = "unreadable audio"
SAMPLE_RATE = "sample rate"
CHANNELS = "channels"
DURATION = "duration"
EMPTY_TRANSCRIPT = "empty transcript"
OUT_OF_VOCABULARY = "characters outside the vocabulary"
SCHEMA = "manifest schema"


def _audio_problems(
    manifest: pd.DataFrame,
    policy: AudioPolicy,
    vocabulary: CharVocabulary,
    normalize: TextNormalization,
    where: pd.Series,
) -> list[CorpusProblem]:
    """The configured rules (audio policy, duration bounds, vocabulary), one record per breach."""
    problems = []
    bounds = f"[{policy.min_seconds}, {policy.max_seconds}] s"
    for index, row in zip(manifest.index, manifest.itertuples(index=False), strict=True):

        def problem(kind: str, reason: str, fix: str = "", row=row, index=index) -> CorpusProblem:
            return CorpusProblem(kind, str(where[index]), row.utt_id, reason, fix)

        if row.audio_error:
            problems.append(problem(UNREADABLE, row.audio_error))
        else:
            if row.sample_rate != policy.sample_rate and not policy.resample:
                problems.append(
                    problem(
                        SAMPLE_RATE,
                        f"sample rate is not {policy.sample_rate} Hz ({row.sample_rate} Hz) and "
                        "audio.resample is false",
                        f"set audio.resample: true to resample to {policy.sample_rate} Hz",
                    )
                )
            if row.channels > 1 and policy.downmix == "error":
                problems.append(
                    problem(
                        CHANNELS,
                        f"several channels ({row.channels}) and audio.downmix is 'error'",
                        "set audio.downmix: mean (or first)",
                    )
                )
            if not policy.min_seconds <= row.duration <= policy.max_seconds:
                problems.append(
                    problem(
                        DURATION,
                        f"duration {row.duration:.3f} s outside {bounds}",
                        "set audio.min_seconds / audio.max_seconds, or cut long recordings into "
                        "segments",
                    )
                )
        normalized = normalize(row.transcript)
        if not normalized:
            problems.append(
                problem(
                    EMPTY_TRANSCRIPT,
                    f"transcript {row.transcript!r} is empty after normalisation",
                    "transcribe the utterance or remove it from the manifest",
                )
            )
        elif unknown := vocabulary.out_of_vocabulary(normalized):
            problems.append(
                problem(
                    OUT_OF_VOCABULARY,
                    f"characters outside the vocabulary: {''.join(sorted(set(unknown)))!r}",
                    "extend text.vocabulary (conf/base/parameters.yml)",
                )
            )
    return problems


def _schema_problems(manifest: pd.DataFrame, where: pd.Series) -> list[CorpusProblem]:
    """The ``Manifest`` schema's failures that the configured rules did not already name."""
    try:
        Manifest.validate(manifest, lazy=True)
    except SchemaErrors as errors:
        problems = []
        for case in errors.failure_cases.itertuples():
            if case.index is None or pd.isna(case.index) or case.column == "audio_error":
                continue
            index = int(case.index)
            # An unreadable file fails the size checks too; its audio error says it once.
            if manifest.at[index, "audio_error"] and case.column not in {
                "utt_id",
                "transcript",
                "speaker",
            }:
                continue
            if case.column in {"duration"} and case.check.startswith("greater_than"):
                continue  # a zero duration is the duration rule's breach, already named
            problems.append(
                CorpusProblem(
                    SCHEMA,
                    str(where[index]),
                    str(manifest.at[index, "utt_id"]),
                    f"{case.column}: {case.check}",
                )
            )
        return problems
    return []


def validate_manifest(
    manifest: pd.DataFrame,
    policy: AudioPolicy,
    vocabulary: CharVocabulary,
    normalize: TextNormalization,
    audio_root: str | Path | None = None,
    found: Sequence[CorpusProblem] = (),
) -> pd.DataFrame:
    """Check ``manifest`` against :class:`Manifest` plus the configured rules, all failures at once.

    ``found`` are problems found before (reading the corpus: malformed lines, missing files,
    duplicate or colliding ids); they are reported first, in the same error. With
    ``audio_root`` (the corpus root) the report names each file by its full path, which the
    manifest stores relative to that root. Raises one ``CorpusValidationError`` whose message
    groups the problems by kind (count, first examples, the option that fixes them).
    """
    where = (
        manifest["audio_path"]
        if audio_root is None
        else manifest["audio_path"].map(lambda stored: str(Path(audio_root) / stored))
    )
    problems = [*found, *_audio_problems(manifest, policy, vocabulary, normalize, where)]
    problems += _schema_problems(manifest, where)
    if problems:
        utterances = {(p.utterance, p.location) for p in problems if p.utterance}
        others = sum(1 for p in problems if not p.utterance)
        raise CorpusValidationError(
            f"{len(utterances)} utterance(s) break the corpus rules"
            + (f" (and {others} other problem(s))" if others else "")
            + "; nothing was trained",
            problems,
        )
    return manifest


class LeakageError(ValueError):
    """The same speaker or the same audio sits in two splits."""


def normalized_ids(values: pd.Series) -> pd.Series:
    """``values`` through ``normalize_id``, computed once per distinct value."""
    return values.map({value: normalize_id(value) for value in values.unique()})


def in_several_splits(lock: pd.DataFrame, column: str) -> list[str]:
    """Values of ``column`` (a speaker, an audio digest) that occur in more than one split.

    Values are compared, and returned, after Unicode normalisation (``normalize_id``), so
    look-alike spellings of one speaker count as that speaker.
    """
    splits = lock.groupby(normalized_ids(lock[column]))["split"].nunique()
    return sorted(splits[splits > 1].index)


def validate_split_lock(lock: pd.DataFrame) -> pd.DataFrame:
    """Check ``lock`` against :class:`SplitLock`; leakage is reported by speaker and by audio."""
    try:
        return SplitLock.validate(lock, lazy=True)
    except SchemaErrors as errors:
        lines = []
        for column, label in (("speaker", "speaker"), ("digest", "identical audio")):
            keys = normalized_ids(lock[column])
            for value in in_several_splits(lock, column):
                group = lock[keys == value]
                where = "; ".join(
                    f"{split}: {', '.join(g['utt_id'])}" for split, g in group.groupby("split")
                )
                spellings = group[column].unique()
                if len(spellings) > 1:  # ascii() shows what a reader cannot see (e.g. U+200B)
                    where = f"spelled {', '.join(map(ascii, spellings))}; {where}"
                lines.append(f"  {label} {value} is in several splits ({where})")
        if not lines:
            raise
        raise LeakageError(f"{len(lines)} leak(s) between splits:\n" + "\n".join(lines)) from errors
