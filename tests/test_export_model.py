"""``kedro repro export-model``: a run's model with its front end and vocabulary as one TorchScript
or ONNX file, loaded back from plain Python and compared with the PyTorch model on the run's own
audio. One real ``kedro run --env test``, real ``kedro`` processes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
import torch

from kedro_repro.record import list_records
from kedro_repro.session import RUNS_DIR

from .conftest import copy_project, kedro_unchecked, ledger_file, run_kedro


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("export_model") / "speech-repro")
    run_kedro(project, "run", "--env", "test")
    return project


@pytest.fixture(scope="module")
def run_id(project) -> str:
    return list_records(project / RUNS_DIR)[-1].run_id


@pytest.fixture(scope="module")
def utterances(project, run_id) -> list[tuple[str, torch.Tensor, str]]:
    """(id, waveform read with soundfile alone, the run's own hypothesis) of every utterance."""
    path = ledger_file(project, run_id, "hypotheses", "hypotheses.csv")
    hypotheses = pd.read_csv(path, keep_default_na=False, dtype=str).set_index("utt_id")
    wavs = {p.stem: p for p in (project / "data/01_raw/digits-test").glob("*/wav/*/*.wav")}
    return [
        (u, torch.from_numpy(sf.read(wavs[u], dtype="float32")[0]), hypotheses.at[u, "hypothesis"])
        for u in sorted(hypotheses.index)
    ]


@pytest.fixture(scope="module")
def pytorch(project, run_id):
    """The run's model as PyTorch runs it (the Recognizer: batched, packed GRU)."""
    from speech_repro.trained_model import load_trained, recognizer_of

    return recognizer_of(load_trained(project, run_id))


def _greedy(log_probs, vocabulary: list[str]) -> str:
    """Plain-Python greedy CTC decoding, as docs/using_a_trained_model.md shows it."""
    best = log_probs.argmax(-1).tolist()
    kept = [s for i, s in enumerate(best) if s != 0 and (i == 0 or s != best[i - 1])]
    return " ".join("".join(vocabulary[s] for s in kept).split())


def _parity(name: str, run_model, pytorch, utterances, vocabulary) -> float:
    worst = 0.0
    for utt_id, waveform, hypothesis in utterances:
        exported = torch.as_tensor(run_model(waveform))
        log_probs, lengths = pytorch.log_probs([waveform])
        reference = log_probs[0, : int(lengths[0])]
        assert exported.shape == reference.shape, utt_id
        worst = max(worst, float((exported - reference).abs().max()))
        assert _greedy(exported, vocabulary) == hypothesis, utt_id
    print(f"\n{name}: max |log-prob difference| {worst:.3g} over {len(utterances)} utterances")
    return worst


def test_torchscript_export_matches_pytorch_and_decodes_the_runs_hypotheses(
    project, run_id, utterances, pytorch, tmp_path
):
    path = tmp_path / "model.pt"
    result = run_kedro(
        project, "repro", "export-model", run_id, "--format", "torchscript", "--output", str(path)
    )
    assert result.stdout.split() == [str(path)]
    files = {"vocabulary.json": "", "config.json": ""}
    model = torch.jit.load(str(path), _extra_files=files)
    vocabulary = json.loads(files["vocabulary.json"])
    config = json.loads(files["config.json"])
    assert vocabulary == pytorch.vocabulary.symbols and config["run_id"] == run_id
    assert config["input"]["sample_rate"] == 16000
    with torch.inference_mode():
        worst = _parity("torchscript", model, pytorch, utterances, vocabulary)
    assert worst < 1e-4


def test_onnx_export_matches_pytorch_and_decodes_the_runs_hypotheses(
    project, run_id, utterances, pytorch, tmp_path
):
    onnxruntime = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "model.onnx"
    result = run_kedro(
        project, "repro", "export-model", run_id, "--format", "onnx", "--output", str(path)
    )
    sidecar = tmp_path / "model.onnx.json"
    assert result.stdout.split() == [str(path), str(sidecar)]
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    vocabulary = json.loads(metadata["vocabulary"])
    assert vocabulary == json.loads(sidecar.read_text())["vocabulary"] == pytorch.vocabulary.symbols
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(waveform: torch.Tensor):
        return session.run(None, {"waveform": waveform.numpy()})[0]

    worst = _parity("onnx", run, pytorch, utterances, vocabulary)
    assert worst < 1e-4


def test_export_of_a_tampered_model_is_refused_naming_the_model(project, run_id, tmp_path):
    model = ledger_file(project, run_id, "model", "model.safetensors")
    original = model.read_bytes()
    flipped = bytearray(original)
    flipped[-3] ^= 0x01
    model.write_bytes(bytes(flipped))
    try:
        result = kedro_unchecked(project, "repro", "export-model", run_id, "--format",
                                 "torchscript", "--output", str(tmp_path / "m.pt"))  # fmt: skip
    finally:
        model.write_bytes(original)
    assert result.returncode != 0
    assert f"run {run_id}: model: {model.relative_to(project)} was modified" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "m.pt").exists()


def test_the_provenance_export_is_still_export(project, run_id):
    document = json.loads(run_kedro(project, "repro", "export", run_id).stdout)
    assert "activity" in document and "entity" in document
