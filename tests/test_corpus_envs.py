"""The shipped conf/<format> examples run the experiment on a small corpus in each real layout."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from .conftest import copy_project

TINY = """
training: {epochs: 1, batch_size: 8}
model: {conv_channels: 16, rnn_hidden: 16, rnn_layers: 1}
determinism: {threads: 1}
split: {fractions: {train: 0.6, dev: 0.2, test: 0.2}}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("envs") / "speech-repro")


def _utterances(corpus_dir: Path) -> list[dict]:
    plan = pd.read_csv(corpus_dir / "plan.csv", keep_default_na=False)
    return [
        {
            "utt_id": r.utt_id,
            "speaker": r.speaker,
            "text": r.transcript,
            "wav": corpus_dir / "wav" / r.speaker / f"{r.utt_id}.wav",
        }
        for r in plan.itertuples()
    ]


def _librispeech(root: Path, utts: list[dict]) -> None:
    speakers = {s: 100 + i for i, s in enumerate(sorted({u["speaker"] for u in utts}))}
    lines: dict[Path, list[str]] = {}
    for n, u in enumerate(utts):
        spk = speakers[u["speaker"]]
        folder = root / str(spk) / "7"
        folder.mkdir(parents=True, exist_ok=True)
        utt_id = f"{spk}-7-{n:04d}"
        wave, rate = sf.read(u["wav"])
        sf.write(folder / f"{utt_id}.flac", wave, rate)
        lines.setdefault(folder / f"{spk}-7.trans.txt", []).append(f"{utt_id} {u['text'].upper()}")
    for path, content in lines.items():
        path.write_text("\n".join(content) + "\n")


def _kaldi(root: Path, utts: list[dict]) -> None:
    root.mkdir(parents=True)
    (root / "wav.scp").write_text("".join(f"{u['utt_id']} {u['wav'].name}\n" for u in utts))
    (root / "text").write_text("".join(f"{u['utt_id']} {u['text']}\n" for u in utts))
    (root / "utt2spk").write_text("".join(f"{u['utt_id']} {u['speaker']}\n" for u in utts))
    for u in utts:
        (root / u["wav"].name).write_bytes(u["wav"].read_bytes())


def _jsonl(root: Path, utts: list[dict]) -> None:
    (root / "audio").mkdir(parents=True)
    for u in utts:
        (root / "audio" / u["wav"].name).write_bytes(u["wav"].read_bytes())
    entries = [
        {"audio_filepath": f"audio/{u['wav'].name}", "text": u["text"], "speaker": u["speaker"]}
        for u in utts
    ]
    (root / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


def _common_voice(root: Path, utts: list[dict]) -> None:
    (root / "clips").mkdir(parents=True)
    rows = ["client_id\tpath\tsentence\tup_votes"]
    mp3 = "MP3" in sf.available_formats()
    for u in utts:
        wave, rate = sf.read(u["wav"], dtype="float32")
        wave48 = AF.resample(torch.from_numpy(wave), rate, 48000).numpy()  # Common Voice is 48 kHz
        name = f"common_voice_en_{u['utt_id']}.{'mp3' if mp3 else 'flac'}"
        sf.write(root / "clips" / name, wave48, 48000)
        rows.append(f"{u['speaker']}\t{name}\t{u['text'].capitalize()}.\t2")
    (root / "train.tsv").write_text("\n".join(rows) + "\n")


LAYOUTS = {
    "librispeech": (_librispeech, "librispeech"),
    "kaldi": (_kaldi, "kaldi"),
    "jsonl": (_jsonl, "jsonl"),
    "common_voice": (_common_voice, "common_voice"),
}


@pytest.mark.parametrize("env", list(LAYOUTS))
def test_example_environment_runs_the_experiment(project, corpus_dir, env):
    build, folder = LAYOUTS[env]
    build(project / "data/01_raw" / folder, _utterances(corpus_dir))
    (project / "conf" / env / "parameters_tiny.yml").write_text(TINY)
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env) as session:
        session.run(pipeline_names=["experiment"])
    lock = pd.read_csv(project / "data/03_primary" / env / "split_lock.csv")
    assert len(lock) == 64 and lock.groupby("speaker")["split"].nunique().max() == 1
    metrics = sorted((project / "data/08_reporting/metrics.json").glob("*/metrics.json"))[-1]
    assert set(json.loads(metrics.read_text())["splits"]) == {"train", "dev", "test"}
    manifest = pd.read_parquet(
        sorted((project / "data/02_intermediate/manifest.parquet").glob("*/*"))[-1]
    )
    expected_rate = 48000 if env == "common_voice" else 16000
    assert set(manifest["sample_rate"]) == {expected_rate}  # resampled to 16 kHz by the policy
