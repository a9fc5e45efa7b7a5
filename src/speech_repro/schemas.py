"""Pandera schemas of the tables that flow through the pipelines.

Static rules live in the ``DataFrameModel`` classes and are checked by the catalog on every save
and load. Rules that depend on configuration (audio policy, vocabulary) are added by
:func:`validate_manifest`, which reports every failing utterance at once.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series

from speech_repro.asr.audio import AudioPolicy
from speech_repro.asr.text import CharVocabulary, TextNormalization
from speech_repro.corpora.paths import is_stored_path

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
        """No speaker in two splits."""
        return df.groupby("speaker")["split"].transform("nunique") == 1

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


class CorpusValidationError(ValueError):
    """The corpus breaks the manifest's rules; the message names every offending utterance."""


def validate_manifest(
    manifest: pd.DataFrame,
    policy: AudioPolicy,
    vocabulary: CharVocabulary,
    normalize: TextNormalization,
    audio_root: str | Path | None = None,
) -> pd.DataFrame:
    """Check ``manifest`` against :class:`Manifest` plus the configured rules, all failures at once.

    With ``audio_root`` (the corpus root) the report names each file by its full path, which the
    manifest stores relative to that root.
    """
    normalized = manifest["transcript"].map(normalize)
    rate_ok = manifest["sample_rate"].eq(policy.sample_rate) | policy.resample
    checks = {
        "transcript is empty after normalisation": normalized.str.len() > 0,
        "characters outside the vocabulary": normalized.map(
            lambda t: not vocabulary.out_of_vocabulary(t)
        ),
        f"sample rate is not {policy.sample_rate} Hz and audio.resample is false": rate_ok
        | (manifest["audio_error"] != ""),
        "several channels and audio.downmix is 'error'": manifest["channels"].le(1)
        | (policy.downmix != "error"),
        f"duration outside [{policy.min_seconds}, {policy.max_seconds}] s": manifest[
            "duration"
        ].between(policy.min_seconds, policy.max_seconds)
        | (manifest["audio_error"] != ""),
    }
    problems: dict[int, list[str]] = {}
    for label, ok in checks.items():
        for index in manifest.index[~ok]:
            problems.setdefault(index, []).append(label)
    try:
        Manifest.validate(manifest, lazy=True)
    except SchemaErrors as errors:
        for case in errors.failure_cases.itertuples():
            if case.index is None or pd.isna(case.index):
                continue
            if (
                manifest.at[int(case.index), "audio_error"]
                and case.column != "audio_error"
                and case.column not in {"utt_id", "transcript", "speaker"}
            ):
                continue  # an unreadable file fails the size checks too; say it once
            label = (
                "unreadable audio"
                if case.column == "audio_error"
                else f"{case.column}: {case.check}"
            )
            problems.setdefault(int(case.index), []).append(label)
    if problems:
        lines = []
        for index in sorted(problems):
            row = manifest.loc[index]
            detail = f" [{row['audio_error']}]" if row["audio_error"] else ""
            where = (
                row["audio_path"] if audio_root is None else Path(audio_root) / row["audio_path"]
            )
            lines.append(
                f"  {row['utt_id']} ({where}): {'; '.join(dict.fromkeys(problems[index]))}{detail}"
            )
        raise CorpusValidationError(
            f"{len(problems)} utterance(s) break the corpus rules; nothing was trained:\n"
            + "\n".join(lines)
        )
    return manifest


class LeakageError(ValueError):
    """The same speaker or the same audio sits in two splits."""


def in_several_splits(lock: pd.DataFrame, column: str) -> list[str]:
    """Values of ``column`` (a speaker, an audio digest) that occur in more than one split."""
    splits = lock.groupby(column)["split"].nunique()
    return sorted(splits[splits > 1].index)


def validate_split_lock(lock: pd.DataFrame) -> pd.DataFrame:
    """Check ``lock`` against :class:`SplitLock`; leakage is reported by speaker and by audio."""
    try:
        return SplitLock.validate(lock, lazy=True)
    except SchemaErrors as errors:
        lines = []
        for column, label in (("speaker", "speaker"), ("digest", "identical audio")):
            for value in in_several_splits(lock, column):
                group = lock[lock[column] == value]
                where = "; ".join(
                    f"{split}: {', '.join(g['utt_id'])}" for split, g in group.groupby("split")
                )
                lines.append(f"  {label} {value} is in several splits ({where})")
        if not lines:
            raise
        raise LeakageError(f"{len(lines)} leak(s) between splits:\n" + "\n".join(lines)) from errors
