"""Splits on a real six-speaker corpus: named splits are never silently empty, speakers can be
assigned explicitly, and the report says what a split of one speaker or narrow-band audio means.

The corpus is a NeMo JSONL manifest over real synthesized audio (six speakers of the tiny test
corpus, chosen so that the default ``speaker_hash`` split puts every one of them in train), read
through the ``CorpusDataset`` adapter. Two of its files are resampled to 8 kHz.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import scipy.signal
import soundfile as sf

from speech_repro.pipelines.data_processing.nodes import speaker_bucket

from .conftest import copy_project, run_kedro
from .test_bad_input import CATALOG, RUNS_LOG, _artifacts, _expect_failure, _run, _write_manifest

SPLIT_PARAMETERS = "conf/test/parameters_splits.yml"
NARROW_BAND_RATE = 8000  # bandwidth 4 kHz, below features.f_max (7.6 kHz)


def _assigned(dev: list[str], test: list[str]) -> str:
    return (
        "split:\n  method: assigned\n  assigned:\n"
        f"    dev: {json.dumps(dev)}\n    test: {json.dumps(test)}\n"
    )


@pytest.fixture(scope="module")
def speakers(corpus_dir, params) -> list[str]:
    """Six speakers that the default salted hash (test fractions) all puts into train."""
    plan = pd.read_csv(corpus_dir / "plan.csv", keep_default_na=False)
    train_edge = params["split"]["fractions"]["train"]
    chosen = [
        s
        for s in sorted(plan["speaker"].unique())
        if speaker_bucket(s, params["split"]["salt"]) < train_edge
    ][:6]
    assert len(chosen) == 6
    return chosen


@pytest.fixture(scope="module")
def project(tmp_path_factory, corpus_dir, speakers) -> Path:
    """A project reading the six-speaker JSONL corpus, after one successful assigned run."""
    project = copy_project(tmp_path_factory.mktemp("splits") / "speech-repro")
    catalog = project / "conf/test/catalog.yml"
    catalog.write_text(CATALOG + catalog.read_text()[catalog.read_text().index("split_lock:") :])
    plan = pd.read_csv(corpus_dir / "plan.csv", keep_default_na=False)
    plan = plan[plan["speaker"].isin(speakers)]
    corpus = project / "corpus"
    entries = []
    for row in plan.itertuples():
        (corpus / row.speaker).mkdir(parents=True, exist_ok=True)
        target = corpus / row.speaker / f"{row.utt_id}.wav"
        shutil.copy(corpus_dir / "wav" / row.speaker / f"{row.utt_id}.wav", target)
        entries.append(
            {"audio_filepath": f"{row.speaker}/{row.utt_id}.wav", "text": row.transcript,
             "speaker": row.speaker}
        )  # fmt: skip
    for entry in entries[-2:]:  # two utterances of a train speaker, as telephone audio
        path = corpus / entry["audio_filepath"]
        wave, rate = sf.read(path)
        sf.write(path, scipy.signal.resample_poly(wave, NARROW_BAND_RATE, rate), NARROW_BAND_RATE,
                 subtype="PCM_16")  # fmt: skip
    _write_manifest(corpus, entries)
    shutil.copytree(corpus, project / "pristine-corpus")
    (project / SPLIT_PARAMETERS).write_text(_assigned(speakers[:2], speakers[2:3]))
    _run(project)
    return project


@pytest.fixture
def case(project):
    """Yields the project; afterwards restores its split parameters and corpus, and checks that
    no existing artifact changed and that nothing was trained or locked."""
    before = _artifacts(project)
    logged = (project / RUNS_LOG).read_bytes()
    original = (project / SPLIT_PARAMETERS).read_text()
    yield project
    (project / SPLIT_PARAMETERS).write_text(original)
    shutil.rmtree(project / "corpus")
    shutil.copytree(project / "pristine-corpus", project / "corpus")
    assert (project / RUNS_LOG).read_bytes().startswith(logged), "runs log rewritten"
    after = _artifacts(project)
    assert {k: v for k, v in after.items() if k in before} == before, "an existing artifact changed"
    new = set(after) - set(before)
    assert not any("06_models" in k or "split_lock" in k for k in new), new


def _split_parameters(project: Path, text: str) -> None:
    (project / SPLIT_PARAMETERS).write_text(text)


def _latest(project: Path, dataset: str) -> Path:
    folder = project / dataset
    return max(folder.iterdir()) / folder.name


def test_assigned_split_puts_the_listed_speakers_in_dev_and_test(project, speakers):
    lock = pd.read_csv(project / "data/03_primary/test/split_lock.csv", keep_default_na=False)
    by_speaker = lock.groupby("speaker")["split"].first().to_dict()
    assert by_speaker == {
        **dict.fromkeys(speakers[:2], "dev"),
        speakers[2]: "test",
        **dict.fromkeys(speakers[3:], "train"),
    }


def test_one_test_speaker_has_an_undefined_interval_and_is_flagged(project, speakers):
    summary = json.loads(_latest(project, "data/08_reporting/wer_summary.json").read_text())
    test = summary["splits"]["test"]
    assert test["ci_low"] is None and test["ci_high"] is None
    assert test["ci_undefined"] == "1 speaker"
    assert summary["splits"]["dev"]["ci_low"] is not None  # two speakers: an interval
    flags = json.loads(_latest(project, "data/08_reporting/review_flags.json").read_text())
    assert flags["splits"]["sizes"]["test"]["speakers"] == 1
    assert flags["splits"]["too_few_speakers"] == ["test"]
    report = _latest(project, "data/08_reporting/run_report.md").read_text()
    assert "| test |" in report and "undefined: 1 speaker" in report
    assert "Nothing flagged" not in report
    assert "split test has 1 speaker: its WER has no confidence interval" in report


def test_narrow_band_audio_is_flagged_in_the_report_and_the_record(project):
    flags = json.loads(_latest(project, "data/08_reporting/review_flags.json").read_text())
    assert flags["bandwidth"] == {
        "f_max": 7600.0,
        "utterances": 2,
        "sample_rates": {str(NARROW_BAND_RATE): 2},
        "empty_mel_bands": {str(NARROW_BAND_RATE): 7},
        "n_mels": 40,
    }
    attention = (
        "2 utterance(s) at 8000 Hz have no content above 4000 Hz, below features.f_max 7600 Hz:"
        " the top 7 of 40 mel bands lie entirely above 4000 Hz and hold only the log floor"
        " (upsampling adds no bandwidth)"
    )
    assert attention in flags["attention"]
    assert attention in _latest(project, "data/08_reporting/run_report.md").read_text()
    run_id = _latest(project, "data/08_reporting/review_flags.json").parent.name
    record = json.loads((project / "data/09_runs" / run_id / "record.json").read_text())
    assert record["ledger"]["review_flags"]["node"] == "review_flags"
    shown = run_kedro(project, "repro", "show", run_id).stdout
    assert "review       needs attention" in shown
    assert f"  - {attention}" in shown


def test_every_speaker_hashed_into_train_stops_the_run_naming_the_empty_splits(case):
    _split_parameters(case, "split:\n  method: speaker_hash\n")
    _expect_failure(
        case,
        "split 'dev' is empty: 6 speakers, all hashed into train",
        "split 'test' is empty",
        "use split.method: assigned with explicit speaker lists, or change split.salt/fractions",
    )


def test_assigned_lists_are_checked_against_the_corpus(case, speakers):
    """An unknown speaker, a speaker in two lists and an empty list, all named in one error."""
    _split_parameters(
        case,
        "split:\n  method: assigned\n  assigned:\n"
        f"    dev: [{speakers[0]}, nobody-m9]\n    test: [{speakers[0]}, {speakers[1]}]\n",
    )
    _expect_failure(case, "unknown speaker 'nobody-m9' in split.assigned.dev",
                    f"speaker '{speakers[0]}' is listed in several splits (dev, test)")  # fmt: skip
    _split_parameters(case, _assigned(speakers[:2], []))
    _expect_failure(case, "split 'test' is empty: split.assigned.test lists no speaker")
