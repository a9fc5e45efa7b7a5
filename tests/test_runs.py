"""Run bundles: the record, re-running from a past run, diffs, kill + resume, concurrent runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from speech_repro.cli import run_summary
from speech_repro.repro.hashing import tensors_digest
from speech_repro.repro.record import list_records
from speech_repro.repro.session import RUNS_DIR
from speech_repro.repro.state import load_state

from .conftest import copy_project, run_kedro

SECRETS = {
    "KEDRO_API_KEY": "sk-live-planted-1",
    "HF_TOKEN": "hf-planted-2",
    "PYTHON_DB_PASSWORD": "planted-3",
    "KEDRO_TRACKING_URI": "https://alice:planted-4@tracker.example/x",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("runs") / "speech-repro")


def _runs(project: Path) -> list[dict]:
    """What `kedro repro runs --json` prints (read in-process: a CLI call costs seconds)."""
    return [run_summary(r) for r in list_records(project / RUNS_DIR)]


def _record(project: Path, run_id: str) -> dict:
    return json.loads((project / "data/09_runs" / run_id / "record.json").read_text())


def _model_digest(project: Path, run_id: str) -> str:
    return tensors_digest(
        load_state(project / "data/06_models/model.safetensors" / run_id / "model.safetensors")[
            "weights"
        ]
    )


@pytest.fixture(scope="module")
def first_run(project) -> str:
    """One complete run with secrets planted in its environment."""
    run_kedro(
        project,
        "run",
        "--env",
        "test",
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", **SECRETS},
    )
    return _runs(project)[-1]["run_id"]


def test_record_holds_every_section_and_no_secret(project, first_run):
    record = _record(project, first_run)
    assert record["schema_version"] == 2 and record["status"] == "complete"
    for section in (
        "command",
        "parameters",
        "seeds",
        "environment",
        "ledger",
        "nodes",
        "metrics",
        "data_snapshot",
    ):
        assert record[section], section
    assert record["parameters"]["design"].keys() >= {"text", "determinism"}
    assert "training" in record["parameters"]["tunable"]
    assert record["seeds"] == {
        "corpus.seed": 20261125,
        "training.seed": 1234,
        "reporting.bootstrap.seed": 0,
    }
    assert record["ledger"]["model"]["version"] == first_run
    assert record["environment"]["torch"]["num_threads"] == 1  # the test env's policy
    assert set(record["nodes"]) >= {"train_model", "transcribe", "score"}
    assert record["environment"]["environment_variables"]["KEDRO_API_KEY"] == "***redacted***"
    every_file = b"".join(p.read_bytes() for p in (project / "data").rglob("*") if p.is_file())
    for value in SECRETS.values():
        assert value.encode() not in every_file, value


def test_runs_lists_the_run_with_its_metrics(project, first_run):
    assert json.loads(run_kedro(project, "repro", "runs", "--json").stdout) == _runs(project)
    row = next(r for r in _runs(project) if r["run_id"] == first_run)
    assert row["status"] == "complete" and row["seed"] == 1234
    assert row["wer"] == _record(project, first_run)["metrics"]["splits"]["test"]["wer"]
    shown = run_kedro(project, "repro", "show", first_run).stdout.splitlines()
    assert sum(line.startswith("metrics ") for line in shown) == 3  # one line per split


def test_re_evaluation_from_a_past_run_reproduces_its_metrics_exactly(project, first_run):
    run_kedro(project, "repro", "run", "--from-run", first_run, "--pipelines", "evaluation")
    rerun = _runs(project)[-1]["run_id"]
    old, new = _record(project, first_run), _record(project, rerun)
    assert new["inputs"]["model"]["version"] == first_run
    assert new["metrics"] == old["metrics"]
    assert new["ledger"]["hypotheses"]["digest"] == old["ledger"]["hypotheses"]["digest"]


def test_diff_groups_what_changed(project, first_run):
    run_kedro(project, "run", "--env", "test", "--params", "training.seed=99")
    other = _runs(project)[-1]["run_id"]
    result = json.loads(run_kedro(project, "repro", "diff", first_run, other, "--json").stdout)
    assert result["parameters"] == {"training.seed": [1234, 99]}
    assert result["data"] == {"recorded": True, "added": [], "removed": [], "changed": []}
    assert "model" in result["ledger"] and "features" not in result["ledger"]
    assert result["environment"]["packages"] == {}
    text = run_kedro(project, "repro", "diff", first_run, other).stdout
    assert "training.seed: 1234 -> 99" in text and "[environment/packages] identical" in text


LONGER_TRAINING = ("  epochs: 2\n", "  epochs: 12\n  checkpoint_every_steps: 1\n")


@pytest.fixture(scope="module")
def kill_project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("kill") / "speech-repro")
    parameters = project / "conf/test/parameters.yml"
    assert LONGER_TRAINING[0] in parameters.read_text()
    parameters.write_text(parameters.read_text().replace(*LONGER_TRAINING))
    run_kedro(project, "run", "--env", "test")  # the uninterrupted reference
    return project


def _kill_at_step(
    project: Path,
    step: int,
    *args: str,
    while_alive: Callable[[Path, str, int], None] | None = None,
) -> str:
    """Start a run, SIGKILL it once a checkpoint at or after ``step`` exists; returns its id.

    ``while_alive(project, run id, pid)`` is called before the kill, with the run stopped
    (SIGSTOP) at that step: alive but not advancing, so the kill still comes at that step.
    """
    before = set(os.listdir(project / "data/09_runs"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kedro", "run", "--env", "test", *args],
        cwd=project, env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        stores = list((project / "data/06_models/checkpoints").glob("*/checkpoints"))
        new = [s for s in stores if s.parent.name not in before]
        steps = [int(p.name[5:14]) for s in new for p in s.glob("step-*.safetensors")]
        if steps and max(steps) >= step:
            if while_alive is not None:
                proc.send_signal(signal.SIGSTOP)
                (running,) = set(os.listdir(project / "data/09_runs")) - before
                while_alive(project, running, proc.pid)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    (run_id,) = set(os.listdir(project / "data/09_runs")) - before
    return run_id


def _resume_is_refused(project: Path, run_id: str, pid: int) -> None:
    """`repro resume` of a run whose process is alive starts nothing and names the process."""
    record = _record(project, run_id)
    assert record["status"] == "running"
    assert record["process"]["pid"] == pid and record["process"]["start_time"]
    bundles = set(os.listdir(project / RUNS_DIR))
    refused = subprocess.run(
        [sys.executable, "-m", "kedro", "repro", "resume", run_id],
        cwd=project, env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert f"run {run_id} is still running" in output and f"pid {pid}" in output, output
    assert set(os.listdir(project / RUNS_DIR)) == bundles  # no second run started


STEPS = [2, 23, 47]  # of 60: first epoch, mid-epoch, later epoch


@pytest.mark.parametrize("step", STEPS)
def test_a_run_killed_at_any_step_resumes_to_identical_bits(kill_project, step):
    reference = next(
        r["run_id"]
        for r in _runs(kill_project)
        if r["status"] == "complete" and not _record(kill_project, r["run_id"]).get("resumed_from")
    )
    killed = _kill_at_step(
        kill_project, step, while_alive=_resume_is_refused if step == STEPS[0] else None
    )
    assert next(r for r in _runs(kill_project) if r["run_id"] == killed)["status"] == "crashed"
    run_kedro(kill_project, "repro", "resume", killed)
    resumed = _runs(kill_project)[-1]
    assert (
        resumed["status"] == "resumed"
        and _record(kill_project, resumed["run_id"])["resumed_from"] == killed
    )
    assert _model_digest(kill_project, resumed["run_id"]) == _model_digest(kill_project, reference)


DATA_PARALLEL = ("--params", "training.distributed.world_size=2")


def test_a_data_parallel_run_killed_mid_epoch_resumes_to_identical_bits(kill_project):
    """torchrun with 2 gloo ranks: SIGKILL of `kedro run` takes the ranks down with it; resume
    continues with the recorded world size from rank 0's checkpoint, every rank's RNG state
    restored (2 steps per epoch here, so step 7 is mid-epoch)."""
    run_kedro(kill_project, "run", "--env", "test", *DATA_PARALLEL)
    reference = _runs(kill_project)[-1]["run_id"]
    killed = _kill_at_step(kill_project, 7, *DATA_PARALLEL)
    run_kedro(kill_project, "repro", "resume", killed)
    resumed = _runs(kill_project)[-1]
    assert _record(kill_project, resumed["run_id"])["resumed_from"] == killed
    assert _model_digest(kill_project, resumed["run_id"]) == _model_digest(kill_project, reference)
    single = next(r["run_id"] for r in _runs(kill_project) if r["status"] == "complete")
    assert _model_digest(kill_project, reference) != _model_digest(kill_project, single)


def test_two_runs_started_together_leave_two_complete_bundles(tmp_path):
    project = copy_project(tmp_path / "speech-repro")
    run_kedro(project, "run", "--env", "test", "--pipelines", "embedded_corpus")  # corpus once
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "kedro", "run", "--env", "test"], cwd=project, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.stderr.read()
    complete = [
        r
        for r in _runs(project)
        if r["status"] == "complete" and "train_model" in _record(project, r["run_id"])["nodes"]
    ]
    assert len(complete) == 2 and complete[0]["run_id"] != complete[1]["run_id"]
    assert _model_digest(project, complete[0]["run_id"]) == _model_digest(
        project, complete[1]["run_id"]
    )
