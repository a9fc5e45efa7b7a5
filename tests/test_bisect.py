"""``kedro repro verify --bisect`` on real runs: threads 1 vs 2 named to the step and module.

One ``kedro run --env test`` (1 torch thread), replayed with ``determinism.threads=2``: the replay
diverges, and the bisection names the first checkpoint interval, the first optimizer step and
the first module whose output or gradient differs. An honest replay reports nothing to bisect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kedro_repro.bisect import SegmentRequest, first_divergent_interval, replay_segment
from kedro_repro.record import list_records, load_run
from kedro_repro.session import RUNS_DIR

from .conftest import copy_project, run_kedro


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("bisect") / "speech-repro")
    run_kedro(project, "run", "--env", "test")
    return project


@pytest.fixture(scope="module")
def run_id(project) -> str:
    return list_records(project / RUNS_DIR)[-1].run_id


def _verify(project: Path, *args: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "repro", "verify", *args],
        cwd=project,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def two_threads(project, run_id) -> dict:
    code, out, err = _verify(
        project, run_id, "--params", "determinism.threads=2", "--bisect", "--quiet", "--json"
    )
    assert code == 1, err[-3000:]
    return json.loads(out[out.index("{") :])


def test_two_threads_diverge_and_the_bisection_names_step_1_and_the_conv_weight_gradient(
    two_threads,
):
    assert two_threads["overall"] in ("tolerance", "diverged")
    bisection = two_threads["bisection"]
    # checkpoints at steps 5 and 10 (end of each of the 2 epochs); the first already differs
    assert bisection["interval"] == [0, 5]
    # the logged loss and gradient norm of step 1 are equal, but the step's gradients are not
    assert bisection["first_divergent_step"] == 1
    assert "parameters after the step" in bisection["step_differences"]
    assert bisection["first_module_step"] == 1
    assert bisection["first_divergent_module"] == "conv"
    assert bisection["first_divergent_kind"] == "param_grad"
    modules = bisection["modules"]
    forward = [m for m in modules if m["kind"] == "output"]
    assert forward and all(m["equal"] and m["max_abs_diff"] == 0 for m in forward)
    (first,) = [m for m in modules if not m["equal"]][:1]
    assert (first["module"], first["tensor"]) == ("conv", "weight")
    assert 0 < first["max_abs_diff"] < 1e-6
    # the gradient reaching conv's output is still the same: conv's own reduction differs
    assert next(m for m in modules if (m["kind"], m["module"]) == ("output_grad", "conv"))["equal"]
    order = [m["order"] for m in modules]
    assert order == sorted(order)


def test_the_reference_replay_reproduces_the_recorded_steps(two_threads):
    bisection = two_threads["bisection"]
    # the step replays need go no further than the first step whose logged values differ
    # (its gradient norm: step 2 on some CPUs, 4 on others; the interval ends at step 5)
    logged = bisection["logged_difference_step"]
    assert logged is not None and logged > bisection["first_divergent_step"]
    assert bisection["replayed_to"] == min(logged, 5)
    assert f"the logged values first differ at step {logged}" in bisection["interval_evidence"]
    assert bisection["reference"]["threads"] == 1
    assert bisection["reference"]["logged_steps_match"] is True
    assert bisection["reference"]["reproduces"] is True
    assert bisection["candidate"]["threads"] == 2
    assert bisection["candidate"]["logged_steps_match"] is False


def test_a_replay_under_the_probe_writes_the_recorded_checkpoint_bit_for_bit(
    project, run_id, tmp_path
):
    record = load_run(project / RUNS_DIR, run_id)
    recorded = record.checkpoints["training_checkpoints"].files["step-000000005.safetensors"]
    process = replay_segment(SegmentRequest(str(project), run_id, 0, 5, str(tmp_path / "seg")))
    assert process.wait() == 0, (tmp_path / "seg" / "output.log").read_text()[-3000:]
    trace = json.loads((tmp_path / "seg" / "trace.json").read_text())
    assert trace["checkpoints"] == {"step-000000005.safetensors": recorded}
    assert sorted(trace["steps"], key=int) == ["1", "2", "3", "4", "5"]
    events = trace["steps"]["1"]["events"]
    assert [e[:2] for e in events[:2]] == [["output", "subsample"], ["output", "conv"]]
    assert {"output", "output_grad", "param_grad"} == {e[0] for e in events}


def test_the_bisection_names_the_environment_differences(two_threads):
    explanation = two_threads["bisection"]["environment"]
    assert explanation["parameters"]["determinism.threads"] == [1, 2]
    assert explanation["environment"]["threads"]["num_threads"] == [1, 2]


def test_the_report_for_people_names_step_module_and_cause(two_threads, capsys):
    from kedro_repro.bisect import Bisection, ModuleDiff
    from kedro_repro.cli.bisection import print_bisection

    fields = dict(two_threads["bisection"])
    fields["modules"] = [ModuleDiff(**m) for m in fields["modules"]]
    print_bisection(Bisection(**fields))
    out = capsys.readouterr().out
    assert "first divergent interval  steps 0 -> 5" in out
    assert "first divergent step      1:" in out
    assert "first divergent module    conv (param_grad) at step 1" in out
    assert "explained by              parameters/determinism.threads: 1 -> 2" in out
    assert "explained by              environment/threads/num_threads: 1 -> 2" in out
    assert "(1 threads): reproduces the recorded run" in out
    assert f"steps replayed            0 -> {fields['replayed_to']}" in out


def test_an_honest_replay_reports_no_divergence(project, run_id):
    code, out, err = _verify(project, run_id, "--bisect", "--quiet", "--json")
    assert code == 0, err[-3000:]
    result = json.loads(out[out.index("{") :])
    assert result["overall"] == "bitwise"
    assert result["bisection"]["interval"] is None
    assert result["bisection"]["first_divergent_step"] is None
    assert "nothing to bisect" in result["bisection"]["note"]


def test_a_divergence_before_the_oldest_kept_checkpoint_is_dated_by_the_log():
    recorded = {8: "blake3:a", 10: "blake3:b"}  # steps 1-7 pruned (keep: 2)
    replayed = {8: "blake3:x", 10: "blake3:y"}
    log = {s: {"loss": str(s)} for s in range(1, 11)}
    moved = {**log, 3: {"loss": "3.5"}}
    interval, why = first_divergent_interval(recorded, replayed, log, moved)
    assert interval == [0, 8]  # replayed from scratch: no kept checkpoint before step 3
    assert "step 3" in why
    assert first_divergent_interval(recorded, dict(recorded), log, dict(log))[0] is None
    assert first_divergent_interval(recorded, {8: "blake3:a", 10: "blake3:y"})[0] == [8, 10]


def test_a_diverged_segment_is_bisected_from_its_own_recorded_checkpoint(project, run_id):
    """``--segments K --bisect``: no full replay; the first diverged segment is the interval."""
    code, out, err = _verify(
        project, run_id, "--segments", "2", "--params", "determinism.threads=2", "--bisect",
        "--quiet", "--json",
    )  # fmt: skip
    assert code == 1, err[-3000:]
    result = json.loads(out[out.index("{") :])
    assert [s["verdict"] for s in result["segments"]] == ["diverged", "diverged"]
    bisection = result["bisection"]
    assert bisection["interval"] == [0, 5]
    assert "segment 0 (steps 0-5) diverged" in bisection["interval_evidence"]
    assert bisection["replayed_to"] == 5
    assert bisection["first_divergent_step"] == 1
    assert bisection["first_divergent_module"] == "conv"
    assert bisection["first_divergent_kind"] == "param_grad"
    assert bisection["reference"]["reproduces"] is True
    assert bisection["environment"]["parameters"]["determinism.threads"] == [1, 2]
