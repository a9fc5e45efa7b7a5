"""Run reports on the tiny real corpus: review flags catch planted problems, figures are stable."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from kedro_repro.datasets import MarkdownReportDataset
from kedro_repro.determinism import DeterminismPolicy
from speech_repro.asr.features import FeatureConfig
from speech_repro.parameters import ReportingParams, SeedSweepParams
from speech_repro.pipelines.reporting import nodes as rp


def _flags(prepared, params, split_lock=None, manifest=None, drift=None, determinism=None):
    return rp.review_flags(
        prepared["split_lock"] if split_lock is None else split_lock,
        prepared["drift_report"] if drift is None else drift,
        DeterminismPolicy(**(params["determinism"] if determinism is None else determinism)),
        prepared["manifest"] if manifest is None else manifest,
        FeatureConfig(**params["features"]),
    )


def _two_speakers_per_split(lock: pd.DataFrame) -> pd.DataFrame:
    """The lock with a dev speaker moved to test, so every split has at least two speakers."""
    lock = lock.copy()
    mover = sorted(lock.loc[lock["split"] == "dev", "speaker"].unique())[0]
    lock.loc[lock["speaker"] == mover, "split"] = "test"
    assert lock.groupby("split")["speaker"].nunique().min() >= 2
    return lock


@pytest.fixture
def flags(prepared, params) -> dict:
    return _flags(prepared, params, split_lock=_two_speakers_per_split(prepared["split_lock"]))


def test_a_clean_split_raises_no_flag(flags):
    assert flags["attention"] == []
    assert flags["leakage"]["audio_in_several_splits"] == 0
    assert flags["bandwidth"]["utterances"] == 0
    assert flags["splits"]["too_few_speakers"] == []


def test_a_split_of_one_speaker_is_flagged(prepared, params):
    lock = prepared["split_lock"]
    assert lock.loc[lock["split"] == "test", "speaker"].nunique() == 1  # the tiny test split
    flags = _flags(prepared, params)
    assert flags["splits"]["too_few_speakers"] == ["test"]
    assert flags["splits"]["sizes"]["test"] == {
        "speakers": 1,
        "utterances": int((lock["split"] == "test").sum()),
    }
    assert flags["attention"] == [
        "split test has 1 speaker: its WER has no confidence interval"
        " (an interval over speakers needs 2)"
    ]


def test_audio_narrower_than_f_max_is_flagged_with_its_rates(prepared, params):
    manifest = prepared["manifest"].copy()
    manifest.loc[:2, "sample_rate"] = 8000
    manifest.loc[3, "sample_rate"] = 11025
    manifest.loc[4, "sample_rate"] = 22050  # wide enough: not flagged
    flags = _flags(prepared, params, manifest=manifest)
    assert flags["bandwidth"] == {
        "f_max": 7600.0,
        "utterances": 4,
        "sample_rates": {"8000": 3, "11025": 1},
        "empty_mel_bands": {"8000": 7, "11025": 3},
        "n_mels": 40,
    }
    assert any(a.startswith("3 utterance(s) at 8000 Hz have no content above 4000 Hz") for a in
               flags["attention"])  # fmt: skip
    assert any("1 utterance(s) at 11025 Hz" in a for a in flags["attention"])


def test_look_alike_speaker_ids_in_two_splits_are_counted_as_leakage(prepared, params):
    lock = _two_speakers_per_split(prepared["split_lock"])
    train_speaker = lock.loc[lock["split"] == "train", "speaker"].iloc[0]
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in train_speaker)
    test_row = lock.index[lock["split"] == "test"][0]
    lock.loc[test_row, "speaker"] = fullwidth
    flags = _flags(prepared, params, split_lock=lock)
    assert flags["leakage"]["speakers_in_several_splits"] == [train_speaker]


def test_planted_leakage_and_drift_are_flagged(prepared, params):
    lock = prepared["split_lock"].copy()
    first_test = lock.index[lock["split"] == "test"][0]
    train_speaker = lock.loc[lock["split"] == "train", "speaker"].iloc[0]
    lock.loc[first_test, "speaker"] = train_speaker  # a train speaker in test
    lock.loc[lock.index[lock["split"] == "dev"][0], "digest"] = lock.loc[first_test, "digest"]
    drift = {**prepared["drift_report"], "flagged": ["test"]}
    determinism = {**params["determinism"], "mode": "warn"}
    flags = _flags(prepared, params, split_lock=lock, drift=drift, determinism=determinism)
    assert flags["leakage"]["speakers_in_several_splits"] == [train_speaker]
    assert flags["leakage"]["audio_in_several_splits"] == 1
    assert len(flags["attention"]) == 4
    assert "Needs attention" in "\n".join(rp.attention_section(flags))


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=60)
    return buffer.getvalue()


def test_figures_render_to_identical_png_bytes(prepared):
    figures = [
        lambda: rp.plot_feature_distributions(prepared["feature_stats"], prepared["split_lock"]),
        lambda: rp.plot_learning_curves(
            {"a": pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.5]})}
        ),
    ]
    for make in figures:
        first, second = _png(make()), _png(make())
        assert first.startswith(b"\x89PNG") and first == second


def test_run_report_lists_every_split_with_its_interval(flags):
    hypotheses = pd.DataFrame(
        {
            "utt_id": ["u1", "u2", "u3", "u4"],
            "split": ["dev", "dev", "test", "test"],
            "speaker": ["a", "b", "c", "d"],
            "reference": ["one two", "three", "four", "five six"],
            "hypothesis": ["one", "three", "four", "five six"],
        }
    )
    summary = rp.wer_intervals(
        hypotheses,
        ReportingParams(confidence_level=0.9, bootstrap={"replicates": 200, "seed": 1}),
    )
    metrics = {"normalization": {}, "splits": {s: {"cer": 0.1} for s in ("dev", "test")}}
    report = rp.write_run_report(metrics, summary, flags)
    assert "| dev | 33.33% | [" in report and "| test | 0.00% | [0.00%, 0.00%]" in report
    assert "90 % CI" in report and "over speakers" in report


def test_run_report_prints_an_undefined_interval_for_a_split_of_one_speaker(flags):
    hypotheses = pd.DataFrame(
        {
            "utt_id": ["u1", "u2", "u3", "u4"],
            "split": ["dev", "dev", "test", "test"],
            "speaker": ["a", "b", "c", "c"],
            "reference": ["one two", "three", "four", "five six"],
            "hypothesis": ["one", "three", "four", "five"],
        }
    )
    summary = rp.wer_intervals(
        hypotheses,
        ReportingParams(confidence_level=0.95, bootstrap={"replicates": 200, "seed": 1}),
    )
    assert summary["splits"]["test"]["ci_low"] is None
    metrics = {"normalization": {}, "splits": {s: {"cer": 0.1} for s in ("dev", "test")}}
    report = rp.write_run_report(metrics, summary, flags)
    assert "| test | 33.33% | undefined: 1 speaker |" in report
    assert "[33.33%, 33.33%]" not in report
    assert "undefined" not in rp.interval_methods([summary])  # only real methods are named


def test_seed_sweep_reports_a_per_seed_interval_that_is_undefined(flags):
    from speech_repro.pipelines.seeds import nodes as sn

    entry = {"wer": 0.25, "ci_low": None, "ci_high": None, "ci_undefined": "1 speaker",
             "level": 0.95, "speakers": 1, "utterances": 2, "words": 8,
             "method": "undefined (fewer than 2 speakers)"}  # fmt: skip
    defined = {**entry, "ci_low": 0.1, "ci_high": 0.4, "ci_undefined": None, "speakers": 3,
               "method": "BCa bootstrap over speakers"}  # fmt: skip
    sweep = SeedSweepParams(seeds=[1, 2, 3], confidence_level=0.95)
    summaries = [
        {"splits": {"test": {**entry, "wer": w}, "dev": {**defined, "wer": w}}}
        for w in (0.2, 0.25, 0.3)
    ]
    summary = sn.summarize_seeds(sweep, *summaries)
    report = sn.write_sweep_report(summary, flags)
    assert "| test | 1 | 20.00% | undefined: 1 speaker |" in report
    assert _png(sn.plot_seed_wer(summary)).startswith(b"\x89PNG")


def test_markdown_report_is_saved_with_its_html_and_previews_as_html(tmp_path):
    dataset = MarkdownReportDataset(filepath=str(tmp_path / "report.md"))
    dataset.save("# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert dataset.load().startswith("# Title")
    html = (tmp_path / "report.html").read_text()
    assert "<h1>Title</h1>" in html and "<td>1</td>" in html
    assert dataset.preview() == html
