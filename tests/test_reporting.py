"""Run reports on the tiny real corpus: review flags catch planted problems, figures are stable."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from speech_repro.pipelines.reporting import nodes as rp
from speech_repro.repro.datasets import MarkdownReportDataset


@pytest.fixture
def flags(prepared, params) -> dict:
    return rp.review_flags(prepared["split_lock"], prepared["drift_report"], params["determinism"])


def test_a_clean_split_raises_no_flag(flags):
    assert flags["attention"] == []
    assert flags["leakage"]["audio_in_several_splits"] == 0


def test_planted_leakage_and_drift_are_flagged(prepared, params):
    lock = prepared["split_lock"].copy()
    first_test = lock.index[lock["split"] == "test"][0]
    train_speaker = lock.loc[lock["split"] == "train", "speaker"].iloc[0]
    lock.loc[first_test, "speaker"] = train_speaker  # a train speaker in test
    lock.loc[lock.index[lock["split"] == "dev"][0], "digest"] = lock.loc[first_test, "digest"]
    drift = {**prepared["drift_report"], "flagged": ["test"]}
    determinism = {**params["determinism"], "mode": "warn"}
    flags = rp.review_flags(lock, drift, determinism)
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
        hypotheses, {"confidence_level": 0.9, "bootstrap": {"replicates": 200, "seed": 1}}
    )
    metrics = {"normalization": {}, "splits": {s: {"cer": 0.1} for s in ("dev", "test")}}
    report = rp.write_run_report(metrics, summary, flags)
    assert "| dev | 33.33% | [" in report and "| test | 0.00% | [0.00%, 0.00%]" in report
    assert "90 % CI" in report and "over speakers" in report


def test_markdown_report_is_saved_with_its_html_and_previews_as_html(tmp_path):
    dataset = MarkdownReportDataset(filepath=str(tmp_path / "report.md"))
    dataset.save("# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert dataset.load().startswith("# Title")
    html = (tmp_path / "report.html").read_text()
    assert "<h1>Title</h1>" in html and "<td>1</td>" in html
    assert dataset.preview() == html
