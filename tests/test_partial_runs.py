"""Partial runs (``--pipelines``, ``--from-nodes``) read the upstream data of their own configuration.

Two configurations that share catalog paths (two environments, or two corpora under one
environment) write their versioned outputs side by side; a partial run loads the versions the
newest run of its own environment and upstream parameters saved, never the other
configuration's newer "latest", and stops before any node when only the other's exist.

Configuration A is ``--env test``; B is ``--env test --params corpus.seed=7``: another corpus with
the same utterance ids, so reading the other's data would not even crash, only be wrong.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kedro_repro.record import load_run

from .conftest import copy_project, kedro_unchecked, run_kedro

A = ("--env", "test")
B = ("--env", "test", "--params", "corpus.seed=7")
UPSTREAM = ("features", "manifest", "norm_stats")  # versioned inputs of training and evaluation
TRAINING = ("--pipelines", "training")
FROM_TRANSCRIBE = ("--from-nodes", "transcribe")


def _project(destination: Path) -> Path:
    """A project copy whose test split lock is one per corpus seed.

    The split lock is a lock, not a versioned output: one file that a run on another corpus is
    refused against. Keyed by the seed here, both corpora can run in full in one checkout.
    """
    project = copy_project(destination)
    catalog = project / "conf/test/catalog.yml"
    text = catalog.read_text()
    shared = "filepath: data/03_primary/test/split_lock.csv"
    assert shared in text
    per_seed = "filepath: data/03_primary/test/split_lock-${runtime_params:corpus.seed, base}.csv"
    catalog.write_text(text.replace(shared, per_seed))
    # kedro_repro's INFO lines shown, as conf/logging.yml shows speech_repro's
    logging = project / "conf/logging.yml"
    shown = "  speech_repro:\n    level: INFO\n"
    assert shown in logging.read_text()
    logging.write_text(
        logging.read_text().replace(shown, shown + "  kedro_repro:\n    level: INFO\n")
    )
    return project


def _runs(project: Path) -> list[str]:
    return sorted(p.parent.name for p in (project / "data/09_runs").glob("*/record.json"))


def _run(project: Path, *args: str) -> tuple[str, subprocess.CompletedProcess]:
    """``kedro run <args>``; the new run's id and the finished process."""
    known = set(_runs(project))
    result = run_kedro(project, "run", *args)
    (run_id,) = set(_runs(project)) - known
    return run_id, result


def _input_runs(project: Path, run_id: str) -> dict[str, str | None]:
    record = load_run(project / "data/09_runs", run_id)
    return {name: record.inputs[name].version for name in UPSTREAM if name in record.inputs}


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory) -> tuple[Path, str, str]:
    """A full run of A, then a full run of B, in one checkout."""
    project = _project(tmp_path_factory.mktemp("partial") / "speech-repro")
    a, _ = _run(project, *A)
    b, _ = _run(project, *B)
    return project, a, b


def test_a_partial_run_reads_its_own_configurations_versions_not_the_newest(two_corpora):
    project, a, b = two_corpora
    newest = max(p.name for p in (project / "data/04_feature/logmel").iterdir())
    assert newest == b  # Kedro's default "latest" would load B's features
    partial, result = _run(project, *A, *TRAINING)
    assert _input_runs(project, partial) == dict.fromkeys(UPSTREAM, a), result.stderr
    record = load_run(project / "data/09_runs", partial)
    assert record.status == "complete"
    assert {record.inputs[name].run for name in UPSTREAM} == {a}
    # one line per chosen input, naming the run
    for name in UPSTREAM:
        assert f"Input {name}: version {a}, saved by run {a}" in result.stderr, result.stderr


def test_interleaved_partial_runs_of_two_corpora_each_read_their_own(two_corpora):
    project, a, b = two_corpora
    a_training, _ = _run(project, *A, *TRAINING)
    b_training, _ = _run(project, *B, *TRAINING)
    assert _input_runs(project, a_training) == dict.fromkeys(UPSTREAM, a)
    assert _input_runs(project, b_training) == dict.fromkeys(UPSTREAM, b)
    # evaluation alone: each reads the model its own corpus' newest training run saved
    a_eval, _ = _run(project, *A, *FROM_TRANSCRIBE)
    b_eval, _ = _run(project, *B, *FROM_TRANSCRIBE)
    for run_id, upstream, model in ((a_eval, a, a_training), (b_eval, b, b_training)):
        record = load_run(project / "data/09_runs", run_id)
        assert _input_runs(project, run_id) == dict.fromkeys(UPSTREAM, upstream)
        assert record.inputs["model"].version == model


@pytest.fixture(scope="module")
def only_b(tmp_path_factory) -> tuple[Path, str]:
    """A checkout where only configuration B has run."""
    project = _project(tmp_path_factory.mktemp("only-b") / "speech-repro")
    b, _ = _run(project, *B)
    return project, b


def _refused(project: Path, *args: str) -> str:
    known = _runs(project)
    result = kedro_unchecked(project, "run", *args)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Running node" not in output, output  # stopped before any node
    assert _runs(project) == known, output  # and wrote no record
    return output


def test_a_partial_run_without_data_of_its_configuration_stops_naming_the_run_and_parameter(
    only_b,
):
    project, b = only_b
    output = _refused(project, *A, *TRAINING)
    assert "input 'features'" in output, output
    assert f"run {b}" in output, output
    assert "parameter corpus.seed = 7" in output, output


def test_the_default_environment_never_reads_the_test_environments_data(only_b):
    """The reported crash: ``kedro run --env test``, then ``kedro run --pipelines training``."""
    project, b = only_b
    output = _refused(project, *TRAINING)
    assert "input 'features'" in output and f"run {b}" in output, output
    assert "environment 'test'" in output, output
