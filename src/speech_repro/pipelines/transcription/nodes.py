"""Transcription: a run's model on new audio, as ``kedro repro transcribe`` does it."""

from __future__ import annotations

import pandas as pd

from kedro_repro.params import as_type
from speech_repro.asr.config import AudioPolicy, FeatureConfig
from speech_repro.asr.recognizer import AudioItem, Recognizer
from speech_repro.corpora.paths import audio_files, corpus_root
from speech_repro.parameters import EvaluationParams, TextParams


def transcribe_new_audio(
    new_audio: pd.DataFrame,
    model: dict,
    norm_stats: dict,
    features: FeatureConfig,
    audio: AudioPolicy,
    text: TextParams,
    evaluation: EvaluationParams,
) -> pd.DataFrame:
    """One row per utterance of ``new_audio``: its id, stored audio path and normalised hypothesis,
    decoded ``evaluation.batch_size`` at a time."""
    recognizer = Recognizer.from_bundle(
        model,
        norm_stats,
        as_type(FeatureConfig, features),
        as_type(AudioPolicy, audio),
        TextParams.of(text),
    )
    files = audio_files(corpus_root(new_audio), new_audio["audio_path"])
    items = [
        AudioItem(utt_id, path, float(start), float(end))
        for utt_id, path, start, end in zip(
            new_audio["utt_id"], files, new_audio["start"], new_audio["end"], strict=True
        )
    ]
    hypotheses = recognizer.transcribe_items(items, EvaluationParams.of(evaluation).batch_size)
    return pd.DataFrame(
        {
            "utt_id": new_audio["utt_id"].astype(str).to_numpy(),
            "audio_path": new_audio["audio_path"].astype(str).to_numpy(),
            "hypothesis": hypotheses,
        }
    )
