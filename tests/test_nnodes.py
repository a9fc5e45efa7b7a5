"""Data-parallel training on two machines: two torchrun node processes on 127.0.0.1.

The Kedro run's torchrun hosts the c10d rendezvous; the test starts the second machine's
torchrun with the command the node logs (:func:`join_command`), in an environment of its own.
One rank per machine, gloo on CPU, one thread each: the same world as one machine with two
processes, and the test requires the same bits. Four launches in all: a 2-machine run, the same
on one machine, a 2-machine run whose second machine is SIGKILLed mid-epoch, and its resume.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.hashing import tensors_digest
from kedro_repro.ledger import content_digest
from kedro_repro.record import is_run_id
from kedro_repro.state import load_state
from speech_repro.parameters import DistributedParams
from speech_repro.pipelines.training.distributed import SPEC_FILE, join_command

from .conftest import copy_project, kedro_unchecked, run_kedro

RUNS = "data/09_runs"
# 4 utterances a batch: 4 steps per epoch with 2 ranks, 8 in all; a checkpoint after each.
WORLD = "training.distributed.world_size=2,training.batch_size=4,training.checkpoint_every_steps=1"
MARK = "SPEECH_REPRO_NODE_UNDER_TEST"  # set on the joining machine only (recorded by name)
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_machines(port: int, workdir: Path) -> DistributedParams:
    return DistributedParams(
        world_size=2, nnodes=2, rendezvous=f"127.0.0.1:{port}", workdir=str(workdir)
    )


def _params(distributed: DistributedParams) -> str:
    return (
        f"{WORLD},training.distributed.nnodes=2,"
        f"training.distributed.rendezvous={distributed.rendezvous},"
        f"training.distributed.workdir={distributed.workdir}"
    )


def _runs(project: Path) -> set[str]:
    """The run bundles' ids (the folder also holds the runs' log and its lock)."""
    runs = project / RUNS
    return {name for name in os.listdir(runs) if is_run_id(name)} if runs.exists() else set()


def _record(project: Path, run_id: str) -> dict:
    return json.loads((project / RUNS / run_id / "record.json").read_text())


def _model_digest(project: Path, run_id: str) -> str:
    path = project / "data/06_models/model.safetensors" / run_id / "model.safetensors"
    return tensors_digest(load_state(path)["weights"])


def _log(project: Path, run_id: str) -> str:
    return (
        project / "data/08_reporting/training_log.csv" / run_id / "training_log.csv"
    ).read_text()


def _checkpoints(project: Path, run_id: str) -> CheckpointStore:
    return CheckpointStore(project / "data/06_models/checkpoints" / run_id / "checkpoints")


def _joined(record: dict) -> dict:
    """The worker entry of the machine the test started (its environment carries MARK)."""
    [entry] = [w for w in record["workers"] if MARK in w["environment"]["environment_variables"]]
    return entry


def _with_second_machine(
    project: Path,
    args: list[str],
    distributed: DistributedParams,
    log: Path,
    kill_at: int = 0,
    checkout: Path | None = None,
) -> tuple[str, int, str]:
    """Run ``kedro <args>`` (this machine, rank of the rendezvous host) and, once it has written
    its working directory, the other machine's torchrun, in ``checkout`` (default: ``project``).
    ``kill_at``: SIGKILL the other machine (its torchrun and rank) once the run's checkpoint at
    that step exists.

    Returns the new run's id, the Kedro process's exit status and its stderr.
    """
    before, started = _runs(project), time.time()
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"}
    with open(log, "w") as err:
        head = subprocess.Popen(
            [sys.executable, "-m", "kedro", *args], cwd=project, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    spec = Path(distributed.workdir) / SPEC_FILE
    deadline = time.monotonic() + TIMEOUT_S
    while not (spec.exists() and spec.stat().st_mtime >= started) and head.poll() is None:
        assert time.monotonic() < deadline, "the run never wrote its working directory"
        time.sleep(0.05)
    command = join_command(distributed, Path(distributed.workdir), 1, python=sys.executable)
    checkout = project if checkout is None else checkout
    joiner = subprocess.Popen(
        command, cwd=checkout,
        env={**env, "PYTHONPATH": str(checkout / "src"), MARK: "1"},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the whole machine can be killed
    )  # fmt: skip
    try:
        if kill_at:
            while not (new := _runs(project) - before) and head.poll() is None:
                time.sleep(0.01)
            store = _checkpoints(project, next(iter(new)))
            while head.poll() is None and not any(s >= kill_at for s in store.steps()):
                assert time.monotonic() < deadline, "no checkpoint to kill at"
                time.sleep(0.005)
            os.killpg(joiner.pid, signal.SIGKILL)
        status = head.wait(timeout=TIMEOUT_S)
        joiner.wait(timeout=TIMEOUT_S)
    finally:
        for proc in (head, joiner):
            if proc.poll() is None:
                proc.kill()
    [run_id] = _runs(project) - before  # one bundle, written by the Kedro machine alone
    return run_id, status, log.read_text()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy whose runs keep every checkpoint, so that every step can be compared."""
    project = copy_project(tmp_path_factory.mktemp("nnodes") / "speech-repro")
    with open(project / "conf/test/catalog.yml", "a") as catalog:
        catalog.write(
            "\ntraining_checkpoints:\n  type: kedro_repro.datasets.CheckpointStoreDataset\n"
            "  filepath: data/06_models/checkpoints\n  versioned: true\n"
        )
    return project


@pytest.fixture(scope="module")
def two_machines(project, tmp_path_factory) -> str:
    """One uninterrupted `kedro run --env test` on 2 machines x 1 process."""
    distributed = _two_machines(_free_port(), tmp_path_factory.mktemp("shared"))
    run_id, status, err = _with_second_machine(
        project,
        ["run", "--env", "test", "--params", _params(distributed)],
        distributed,
        tmp_path_factory.mktemp("logs") / "two.log",
    )
    assert status == 0, err
    return run_id


@pytest.fixture(scope="module")
def one_machine(project) -> str:
    """The same run on 1 machine x 2 processes."""
    before = _runs(project)
    run_kedro(project, "run", "--env", "test", "--params", WORLD)
    [run_id] = _runs(project) - before
    return run_id


def test_two_machines_compute_the_bits_of_one_machine_with_two_processes(
    project, two_machines, one_machine
):
    assert _model_digest(project, two_machines) == _model_digest(project, one_machine)
    assert _log(project, two_machines) == _log(project, one_machine)
    ours, theirs = _checkpoints(project, two_machines), _checkpoints(project, one_machine)
    steps = len(_log(project, one_machine).splitlines()) - 1
    assert ours.steps() == theirs.steps() == list(range(1, steps + 1))
    for step in ours.steps():  # weights, optimizer and both ranks' RNG states, every step
        assert content_digest(ours.load(step)) == content_digest(theirs.load(step))


def test_the_record_describes_each_machine_and_its_environment(project, two_machines, one_machine):
    record = _record(project, two_machines)
    distributed = record["parameters"]["tunable"]["training"]["distributed"]
    assert distributed["nnodes"] == 2 and distributed["world_size"] == 2
    workers = sorted(record["workers"], key=lambda w: w["details"]["node_rank"])
    assert [w["name"] for w in workers] == ["node-0", "node-1"]
    assert [w["details"]["ranks"] for w in workers] == [[0], [1]]
    for worker in workers:
        details = worker["details"]
        assert details["nnodes"] == 2 and details["world_size"] == 2
        assert details["nproc_per_node"] == 1 and details["threads"] == 1
        assert details["rendezvous"] == distributed["rendezvous"]
        assert details["backend"] == "gloo"
        environment = worker["environment"]
        assert environment["lock_files"] == record["environment"]["lock_files"]
        assert environment["git"]["commit"] == record["environment"]["git"]["commit"]
        assert environment["determinism_env"]["OMP_NUM_THREADS"] == "1"
        assert environment["environment_variables"]["CUDA_VISIBLE_DEVICES"] == ""
    # The joining machine's own environment, not a copy of the Kedro machine's.
    joined = _joined(record)
    assert MARK not in record["environment"]["environment_variables"]
    assert [
        w for w in workers if w is not joined and MARK in w["environment"]["environment_variables"]
    ] == []
    assert len({w["process"]["pid"] for w in workers} | {record["pid"]}) == 3
    shown = run_kedro(project, "repro", "show", two_machines).stdout
    rows = [line.split() for line in shown.splitlines() if line.strip().startswith("node-")]
    assert [row[:3] for row in rows] == [
        [w["name"], w["process"]["host"], str(w["process"]["pid"])] for w in record["workers"]
    ]
    assert all("same as the run" in line for line in shown.splitlines() if "node-" in line)
    # One machine: one entry, rendezvous standalone.
    [single] = _record(project, one_machine)["workers"]
    assert single["details"]["nnodes"] == 1 and single["details"]["ranks"] == [0, 1]
    assert single["details"]["rendezvous"] == "standalone"


def test_a_killed_machine_fails_the_run_naming_it_and_resume_gives_the_same_bits(
    project, two_machines, tmp_path
):
    distributed = _two_machines(_free_port(), tmp_path / "shared")
    params = ["run", "--env", "test", "--params", _params(distributed)]
    killed, status, err = _with_second_machine(
        project, params, distributed, tmp_path / "killed.log", kill_at=1
    )
    record = _record(project, killed)
    at = max(_checkpoints(project, killed).steps())
    steps = len(_log(project, two_machines).splitlines()) - 1
    assert status != 0 and record["status"] == "crashed", err
    assert at % (steps // 2) != 0, f"killed at step {at} of {steps}: not mid-epoch"
    joined = _joined(record)
    node, host = joined["details"]["node_rank"], joined["process"]["host"]
    message = f"rank {node} on node {node} ({host}, pid "
    assert message in record["error"] and "stopped without reporting an error" in record["error"]
    assert message in err  # the console says it too
    # Until the kill, the same bits as the uninterrupted run: run to run, every checkpoint.
    reference = _checkpoints(project, two_machines)
    for step in _checkpoints(project, killed).steps():
        assert content_digest(_checkpoints(project, killed).load(step)) == content_digest(
            reference.load(step)
        )
    resumed, status, err = _with_second_machine(
        project, ["repro", "resume", killed], distributed, tmp_path / "resumed.log"
    )
    assert status == 0, err
    assert _record(project, resumed)["resumed_from"] == killed
    assert _model_digest(project, resumed) == _model_digest(project, two_machines)
    assert _log(project, resumed) == _log(project, two_machines)
    assert _checkpoints(project, resumed).steps() == list(range(at + 1, steps + 1))
    assert sorted(os.listdir(distributed.workdir)) == []  # a finished run leaves nothing there


def test_a_machine_that_never_joins_fails_the_run_naming_the_rendezvous(
    project, two_machines, tmp_path
):
    distributed = _two_machines(_free_port(), tmp_path / "shared")
    before = _runs(project)
    # The training pipeline alone, on the features of the runs above: only the wait is tested.
    result = kedro_unchecked(
        project, "run", "--env", "test", "--pipelines", "training",
        "--params", f"{_params(distributed)},training.distributed.join_timeout_s=3",
    )  # fmt: skip
    [run_id] = _runs(project) - before
    record = _record(project, run_id)
    expected = f"not all 2 machines joined the rendezvous at {distributed.rendezvous} within 3 s"
    assert result.returncode != 0 and record["status"] == "crashed"
    assert expected in record["error"] and expected in result.stderr
    assert record["workers"] == [] and "model" not in record["ledger"]


def test_a_machine_with_other_lock_files_is_refused_before_training(
    project, two_machines, tmp_path
):
    other = copy_project(tmp_path / "other-checkout")  # another clone, its uv.lock changed
    with open(other / "uv.lock", "a") as lock:
        lock.write("# another environment\n")
    distributed = _two_machines(_free_port(), tmp_path / "shared")
    args = ["run", "--env", "test", "--pipelines", "training", "--params", _params(distributed)]
    run_id, status, err = _with_second_machine(
        project, args, distributed, tmp_path / "other.log", checkout=other
    )
    record = _record(project, run_id)
    assert status != 0 and record["status"] == "crashed"
    assert "runs other code than node" in record["error"] and "lock files" in record["error"]
    assert "runs other code than node" in err
    assert "model" not in record["ledger"] and not _checkpoints(project, run_id).steps()
    assert len(record["workers"]) == 2  # both recorded: the record shows what differed


def test_the_parameters_refuse_a_world_that_does_not_fit_the_machines():
    with pytest.raises(ValueError, match="does not split evenly over nnodes 2"):
        DistributedParams(world_size=3, nnodes=2, rendezvous="h:1", workdir="/w")
    with pytest.raises(ValueError, match="needs rendezvous"):
        DistributedParams(world_size=2, nnodes=2, workdir="/w")
    assert (
        DistributedParams(world_size=4, nnodes=2, rendezvous="h:1", workdir="/w").nproc_per_node
        == 2
    )
