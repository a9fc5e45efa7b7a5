"""Scoring with jiwer under the declared normalisation."""

from __future__ import annotations

import pandas as pd
import pytest

from speech_repro.asr.text import TextNormalization
from speech_repro.parameters import TextParams
from speech_repro.pipelines.evaluation.nodes import error_rates, score


def test_error_rates_match_a_hand_count():
    rates = error_rates(["one two three", "four five"], ["one too three", "four five six"])
    assert rates["wer"] == pytest.approx(2 / 5)
    assert (rates["substitutions"], rates["insertions"], rates["deletions"], rates["hits"]) == (
        1,
        1,
        0,
        4,
    )
    # characters: "two"->"too" is 1 substitution, " six" is 4 insertions, over 13 + 9 reference chars
    assert rates["cer"] == pytest.approx(5 / 22)


def test_score_groups_by_split_and_speaker(params):
    normalize = TextNormalization(**params["text"]["normalization"])
    hypotheses = pd.DataFrame(
        {
            "utt_id": ["a1", "a2", "b1"],
            "split": ["test", "test", "dev"],
            "speaker": ["a", "a", "b"],
            "reference": [normalize(t) for t in ["One two", "three", "Four!"]],
            "hypothesis": ["one two", "", "four"],
        }
    )
    metrics, per_split, per_speaker = score(hypotheses, TextParams(**params["text"]))
    assert metrics["splits"]["test"]["wer"] == pytest.approx(1 / 3)
    assert metrics["splits"]["dev"]["wer"] == 0.0
    assert metrics["normalization_digest"].startswith("blake3:")
    assert metrics["normalization"] == params["text"]["normalization"]  # as declared
    assert per_split.set_index("split")["deletions"].to_dict() == {"dev": 0, "test": 1}
    assert per_speaker[["split", "speaker"]].values.tolist() == [["dev", "b"], ["test", "a"]]
