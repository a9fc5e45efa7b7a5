"""The utterances of a split as a dataset: normalised features and encoded transcripts.

Training and evaluation both read utterances this way, so it lives here rather than in either
pipeline (evaluation then needs nothing of the training node or its torchrun launcher).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from kedro_repro.shards import ShardedTensors
from speech_repro.asr.augment import SpecAugmentConfig
from speech_repro.asr.batching import UtteranceDataset
from speech_repro.asr.text import CharVocabulary, TextNormalization


def utterance_dataset(
    features: ShardedTensors,
    norm_stats: dict,
    manifest: pd.DataFrame,
    utt_ids: list[str],
    text: dict[str, Any],
    augment: SpecAugmentConfig | None = None,
    seed: int = 0,
) -> UtteranceDataset:
    """Lazily normalised features and encoded transcripts of ``utt_ids`` (in that order)."""
    normalize = TextNormalization(**text["normalization"])
    vocabulary = CharVocabulary(text["vocabulary"])
    transcripts = dict(zip(manifest["utt_id"], manifest["transcript"], strict=True))
    targets = [vocabulary.encode(normalize(transcripts[u])) for u in utt_ids]
    return UtteranceDataset(
        features, utt_ids, targets, norm_stats["mean"], norm_stats["std"], augment, seed
    )
