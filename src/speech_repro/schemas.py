"""Pandera schemas of the tables that flow through the pipelines, checked on every catalog save/load."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

MAX_UTTERANCE_SECONDS = 30.0


class Manifest(pa.DataFrameModel):
    """One row per utterance: where its audio is, what it contains, and its content digest."""

    utt_id: Series[str] = pa.Field(unique=True)
    speaker: Series[str] = pa.Field(str_length={"min_value": 1})
    audio_path: Series[str]
    sample_rate: Series[int] = pa.Field(gt=0)
    channels: Series[int] = pa.Field(eq=1)
    num_samples: Series[int] = pa.Field(gt=0)
    duration: Series[float] = pa.Field(gt=0, le=MAX_UTTERANCE_SECONDS)
    transcript: Series[str] = pa.Field(str_length={"min_value": 1})
    digest: Series[str] = pa.Field(str_matches=r"^blake3:[0-9a-f]{64}$")

    @pa.dataframe_check
    def duration_matches_samples(cls, df):
        return (df["duration"] - df["num_samples"] / df["sample_rate"]).abs() < 1e-6


class SplitLock(pa.DataFrameModel):
    """The locked assignment of every utterance to a split, with the digest of its audio."""

    utt_id: Series[str] = pa.Field(unique=True)
    speaker: Series[str]
    split: Series[str] = pa.Field(isin=["train", "dev", "test"])
    digest: Series[str] = pa.Field(str_matches=r"^blake3:[0-9a-f]{64}$")

    @pa.dataframe_check
    def speakers_are_disjoint(cls, df):
        return df.groupby("speaker")["split"].transform("nunique") == 1


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
