"""Replay verification: bitwise on an unchanged run, the right divergent node, data refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speech_repro.repro.hashing import file_digest
from speech_repro.repro.record import list_records
from speech_repro.repro.session import RUNS_DIR

from .conftest import copy_project, run_kedro


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("verify") / "speech-repro")
    run_kedro(project, "run", "--env", "test")
    return project


@pytest.fixture(scope="module")
def run_id(project) -> str:
    return list_records(project / RUNS_DIR)[-1]["run_id"]


def _files(project: Path) -> dict[str, str]:
    return {
        str(p.relative_to(project)): file_digest(p)
        for p in sorted((project / "data").rglob("*"))
        if p.is_file() and ".cache" not in p.parts  # the digest cache may warm up, nothing else
    }


def _verify(project: Path, *args: str) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "repro", "verify", *args],
        cwd=project, env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}, capture_output=True, text=True,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def _json(output: str) -> dict:
    """The JSON document in a command's output (logs may follow it)."""
    return json.JSONDecoder().raw_decode(output[output.index("{") :])[0]


def test_an_unchanged_run_verifies_bitwise_without_touching_the_original(project, run_id, tmp_path):
    before = _files(project)
    code, output = _verify(
        project, run_id, "--require", "bitwise", "--json", "--workdir", str(tmp_path / "replay")
    )
    assert code == 0, output
    result = _json(output)
    assert result["overall"] == "bitwise"
    assert {d["dataset"] for d in result["datasets"]} >= {
        "raw_corpus",
        "features",
        "model",
        "metrics",
    }
    assert all(d["grade"] == "bitwise" for d in result["datasets"])
    assert _files(project) == before  # nothing in the original project changed or appeared


def test_a_changed_parameter_diverges_at_the_node_that_reads_it(project, run_id, tmp_path):
    code, output = _verify(
        project, run_id, "--params", "training.seed=7", "--json", "--workdir", str(tmp_path / "r")
    )
    assert code == 1
    result = _json(output)
    grades = {d["dataset"]: d["grade"] for d in result["datasets"]}
    assert result["first_divergent_node"] == "train_model"
    assert grades["features"] == grades["norm_stats"] == "bitwise"
    assert grades["model"] == "diverged"
    assert result["explanation"]["parameters"] == {"training.seed": [1234, 7]}
    assert result["metric_test"] is not None and "ci_low" in result["metric_test"]


def test_until_replays_data_preparation_only(project, run_id, tmp_path):
    code, output = _verify(
        project, run_id, "--until", "fit_normalization", "--workdir", str(tmp_path / "u")
    )
    assert code == 0, output
    assert "bitwise    norm_stats" in output and " model " not in output
    assert "verdict: bitwise" in output


def test_a_modified_corpus_file_is_refused_before_any_replay(project, run_id, tmp_path):
    victim = sorted((project / "data/01_raw/digits-test/wav").glob("*/*.wav"))[3]
    original = victim.read_bytes()
    try:
        data = bytearray(original)
        data[-2] ^= 0x01
        victim.write_bytes(bytes(data))
        code, output = _verify(project, run_id, "--workdir", str(tmp_path / "never"))
    finally:
        victim.write_bytes(original)
    assert code != 0
    assert "not replayed" in output and victim.name in output
    assert not (tmp_path / "never").exists()
