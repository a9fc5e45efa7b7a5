"""Evaluation: greedy CTC decoding and jiwer metrics under the declared text normalisation."""

from __future__ import annotations

import dataclasses

import jiwer
import pandas as pd
import torch

from kedro_repro.hashing import json_digest
from kedro_repro.shards import ShardedTensors
from speech_repro.asr.batching import collate
from speech_repro.asr.dataset import utterance_dataset
from speech_repro.asr.model import CTCModel, ModelConfig, greedy_decode
from speech_repro.asr.text import CharVocabulary
from speech_repro.parameters import EvaluationParams, TextParams


def transcribe(
    model: dict,
    features: ShardedTensors,
    split_lock: pd.DataFrame,
    manifest: pd.DataFrame,
    norm_stats: dict,
    text: TextParams,
    evaluation: EvaluationParams,
) -> pd.DataFrame:
    """Greedy-decode every utterance of the evaluated splits; references beside hypotheses."""
    net = CTCModel(ModelConfig(**model["config"]))
    net.load_state_dict(model["weights"])
    net.eval()
    vocabulary = CharVocabulary(model["vocabulary"])
    rows = split_lock[split_lock["split"].isin(evaluation.splits)]
    dataset = utterance_dataset(
        features, norm_stats, manifest, rows["utt_id"].tolist(), text.model_dump()
    )
    hypotheses: dict[str, str] = {}
    size = evaluation.batch_size
    with torch.inference_mode():
        for start in range(0, len(dataset), size):
            batch = collate([dataset[i] for i in range(start, min(start + size, len(dataset)))])
            log_probs, lengths = net(batch["features"], batch["lengths"])
            for utt_id, path in zip(
                batch["utt_ids"], greedy_decode(log_probs, lengths), strict=True
            ):
                hypotheses[utt_id] = vocabulary.decode(path)
    normalize = text.normalization
    transcripts = dict(zip(manifest["utt_id"], manifest["transcript"], strict=True))
    return pd.DataFrame(
        {
            "utt_id": rows["utt_id"].to_numpy(),
            "split": rows["split"].to_numpy(),
            "speaker": rows["speaker"].to_numpy(),
            "reference": [normalize(transcripts[u]) for u in rows["utt_id"]],
            "hypothesis": [normalize(hypotheses[u]) for u in rows["utt_id"]],
        }
    )


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float | int]:
    """WER, MER, WIL with edit counts over words, and CER over characters (jiwer)."""
    words = jiwer.process_words(references, hypotheses)
    chars = jiwer.process_characters(references, hypotheses)
    return {
        "wer": words.wer,
        "mer": words.mer,
        "wil": words.wil,
        "cer": chars.cer,
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
        "hits": words.hits,
        "reference_words": words.hits + words.substitutions + words.deletions,
        "utterances": len(references),
    }


def score(hypotheses: pd.DataFrame, text: TextParams) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Metrics per split (JSON) plus per-split and per-speaker tables."""
    per_split = _grouped_rates(hypotheses, ["split"])
    per_speaker = _grouped_rates(hypotheses, ["split", "speaker"])
    normalization = dataclasses.asdict(text.normalization)  # as declared, field by field
    metrics = {
        "normalization": normalization,
        "normalization_digest": json_digest(normalization),
        "splits": {
            r["split"]: {k: v for k, v in r.items() if k != "split"}
            for r in per_split.to_dict("records")
        },
    }
    return metrics, per_split, per_speaker


def _grouped_rates(hypotheses: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rows = []
    for group, frame in hypotheses.groupby(keys, sort=True):
        values = dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True))
        rows.append(
            {**values, **error_rates(frame["reference"].tolist(), frame["hypothesis"].tolist())}
        )
    return pd.DataFrame(rows)
