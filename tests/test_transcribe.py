"""Using what a run trained: ``kedro repro transcribe`` and the ``transcription`` pipeline decode
new audio exactly as the run decoded its own. One real ``kedro run --env test``, real WAVs, real
``kedro`` processes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from kedro_repro.record import list_records
from kedro_repro.session import RUNS_DIR
from kedro_repro.shards import ShardedTensors

from .conftest import copy_project, kedro_unchecked, ledger_file, run_kedro


def _record(project: Path, run_id: str) -> dict:
    return json.loads((project / RUNS_DIR / run_id / "record.json").read_text())


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("transcribe") / "speech-repro")
    run_kedro(project, "run", "--env", "test")
    return project


@pytest.fixture(scope="module")
def run_id(project) -> str:
    return list_records(project / RUNS_DIR)[-1].run_id


@pytest.fixture(scope="module")
def hypotheses(project, run_id) -> pd.DataFrame:
    """The run's own hypotheses (its ``hypotheses`` dataset), indexed by utterance."""
    path = ledger_file(project, run_id, "hypotheses", "hypotheses.csv")
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    return frame.set_index("utt_id")


@pytest.fixture(scope="module")
def wavs(project) -> dict[str, Path]:
    """Every raw WAV of the run's corpus, by utterance id (the file name)."""
    return {p.stem: p for p in (project / "data/01_raw/digits-test").glob("*/wav/*/*.wav")}


@pytest.fixture(scope="module")
def held_back(tmp_path_factory, hypotheses, wavs) -> Path:
    """The test split's raw WAVs, copied to a folder of new audio."""
    folder = tmp_path_factory.mktemp("held_back")
    test_ids = hypotheses.index[hypotheses["split"] == "test"]
    assert len(test_ids) > 0
    for utt_id in test_ids:
        shutil.copy2(wavs[utt_id], folder / f"{utt_id}.wav")
    return folder


def _output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def test_transcribe_reproduces_the_runs_own_hypotheses_of_held_back_audio(
    project, run_id, hypotheses, held_back, tmp_path
):
    out = tmp_path / "held_back.csv"
    run_kedro(project, "repro", "transcribe", run_id, str(held_back), "--output", str(out),
              "--batch-size", "3")  # fmt: skip
    decoded = pd.read_csv(out, keep_default_na=False, dtype=str).set_index("utt_id")
    expected = hypotheses.loc[hypotheses["split"] == "test", "hypothesis"]
    assert sorted(decoded.index) == sorted(expected.index)
    assert decoded["hypothesis"].to_dict() == expected.to_dict()


def test_every_utterance_of_the_corpus_decodes_as_the_run_decoded_it(
    project, run_id, hypotheses, wavs
):
    # Every split, given as files one by one, in batches that cut across speakers; stdout lines.
    files = [str(wavs[u]) for u in sorted(wavs)]
    result = run_kedro(project, "repro", "transcribe", run_id, *files, "--batch-size", "5")
    lines = dict(line.split("\t") for line in result.stdout.splitlines())
    assert lines == hypotheses["hypothesis"].to_dict()
    assert len(lines) == len(hypotheses) == 64
    assert len(set(lines.values())) > 1  # the comparison is not of one constant string


def test_a_nemo_manifest_of_segments_is_read_as_the_corpus_formats_read_it(
    project, run_id, hypotheses, held_back, tmp_path
):
    manifest = held_back / "manifest.jsonl"
    rows = [
        {"audio_filepath": wav.name, "text": "", "offset": 0.0}
        for wav in sorted(held_back.glob("*.wav"))
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        out = tmp_path / "manifest.jsonl"
        run_kedro(project, "repro", "transcribe", run_id, str(manifest), "--output", str(out))
    finally:
        manifest.unlink()
    decoded = {r["utt_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    # NeMo manifests name utterances by their file (the reader's rule), here the utterance id
    assert {u: r["hypothesis"] for u, r in decoded.items()} == hypotheses.loc[
        hypotheses["split"] == "test", "hypothesis"
    ].to_dict()


def test_features_are_computed_as_data_preparation_computed_them(project, run_id, wavs):
    from speech_repro.asr.recognizer import AudioItem
    from speech_repro.trained_model import load_trained, recognizer_of

    recognizer = recognizer_of(load_trained(project, run_id))
    store = ShardedTensors(ledger_file(project, run_id, "features", "index.json").parent)
    for utt_id in sorted(wavs)[:8]:
        waveform = recognizer.read(AudioItem(utt_id, str(wavs[utt_id])))
        normalised = (store[utt_id] - recognizer.mean) / recognizer.std
        assert torch.equal(recognizer.featurize(waveform), normalised), utt_id


def test_a_tampered_model_is_refused_naming_the_model(project, run_id, held_back):
    model = ledger_file(project, run_id, "model", "model.safetensors")
    original = model.read_bytes()
    flipped = bytearray(original)
    flipped[-3] ^= 0x01
    model.write_bytes(bytes(flipped))
    try:
        result = kedro_unchecked(project, "repro", "transcribe", run_id, str(held_back))
    finally:
        model.write_bytes(original)
    assert result.returncode != 0
    assert f"run {run_id}: model: {model.relative_to(project)} was modified" in result.stderr
    assert "Traceback" not in _output(result) and result.stdout == ""


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.wav", None, "no such file or folder"),
        ("notes.txt", b"not audio", "not audio (.wav"),
        ("broken.wav", b"RIFF not really a wave file", "1 audio file(s) cannot be read"),
        ("empty", "folder", "a folder without audio files"),
    ],
)
def test_unknown_or_unsupported_audio_is_one_clear_error(
    project, run_id, tmp_path, name, content, message
):
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    result = kedro_unchecked(project, "repro", "transcribe", run_id, str(path))
    assert result.returncode != 0
    assert message in result.stderr and str(path) in result.stderr
    assert "Traceback" not in _output(result)


def test_the_transcription_pipeline_writes_what_the_command_prints(
    project, run_id, held_back, tmp_path
):
    new_audio = project / "data/01_raw/new_audio"
    shutil.copytree(held_back, new_audio)
    command = run_kedro(project, "repro", "transcribe", run_id, str(new_audio)).stdout
    expected = dict(line.split("\t") for line in command.splitlines())

    run_kedro(project, "run", "--env", "test", "--pipelines", "transcription",
              "--load-versions", f"model:{run_id},norm_stats:{run_id}")  # fmt: skip
    pinned = list_records(project / RUNS_DIR)[-1].run_id
    run_kedro(project, "repro", "run", "--from-run", run_id, "--pipelines", "transcription")
    rerun = list_records(project / RUNS_DIR)[-1].run_id
    for transcribed in (pinned, rerun):
        record = _record(project, transcribed)
        assert record["inputs"]["model"]["version"] == run_id
        path = ledger_file(project, transcribed, "new_transcripts", "new_transcripts.csv")
        table = pd.read_csv(path, keep_default_na=False, dtype=str)
        assert dict(zip(table["utt_id"], table["hypothesis"], strict=True)) == expected
        assert list(table["audio_path"]) == [f"{u}.wav" for u in table["utt_id"]]
    assert "new_audio" in record["inputs"]  # the record names the audio it transcribed
