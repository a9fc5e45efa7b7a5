"""The whole project on the tiny ``test`` configuration, in a temporary copy, in real processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jiwer
import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from kedro_repro.hashing import file_digest, tensors_digest
from kedro_repro.state import load_state

from .conftest import copy_project, run_kedro

PIPELINES = [
    "embedded_corpus",
    "data_processing",
    "training",
    "evaluation",
    "reporting",
    "experiment",
    "seed_sweep",
    "transcription",
    "seeds",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("e2e") / "speech-repro")


@pytest.fixture(scope="module")
def two_runs(project) -> list[str]:
    """Two ``kedro run --env test`` in fresh processes; returns their logs."""
    return [
        (lambda r: r.stdout + r.stderr)(run_kedro(project, "run", "--env", "test"))
        for _ in range(2)
    ]


def _versions(project: Path, dataset: str) -> list[Path]:
    return sorted(p / Path(dataset).name for p in (project / dataset).iterdir())


def test_two_fresh_runs_give_identical_bits_and_keep_both(project, two_runs):
    models = _versions(project, "data/06_models/model.safetensors")
    assert len(models) == 2  # the second run wrote beside the first, not over it
    first, second = (load_state(m)["weights"] for m in models)
    assert tensors_digest(first) == tensors_digest(second)
    for dataset in [
        "data/08_reporting/metrics.json",
        "data/08_reporting/training_log.csv",
        "data/07_model_output/hypotheses.csv",
        "data/08_reporting/wer_per_speaker.csv",
    ]:
        a, b = _versions(project, dataset)
        assert file_digest(a) == file_digest(b), dataset
    assert len(_versions(project, "data/06_models/checkpoints")) == 2


def test_second_run_reuses_the_synthesized_corpus(two_runs):
    assert "64 of 64 utterances to render" in two_runs[0]
    assert "0 of 64 utterances to render" in two_runs[1]


def test_metrics_cover_every_split_and_speaker(project, two_runs):
    metrics = json.loads(_versions(project, "data/08_reporting/metrics.json")[-1].read_text())
    hypotheses = pd.read_csv(
        _versions(project, "data/07_model_output/hypotheses.csv")[-1], keep_default_na=False
    )
    assert set(metrics["splits"]) == {"train", "dev", "test"}
    for split, rates in metrics["splits"].items():
        # Against the split's own rows of hypotheses.csv: words counted here, CER by jiwer.
        rows = hypotheses[hypotheses["split"] == split]
        assert rates["utterances"] == len(rows), split
        assert rates["reference_words"] == sum(len(r.split()) for r in rows["reference"]), split
        hypothesis_words = sum(len(h.split()) for h in rows["hypothesis"])
        assert hypothesis_words == rates["hits"] + rates["substitutions"] + rates["insertions"]
        errors = rates["substitutions"] + rates["deletions"] + rates["insertions"]
        assert rates["wer"] == pytest.approx(errors / rates["reference_words"], rel=1e-12), split
        cer = jiwer.cer(rows["reference"].tolist(), rows["hypothesis"].tolist())
        assert rates["cer"] == pytest.approx(cer, rel=1e-12), split
    per_speaker = pd.read_csv(_versions(project, "data/08_reporting/wer_per_speaker.csv")[-1])
    lock = pd.read_csv(project / "data/03_primary/test/split_lock.csv")
    assert set(per_speaker["speaker"]) == set(lock["speaker"])
    assert set(hypotheses["utt_id"]) == set(lock["utt_id"])


def test_in_process_kedro_session_reproduces_the_cli_runs(project, two_runs):
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session:
        session.run()
    models = _versions(project, "data/06_models/model.safetensors")
    assert len(models) == 3
    digests = {tensors_digest(load_state(m)["weights"]) for m in models}
    assert len(digests) == 1


def test_registry_lists_the_pipelines_without_telemetry_prompt(project):
    env = {
        k: v for k, v in os.environ.items() if k not in {"KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK"}
    }
    result = run_kedro(project, "registry", "list", env=env)
    for name in [*PIPELINES, "__default__"]:
        assert name in result.stdout
    assert "telemetry" not in (result.stdout + result.stderr).lower()


def test_viz_build_holds_every_pipeline(project, two_runs):
    run_kedro(project, "viz", "build")
    main = json.loads((project / "build/api/main").read_text())
    assert {p["id"] for p in main["pipelines"]} == {*PIPELINES, "__default__"}
    node_names = {n["name"] for n in main["nodes"] if n["type"] == "task"}
    assert {"plan_corpus", "train_model", "transcribe", "score"} <= node_names
    for pipeline in PIPELINES:
        assert (project / "build/api/pipelines" / pipeline).is_file()
