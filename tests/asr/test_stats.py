"""WER intervals over speakers and paired comparisons, on hypotheses with known errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from speech_repro.asr.stats import paired_speaker_bootstrap, speaker_wer_interval


def hypotheses(errors_by_speaker: dict[str, list[int]], words: int = 4) -> pd.DataFrame:
    """One utterance of ``words`` words per entry, with that many leading words wrong."""
    rows = []
    for speaker, errors in errors_by_speaker.items():
        for i, wrong in enumerate(errors):
            reference = ["one"] * words
            hypothesis = ["two"] * wrong + ["one"] * (words - wrong)
            rows.append(
                {
                    "utt_id": f"{speaker}-{i}",
                    "split": "test",
                    "speaker": speaker,
                    "reference": " ".join(reference),
                    "hypothesis": " ".join(hypothesis),
                }
            )
    return pd.DataFrame(rows)


def test_interval_holds_the_point_estimate_and_names_its_method():
    h = hypotheses({"a": [0, 1], "b": [2, 1], "c": [0, 0], "d": [3, 2]})
    result = speaker_wer_interval(h, replicates=500)
    assert result["wer"] == pytest.approx(9 / 32)
    assert result["ci_low"] <= result["wer"] <= result["ci_high"]
    assert result["speakers"] == 4 and result["words"] == 32
    assert "over speakers" in result["method"]


def test_resampling_speakers_is_wider_than_resampling_utterances_when_speakers_differ():
    """Errors cluster by speaker: an utterance bootstrap would understate the uncertainty."""
    h = hypotheses({s: [e] * 10 for s, e in zip("abcdef", [0, 0, 0, 4, 4, 0], strict=True)})
    by_speaker = speaker_wer_interval(h, replicates=1000)
    per_utterance = h.assign(speaker=h["utt_id"])  # every utterance its own "speaker"
    by_utterance = speaker_wer_interval(per_utterance, replicates=1000)
    width = lambda r: r["ci_high"] - r["ci_low"]  # noqa: E731
    assert width(by_speaker) > 2 * width(by_utterance)


def test_same_seed_same_interval():
    h = hypotheses({"a": [0, 1], "b": [2, 1], "c": [0, 3]})
    assert speaker_wer_interval(h, seed=3) == speaker_wer_interval(h, seed=3)


def test_a_clearly_better_system_has_probability_of_improvement_near_one():
    worse = hypotheses({s: [2, 2] for s in "abcdefgh"})
    better = hypotheses({s: [1, 0] for s in "abcdefgh"})
    result = paired_speaker_bootstrap(worse, better, replicates=500)
    assert result["delta"] == pytest.approx(-24 / 64)
    assert result["p_improvement"] == 1.0 and not result["equivalent"]


def test_seeds_of_one_configuration_are_averaged_per_utterance():
    a = [hypotheses({s: [1, 1] for s in "abcd"}), hypotheses({s: [3, 3] for s in "abcd"})]
    b = [hypotheses({s: [2, 2] for s in "abcd"})] * 3
    result = paired_speaker_bootstrap(a, b, replicates=200)
    assert result["wer_a"] == pytest.approx(result["wer_b"]) == pytest.approx(0.5)
    assert result["delta"] == 0 and result["equivalent"]


def test_systems_scored_on_different_utterances_are_refused():
    a = hypotheses({"a": [0, 1]})
    with pytest.raises(ValueError, match="different utterances"):
        paired_speaker_bootstrap(a, a.iloc[:1])
    assert np.isfinite(speaker_wer_interval(a)["wer"])


def test_one_speaker_has_an_undefined_interval_not_a_zero_width_one():
    """Resampling one speaker can only return that speaker: the interval says nothing."""
    result = speaker_wer_interval(hypotheses({"a": [1, 2, 0]}), replicates=200)
    assert result["wer"] == pytest.approx(3 / 12)
    assert result["ci_low"] is None and result["ci_high"] is None
    assert result["ci_undefined"] == "1 speaker"
    assert result["speakers"] == 1


def test_two_speakers_have_a_defined_interval():
    result = speaker_wer_interval(hypotheses({"a": [1, 2], "b": [0, 0]}), replicates=200)
    assert result["ci_undefined"] is None
    assert result["ci_low"] <= result["wer"] <= result["ci_high"]


def test_a_paired_comparison_on_one_speaker_has_no_interval_and_no_equivalence():
    """Two runs of one speaker: the bootstrap can only return that speaker's own difference."""
    a = hypotheses({"a": [1, 2, 0]})
    b = hypotheses({"a": [1, 1, 0]})
    result = paired_speaker_bootstrap(a, b, replicates=200)
    assert result["delta"] == pytest.approx(-1 / 12)
    assert result["ci_low"] is None and result["ci_high"] is None
    assert result["ci_undefined"] == "1 speaker" and not result["equivalent"]
    assert not paired_speaker_bootstrap(a, a, replicates=200)["equivalent"]  # even when equal
