"""Run reports on the tiny real corpus: review flags catch planted problems, figures are stable."""

from __future__ import annotations

import base64
import io

import pandas as pd
import pytest
from kedro.io import DatasetError, Version

from kedro_repro.datasets import JSONDataset, MarkdownReportDataset, TableDataset
from kedro_repro.determinism import DeterminismPolicy
from kedro_repro.report import IDENTITY_MARKER, Report
from speech_repro.asr.features import FeatureConfig
from speech_repro.parameters import ReportingParams, SeedSweepParams, TextParams
from speech_repro.pipelines.evaluation.nodes import score
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


LOG = pd.DataFrame({"step": [1, 2, 3, 4], "loss": [3.0, 2.0, 1.5, 1.2]})


def _report(hypotheses, summary, flags, params, training_log=LOG):
    metrics, _, per_speaker = score(hypotheses, TextParams(**params["text"]))
    return rp.write_run_report(
        metrics, summary, flags, hypotheses, per_speaker, training_log, ReportingParams(
            confidence_level=0.95, bootstrap={"replicates": 200, "seed": 1}
        ),
    )  # fmt: skip


def test_run_report_lists_every_split_with_its_interval(flags, params):
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
    report = _report(hypotheses, summary, flags, params).markdown
    assert "| dev | 33.33% | [" in report and "| test | 0.00% | [0.00%, 0.00%]" in report
    assert "90 % CI" in report and "over speakers" in report


def test_run_report_prints_an_undefined_interval_for_a_split_of_one_speaker(flags, params):
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
    report = _report(hypotheses, summary, flags, params).markdown
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


def _hypotheses() -> pd.DataFrame:
    """Train, dev and test utterances with known edits."""
    return pd.DataFrame(
        {
            "utt_id": ["t1", "t2", "d1", "d2", "d3", "e1", "e2"],
            "split": ["train", "train", "dev", "dev", "dev", "test", "test"],
            "speaker": ["trainer", "trainer", "a", "a", "b", "c", "c"],
            "reference": ["one", "two", "one two three", "four five", "six", "seven", "nine oh"],
            "hypothesis": ["two", "", "one too three four", "four five", "sex", "seven", "nine"],
        }
    )


def test_learning_curve_draws_dev_wer_where_the_log_has_it(tmp_path):
    log = pd.DataFrame(
        {"step": [1, 2, 3, 4, 5, 6], "loss": [3.0, 2.5, 2.0, 1.6, 1.4, 1.3],
         "dev_wer": [float("nan"), 0.9, float("nan"), 0.6, float("nan"), 0.4]}
    )  # fmt: skip
    stored = TableDataset(
        filepath=str(tmp_path / "training_log.csv"),
        load_args={"keep_default_na": False, "na_filter": False},  # as conf/base/catalog.yml
    )
    stored.save(log)
    figure = rp.plot_run_learning_curve(stored.load())  # NaN comes back as empty text
    loss_axes, dev_axes = figure.axes
    (dev_line,) = dev_axes.get_lines()
    assert list(dev_line.get_xdata()) == [2, 4, 6]
    assert list(dev_line.get_ydata()) == [0.9, 0.6, 0.4]
    assert "dev WER" in loss_axes.get_title()
    assert [t.get_text() for t in loss_axes.get_legend().get_texts()] == [
        "training loss",
        "dev WER",
    ]

    without = rp.plot_run_learning_curve(log.drop(columns="dev_wer"))
    assert len(without.axes) == 1 and "no dev WER" in without.axes[0].get_title()


def test_speaker_figure_shows_held_out_speakers_worst_first_with_wilson_intervals(params):
    _, _, per_speaker = score(_hypotheses(), TextParams(**params["text"]))
    reporting = ReportingParams(confidence_level=0.95, bootstrap={"replicates": 200, "seed": 1})
    speakers = rp.speakers_with_intervals(per_speaker, reporting)
    assert list(zip(speakers["split"], speakers["speaker"], strict=True)) == [
        ("dev", "b"),
        ("dev", "a"),
        ("test", "c"),
    ]  # b: 1 error in 1 word; a: 2 in 5; c: 1 in 3
    a = speakers.set_index("speaker").loc["a"]
    assert (a["errors"], a["reference_words"]) == (2, 5)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((0.1176, 0.7693), abs=1e-4)  # Wilson 2/5
    figure = rp.plot_speaker_wer(per_speaker, reporting)
    labels = [t.get_text() for axes in figure.axes for t in axes.get_yticklabels()]
    assert labels == ["a (5 words)", "b (1 words)", "c (3 words)"]  # bottom-up: worst on top
    assert [axes.get_ylabel() for axes in figure.axes] == ["dev", "test"]
    assert "Wilson" in figure.axes[0].get_title()


def test_worst_utterances_are_aligned_word_under_word():
    worst = rp.worst_utterances(_hypotheses(), count=3)
    assert [w["utt_id"] for w in worst] == ["d3", "d1", "e2"]  # WER 1/1, 2/3, 1/2
    d1 = next(w for w in rp.worst_utterances(_hypotheses()) if w["utt_id"] == "d1")
    assert d1["alignment"] == [
        "REF: one two three ****",
        "HYP: one too three four",
        "         S         I",
    ]
    e2 = next(w for w in rp.worst_utterances(_hypotheses()) if w["utt_id"] == "e2")
    assert e2["alignment"] == ["REF: nine oh", "HYP: nine **", "          D"]
    assert all(w["split"] != "train" for w in rp.worst_utterances(_hypotheses()))


def test_character_confusions_count_substitutions_deletions_insertions_held_out_only():
    found = rp.character_confusions(_hypotheses())
    assert found["substitutions"][("i", "e")] == 1  # six -> sex
    assert found["substitutions"][("w", "o")] == 1  # two -> too
    assert ("o", "t") not in found["substitutions"]  # train's one -> two is not held out
    assert found["deletions"]["o"] >= 1 and found["insertions"]["f"] == 1
    table = "\n".join(rp.confusions_section(_hypotheses()))
    assert "| `i` → `e` | 1 |" in table and "`␣`" in table


def test_normalisation_prints_as_rules_in_the_order_they_apply():
    from speech_repro.asr.text import TextNormalization

    rules = rp.normalization_rules(TextNormalization(keep_characters="'-", unicode_form="NFC"))
    assert rules[:2] == ["Unicode NFC", "lower-case"]
    assert rules[2].startswith("punctuation removed except `'`, `-`")
    plain = rp.normalization_rules(TextNormalization(lowercase=False, remove_punctuation=False))
    assert plain == ["Unicode NFKC", "runs of whitespace collapsed to one space, ends trimmed"]


def test_run_report_holds_figures_worst_utterances_and_readable_normalisation(flags, params):
    hypotheses = _hypotheses()
    summary = rp.wer_intervals(
        hypotheses, ReportingParams(confidence_level=0.95, bootstrap={"replicates": 200, "seed": 1})
    )
    log = LOG.assign(dev_wer=[float("nan"), 0.5, float("nan"), 0.25])
    report = _report(hypotheses, summary, flags, params, training_log=log)
    assert set(report.figures) == {"learning_curve.png", "speaker_wer.png"}
    text = report.markdown
    assert "![Learning curve](learning_curve.png)" in text
    assert "![WER per speaker (dev, test)](speaker_wer.png)" in text
    assert "no dev WER" not in text
    assert "## 5 worst utterances (dev, test)" in text and "REF: one two three ****" in text
    assert "| dev | b | 100.00% | [" in text and "trainer" not in text
    assert "{'lowercase'" not in text and "2. lower-case" in text
    assert text.index(IDENTITY_MARKER) < text.index("Nothing flagged") < text.index("Error rates")


def test_report_dataset_writes_figures_beside_and_embeds_them_in_the_page(tmp_path):
    from matplotlib.figure import Figure

    def figure(colour: str) -> Figure:
        fig = Figure(figsize=(2, 1))
        fig.add_subplot().plot([0, 1], [0, 1], color=colour)
        return fig

    dataset = MarkdownReportDataset(
        filepath=str(tmp_path / "report.md"), version=Version(None, None)
    )
    assert dataset.preview() is None  # nothing saved yet: kedro-viz shows no preview, no warning
    markdown = f"# Title\n\n{IDENTITY_MARKER}\n\n![A plot](plot.png)\n"
    dataset.save(Report(markdown, {"plot.png": figure("red")}))
    folder = next((tmp_path / "report.md").iterdir())
    assert (folder / "report.md").read_text() == markdown == dataset.load()
    png = (folder / "plot.png").read_bytes()
    page = (folder / "report.html").read_text()
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert page.index("<h1>Title</h1>") < page.index("run-identity") < page.index("<img")
    assert "not recorded: saved outside a recorded run" in page
    assert f"not yet verified: kedro repro verify {folder.name}" in page
    assert dataset.preview() == page
    same, other = (
        Report(markdown, {"plot.png": figure("red")}),
        Report(markdown, {"plot.png": figure("blue")}),
    )
    assert Report(markdown, {"plot.png": figure("red")}).content_digest() == same.content_digest()
    assert other.content_digest() != same.content_digest()
    with pytest.raises(DatasetError, match=r"plain \.png file names"):
        dataset.save(Report(markdown, {"../escape.png": figure("red")}))


def test_datasets_not_yet_saved_preview_nothing(tmp_path):
    from kedro_repro.figures import FigureDataset

    never = Version(None, None)
    for dataset in (
        FigureDataset(filepath=str(tmp_path / "f.png"), version=never),
        TableDataset(filepath=str(tmp_path / "t.csv"), version=never),
        JSONDataset(filepath=str(tmp_path / "j.json"), version=never),
    ):
        assert dataset.preview() is None
    figure = FigureDataset(filepath=str(tmp_path / "g.png"), save_args={"format": "png"})
    figure.save(rp.plot_run_learning_curve(LOG))
    assert base64.b64decode(figure.preview()).startswith(b"\x89PNG")
