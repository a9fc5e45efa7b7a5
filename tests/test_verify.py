"""Replay verification: bitwise on an unchanged run, the right divergent node, data refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kedro_repro.hashing import file_digest
from kedro_repro.record import list_records
from kedro_repro.session import RUNS_DIR

from .conftest import copy_project, run_kedro

# What the nodes up to fit_normalization read from the corpus and save.
DATA_PREPARATION = [
    "raw_corpus",
    "manifest",
    "split_lock",
    "features",
    "feature_stats",
    "norm_stats",
    "drift_report",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("verify") / "speech-repro")
    run_kedro(project, "run", "--env", "test")
    return project


@pytest.fixture(scope="module")
def run_id(project) -> str:
    return list_records(project / RUNS_DIR)[-1].run_id


def _files(project: Path) -> dict[str, str]:
    return {
        str(p.relative_to(project)): file_digest(p)
        for p in sorted((project / "data").rglob("*"))
        if p.is_file()
        and ".cache" not in p.parts  # caches may warm up (digests, verify's notes), nothing else
    }


def _verify(project: Path, *args: str, tmpdir: Path | None = None) -> tuple[int, str]:
    """``kedro repro verify <args>``; ``tmpdir`` is where its temporary replay folder goes."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "repro", "verify", *args],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def _workdir(output: str, state: str) -> Path:
    """The replay folder that verify's ``replay workdir <state>: <path>`` line names."""
    (line,) = [line for line in output.splitlines() if line.startswith(f"replay workdir {state}:")]
    return Path(line.split(": ", 1)[1].split(" (")[0])


def _json(output: str) -> dict:
    """The JSON document in a command's output (logs may follow it)."""
    return json.JSONDecoder().raw_decode(output[output.index("{") :])[0]


def test_an_unchanged_run_verifies_bitwise_without_touching_the_original(project, run_id, tmp_path):
    before = _files(project)
    code, output = _verify(
        project, run_id, "--require", "bitwise", "--json", "--keep", tmpdir=tmp_path
    )
    assert code == 0, output
    result = _json(output)
    assert result["overall"] == "bitwise"
    kept = _workdir(output, "kept")  # --keep: the replay's project stays for inspection
    assert kept.parent == tmp_path and (kept / RUNS_DIR).is_dir()
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
        project, run_id, "--params", "training.seed=7", "--json", tmpdir=tmp_path
    )
    assert code == 1
    result = _json(output)
    kept = _workdir(output, "kept for inspection")  # a failed verify keeps its replay
    assert kept.parent == tmp_path and kept.is_dir() and str(kept) == result["workdir"]
    grades = {d["dataset"]: d["grade"] for d in result["datasets"]}
    assert result["first_divergent_node"] == "train_model"
    assert grades["features"] == grades["norm_stats"] == "bitwise"
    assert grades["model"] == "diverged"
    assert result["explanation"]["parameters"] == {"training.seed": [1234, 7]}
    assert result["metric_test"] is not None and "ci_low" in result["metric_test"]


def test_until_replays_data_preparation_only(project, run_id, tmp_path):
    code, output = _verify(
        project, run_id, "--until", "fit_normalization", "--json", tmpdir=tmp_path
    )
    assert code == 0, output
    result = _json(output)
    assert result["overall"] == "bitwise"
    # Exactly what the nodes up to fit_normalization save: nothing of training or later.
    assert {d["dataset"]: d["grade"] for d in result["datasets"]} == dict.fromkeys(
        DATA_PREPARATION, "bitwise"
    )
    removed = _workdir(output, "removed")  # a successful verify cleans up after itself
    assert removed.parent == tmp_path and not removed.exists()
    assert list(tmp_path.glob("verify-*")) == []  # (torch may leave caches of its own there)


def test_a_workdir_that_is_not_empty_is_refused(project, run_id, tmp_path):
    (tmp_path / "mine.txt").write_text("mine")
    code, output = _verify(project, run_id, "--workdir", str(tmp_path))
    assert code != 0
    assert f"not replaying in {tmp_path}: it exists and is not an empty folder" in output
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_a_modified_corpus_file_is_refused_before_any_replay(project, run_id, tmp_path):
    victim = sorted((project / "data/01_raw/digits-test").glob("*/wav/*/*.wav"))[3]
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
