"""Evaluation: greedy CTC decoding and jiwer metrics under the declared text normalisation."""

from __future__ import annotations

import dataclasses

import jiwer
import pandas as pd

from kedro_repro.hashing import json_digest
from kedro_repro.shards import ShardedTensors
from speech_repro.asr.dataset import utterance_dataset
from speech_repro.asr.decoding import constrain_to_lexicon, greedy_transcripts
from speech_repro.asr.model import CTCModel, ModelConfig
from speech_repro.asr.text import CharVocabulary
from speech_repro.parameters import EvaluationParams, TextParams

CONSTRAINED = "hypothesis_constrained"
"""The hypotheses' column of lexicon-constrained output (present only with a lexicon)."""


def transcribe(
    model: dict,
    features: ShardedTensors,
    split_lock: pd.DataFrame,
    manifest: pd.DataFrame,
    norm_stats: dict,
    text: TextParams,
    evaluation: EvaluationParams,
) -> pd.DataFrame:
    """Greedy-decode every utterance of the evaluated splits; references beside hypotheses.

    ``hypothesis`` is the raw greedy output. With ``evaluation.lexicon`` set, the column
    ``hypothesis_constrained`` holds it with each word replaced by the closest lexicon word
    (:func:`~speech_repro.asr.decoding.constrain_to_lexicon`); without one the column is absent.
    """
    net = CTCModel(ModelConfig(**model["config"]))
    net.load_state_dict(model["weights"])
    net.eval()
    vocabulary = CharVocabulary(model["vocabulary"])
    rows = split_lock[split_lock["split"].isin(evaluation.splits)]
    dataset = utterance_dataset(
        features, norm_stats, manifest, rows["utt_id"].tolist(), text.model_dump()
    )
    hypotheses = greedy_transcripts(
        net, dataset, vocabulary, evaluation.batch_size, progress="transcribe"
    )
    normalize = text.normalization
    transcripts = dict(zip(manifest["utt_id"], manifest["transcript"], strict=True))
    table = pd.DataFrame(
        {
            "utt_id": rows["utt_id"].to_numpy(),
            "split": rows["split"].to_numpy(),
            "speaker": rows["speaker"].to_numpy(),
            "reference": [normalize(transcripts[u]) for u in rows["utt_id"]],
            "hypothesis": [normalize(hypotheses[u]) for u in rows["utt_id"]],
        }
    )
    if evaluation.lexicon is not None:
        table[CONSTRAINED] = constrain_to_lexicon(
            table["hypothesis"].tolist(), lexicon_words(evaluation.lexicon, text)
        )
    return table


def lexicon_words(lexicon: list[str], text: TextParams) -> list[str]:
    """The declared lexicon normalised like the transcripts, duplicates dropped, order kept."""
    words = [text.normalization(w).strip() for w in lexicon]
    unusable = [w for w, n in zip(lexicon, words, strict=True) if not n or len(n.split()) != 1]
    if unusable:
        raise ValueError(
            f"evaluation.lexicon: {unusable} are not one word each after the text normalisation"
        )
    return list(dict.fromkeys(words))


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


def score(
    hypotheses: pd.DataFrame, text: TextParams, selection: dict | None = None
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Metrics per split (JSON) plus per-split and per-speaker tables.

    Every rate is of the raw greedy ``hypothesis``. When the hypotheses carry a
    ``hypothesis_constrained`` column (``evaluation.lexicon``), each split and speaker also gets
    ``constrained_wer`` and ``constrained_cer`` beside them. ``selection`` (training's
    ``model_selection``: which step's weights were kept, and why) is copied into the metrics.
    """
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
    if selection is not None:
        metrics["selection"] = selection
    return metrics, per_split, per_speaker


def _grouped_rates(hypotheses: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    constrained = CONSTRAINED in hypotheses.columns
    rows = []
    for group, frame in hypotheses.groupby(keys, sort=True):
        values = dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True))
        references = frame["reference"].tolist()
        rates = error_rates(references, frame["hypothesis"].tolist())
        if constrained:
            lexical = error_rates(references, frame[CONSTRAINED].tolist())
            rates |= {f"constrained_{k}": lexical[k] for k in ("wer", "cer")}
        rows.append({**values, **rates})
    return pd.DataFrame(rows)
