"""Lexicon-constrained greedy output: closest word by edit distance, WER reported beside raw."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.determinism import DeterminismPolicy
from speech_repro.asr.decoding import constrain_to_lexicon
from speech_repro.parameters import EvaluationParams, ModelParams, TextParams, TrainingParams
from speech_repro.pipelines.evaluation.nodes import CONSTRAINED, lexicon_words, score, transcribe
from speech_repro.pipelines.training.nodes import train_model
from speech_repro.schemas import Hypotheses

DIGITS = ["zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_each_word_becomes_the_closest_lexicon_word():
    hypotheses = ["onne tw thre", "", "fiv  sevn", "nine"]
    assert constrain_to_lexicon(hypotheses, DIGITS) == [
        "one two three",
        "",
        "five seven",
        "nine",
    ]


def test_a_tie_goes_to_the_word_listed_first():
    # "tn" is one edit from both "ten" and "tin".
    assert constrain_to_lexicon(["tn"], ["ten", "tin"]) == ["ten"]
    assert constrain_to_lexicon(["tn"], ["tin", "ten"]) == ["tin"]
    assert constrain_to_lexicon(["on"], DIGITS) == ["oh"]  # "oh" and "one": "oh" comes first


def test_the_lexicon_is_normalised_like_the_transcripts(params):
    text = TextParams(**params["text"])
    assert lexicon_words(["One", "TWO!", "one"], text) == ["one", "two"]
    with pytest.raises(ValueError, match="not one word"):
        lexicon_words(["!!!"], text)


@pytest.mark.parametrize("lexicon", [[], ["two words"], [" "]])
def test_an_unusable_lexicon_is_refused(lexicon):
    with pytest.raises(ValidationError, match="lexicon"):
        EvaluationParams(splits=["test"], batch_size=4, lexicon=lexicon)


def test_constrained_wer_sits_beside_raw_and_is_not_higher_here(params):
    text = TextParams(**params["text"])
    raw = ["one tw three", "fiv", "sx seven", "eight"]
    hypotheses = pd.DataFrame(
        {
            "utt_id": ["a1", "a2", "b1", "b2"],
            "split": ["test", "test", "test", "dev"],
            "speaker": ["a", "a", "b", "b"],
            "reference": ["one two three", "five", "six seven", "eight"],
            "hypothesis": raw,
            CONSTRAINED: constrain_to_lexicon(raw, DIGITS),
        }
    )
    Hypotheses.validate(hypotheses)
    metrics, per_split, per_speaker = score(hypotheses, text)
    test = metrics["splits"]["test"]
    assert test["wer"] == pytest.approx(3 / 6)  # raw: tw, fiv, sx
    assert test["constrained_wer"] == 0.0
    assert test["constrained_wer"] <= test["wer"]
    assert per_split.set_index("split")["constrained_wer"].to_dict() == {"dev": 0.0, "test": 0.0}
    assert {"constrained_wer", "constrained_cer"} <= set(per_speaker.columns)
    without, _, _ = score(hypotheses.drop(columns=CONSTRAINED), text)
    assert "constrained_wer" not in without["splits"]["test"]  # no lexicon, metrics as before


def test_transcribe_adds_the_constrained_column_only_with_a_lexicon(prepared, params, tmp_path):
    training = TrainingParams(**params["training"])
    model, _, _ = train_model(
        prepared["features"],
        prepared["split_lock"],
        prepared["manifest"],
        prepared["norm_stats"],
        training,
        ModelParams(**params["model"]),
        TextParams(**params["text"]),
        CheckpointStore(tmp_path),
        DeterminismPolicy(**params["determinism"]),
    )
    args = [
        model,
        prepared["features"],
        prepared["split_lock"],
        prepared["manifest"],
        prepared["norm_stats"],
        TextParams(**params["text"]),
    ]
    plain = transcribe(*args, EvaluationParams(**params["evaluation"]))
    lexicon = {**params["evaluation"], "lexicon": DIGITS}
    constrained = transcribe(*args, EvaluationParams(**lexicon))
    assert CONSTRAINED not in plain.columns
    assert constrained.drop(columns=CONSTRAINED).equals(plain)  # the raw output is untouched
    Hypotheses.validate(plain)
    Hypotheses.validate(constrained)
    assert plain["hypothesis"].str.len().gt(0).any()  # words to map (the tiny model's are junk)
    for raw, mapped in zip(plain["hypothesis"], constrained[CONSTRAINED], strict=True):
        assert len(mapped.split()) == len(raw.split())
        assert set(mapped.split()) <= set(DIGITS)
