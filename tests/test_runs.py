"""Run bundles: the record, re-running from a past run, diffs, kill + resume, concurrent runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.hashing import tensors_digest
from kedro_repro.record import list_records, load_run, status
from kedro_repro.session import RUNS_DIR
from kedro_repro.state import load_state

from .conftest import copy_project, kedro_unchecked, run_kedro

SECRETS = {
    "KEDRO_API_KEY": "sk-live-planted-1",
    "HF_TOKEN": "hf-planted-2",
    "PYTHON_DB_PASSWORD": "planted-3",
    "KEDRO_TRACKING_URI": "https://alice:planted-4@tracker.example/x",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("runs") / "speech-repro")


def _latest(project: Path) -> str:
    """The id of the newest run (records read in-process: a CLI call costs seconds)."""
    return list_records(project / RUNS_DIR)[-1].run_id


def _record(project: Path, run_id: str) -> dict:
    return json.loads((project / "data/09_runs" / run_id / "record.json").read_text())


def _status(project: Path, run_id: str) -> str:
    """complete, resumed, crashed or running, as the record and the process table say."""
    return status(load_run(project / RUNS_DIR, run_id))


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
    return _latest(project)


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
    rows = json.loads(run_kedro(project, "repro", "runs", "--json").stdout)
    bundles = sorted(p.name for p in (project / RUNS_DIR).iterdir() if p.is_dir())
    assert [r["run_id"] for r in rows] == bundles  # one row per bundle, oldest first
    row = next(r for r in rows if r["run_id"] == first_run)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, check=True, capture_output=True, text=True
    ).stdout.strip()
    test_split = _record(project, first_run)["metrics"]["splits"]["test"]
    assert row["status"] == "complete" and row["seed"] == 1234
    assert row["pipelines"] == "__default__"
    assert row["git_commit"] == commit[:10]  # the copy's one commit, its tree clean
    assert (row["test_wer"], row["test_cer"]) == (test_split["wer"], test_split["cer"])
    shown = run_kedro(project, "repro", "show", first_run).stdout.splitlines()
    metric_lines = [line.split()[1] for line in shown if line.startswith("metrics ")]
    assert metric_lines == ["dev", "test", "train", "model"]  # one line per split, then selection


HEAVY = ("torch", "scipy", "pandas")


@pytest.mark.parametrize("command", ["runs", "show", "diff", "check", "export", "tag"])
def test_commands_that_read_records_import_no_torch_scipy_or_pandas(project, first_run, command):
    """A real ``kedro repro <command>``: Python's import log names no heavy library (settings.py,
    the plugin and the command all stay light)."""
    arguments = {"runs": [], "tag": [], "diff": [first_run, "latest"]}.get(command, [first_run])
    result = run_kedro(
        project,
        "repro",
        command,
        *arguments,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "PYTHONPROFILEIMPORTTIME": "1"},
    )
    imported = {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert f"kedro_repro.cli.{command}" in imported, result.stderr[-2000:]  # the log is read
    assert not {m for m in imported if m.split(".")[0] in HEAVY}, command


def test_re_evaluation_from_a_past_run_reproduces_its_metrics_exactly(project, first_run):
    run_kedro(project, "repro", "run", "--from-run", first_run, "--pipelines", "evaluation")
    rerun = _latest(project)
    old, new = _record(project, first_run), _record(project, rerun)
    assert new["inputs"]["model"]["version"] == first_run
    assert new["metrics"] == old["metrics"]
    assert new["ledger"]["hypotheses"]["digest"] == old["ledger"]["hypotheses"]["digest"]


def test_re_running_from_a_run_that_lacks_an_input_is_refused_naming_it(project, first_run):
    # A data-only run holds no model: evaluating "from" it must not quietly take the newest model
    # and selection of another run (first_run's) as if they were its own.
    run_kedro(project, "run", "--env", "test", "--pipelines", "data_processing")
    data_only = _latest(project)
    before = len(list_records(project / RUNS_DIR))
    result = kedro_unchecked(
        project, "repro", "run", "--from-run", data_only, "--pipelines", "evaluation"
    )
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert f"run {data_only} recorded no version of model, model_selection" in said, said[-1500:]
    assert "Traceback" not in said
    assert len(list_records(project / RUNS_DIR)) == before  # nothing ran


def test_diff_groups_what_changed(project, first_run):
    run_kedro(project, "run", "--env", "test", "--params", "training.seed=99")
    other = _latest(project)
    result = json.loads(run_kedro(project, "repro", "diff", first_run, other, "--json").stdout)
    assert result["parameters"] == {"training.seed": [1234, 99]}
    assert result["data"] == {"recorded": True, "added": [], "removed": [], "changed": []}
    assert "model" in result["ledger"] and "features" not in result["ledger"]
    assert result["environment"]["packages"] == {}
    text = run_kedro(project, "repro", "diff", first_run, other).stdout
    assert "training.seed: 1234 -> 99" in text and "[environment/packages] identical" in text


def _steps_per_epoch(project: Path, run_id: str) -> int:
    """Optimizer steps in the first epoch of ``run_id``'s training log."""
    log = pd.read_csv(project / "data/08_reporting/training_log.csv" / run_id / "training_log.csv")
    return int((log["epoch"] == 0).sum())


def _checkpoints(project: Path, run_id: str) -> CheckpointStore:
    """The checkpoint store of ``run_id``."""
    return CheckpointStore(project / "data/06_models/checkpoints" / run_id / "checkpoints")


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc: torchrun and its ranks under `kedro run`)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_at_step(
    project: Path,
    step: int,
    *args: str,
    while_alive: Callable[[Path, str, int], None] | None = None,
) -> tuple[str, int]:
    """Start a run, SIGKILL it once a checkpoint at or after ``step`` exists.

    Returns the run's id and the step of its newest checkpoint, the one `repro resume` continues
    from. ``while_alive(project, run id, pid)`` is called before the kill, with the run stopped
    (SIGSTOP) at that step: alive but not advancing, so the kill still comes at that step. Only
    the `kedro run` process is killed; the test waits until every process it started (torchrun
    and its ranks) has ended with it.
    """
    before = set(os.listdir(project / RUNS_DIR))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kedro", "run", "--env", "test", *args],
        cwd=project, env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    children: set[int] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        stores = list((project / "data/06_models/checkpoints").glob("*/checkpoints"))
        new = [s for s in stores if s.parent.name not in before]
        steps = [int(p.name[5:14]) for s in new for p in s.glob("step-*.safetensors")]
        if steps and max(steps) >= step:
            proc.send_signal(signal.SIGSTOP)
            children = _descendants(proc.pid)
            if while_alive is not None:
                (running,) = set(os.listdir(project / RUNS_DIR)) - before
                while_alive(project, running, proc.pid)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    stop = time.monotonic() + 60
    while any(_alive(child) for child in children) and time.monotonic() < stop:
        time.sleep(0.05)
    assert not [c for c in children if _alive(c)], "processes of the killed run live on"
    (run_id,) = set(os.listdir(project / RUNS_DIR)) - before
    return run_id, _checkpoints(project, run_id).steps()[-1]


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


def _resume(project: Path, killed: str, from_step: int) -> str:
    """`repro resume` the killed run; checks it continued from ``from_step``; the new run's id."""
    assert _status(project, killed) == "crashed"
    result = run_kedro(project, "repro", "resume", killed)
    continued = re.findall(r"Continuing from the checkpoint at step (\d+)", result.stderr)
    assert continued == [str(from_step)], result.stderr
    resumed = _latest(project)
    assert _status(project, resumed) == "resumed"
    assert _record(project, resumed)["resumed_from"] == killed
    return resumed


# One real SIGKILL per way a run continues. The third, a run killed between two outputs of one
# node, is tests/test_trust.py::test_a_run_killed_between_two_outputs_of_a_node_reruns_that_node.
# The test configuration has 5 steps per epoch and 2 epochs; by default a checkpoint is written
# at the end of each epoch only.


def test_a_run_killed_mid_epoch_resumes_to_identical_bits(project, first_run):
    """Restored RNG state and the batches of the epoch not yet trained on (every-step checkpoints;
    killed in the first epoch); while the run is alive, resume refuses it."""
    killed, at = _kill_at_step(
        project, 2, "--params", "training.checkpoint_every_steps=1", while_alive=_resume_is_refused
    )
    assert at % _steps_per_epoch(project, first_run) != 0, f"step {at} ends an epoch"
    resumed = _resume(project, killed, at)
    assert _model_digest(project, resumed) == _model_digest(project, first_run)


def test_a_run_killed_after_an_epoch_resumes_to_identical_bits(project, first_run):
    """A fresh epoch after the checkpoint: reseeded as an uninterrupted run reseeds it."""
    per_epoch = _steps_per_epoch(project, first_run)
    killed, at = _kill_at_step(project, per_epoch)
    assert at == per_epoch  # the first epoch's checkpoint; the second ends the training
    resumed = _resume(project, killed, at)
    assert _model_digest(project, resumed) == _model_digest(project, first_run)


DATA_PARALLEL = (
    "--params",
    # 4 utterances a batch: 5 steps per epoch with 2 ranks (at 8, only 2), room to kill mid-epoch
    "training.distributed.world_size=2,training.batch_size=4,training.checkpoint_every_steps=1",
)


def test_a_data_parallel_run_killed_mid_epoch_resumes_to_identical_bits(project, first_run):
    """torchrun with 2 gloo ranks: SIGKILL of `kedro run` takes the ranks down with it; resume
    continues with the recorded world size from rank 0's checkpoint, every rank's RNG state
    restored."""
    run_kedro(project, "run", "--env", "test", *DATA_PARALLEL)
    reference = _latest(project)
    killed, at = _kill_at_step(project, 1, *DATA_PARALLEL)
    assert at % _steps_per_epoch(project, reference) != 0, f"step {at} ends an epoch"
    state = _checkpoints(project, killed).load(at)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # written by two ranks
    resumed = _resume(project, killed, at)
    assert _model_digest(project, resumed) == _model_digest(project, reference)


def test_two_runs_started_together_leave_two_complete_bundles(project, first_run):
    before = set(os.listdir(project / RUNS_DIR))
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "kedro", "run", "--env", "test"], cwd=project, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.stderr.read()
    new = sorted(set(os.listdir(project / RUNS_DIR)) - before)
    assert len(new) == 2 and [_status(project, run) for run in new] == ["complete"] * 2
    assert [_model_digest(project, run) for run in new] == [_model_digest(project, first_run)] * 2
