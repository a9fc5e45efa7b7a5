"""Segment verification and checkpoint retention, on real `kedro` runs of the test configuration.

One 4-epoch run (4 segments of 5 steps each, a checkpoint at every epoch end) is shared by the
module; the tampered case works on a copy of it, the pruned case on its own run with a
retention policy that removes checkpoints.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kedro_repro.checkpoints import state_digest
from kedro_repro.hashing import file_digest
from kedro_repro.integrity import check_run
from kedro_repro.record import CheckpointEntry, load_run
from kedro_repro.segments import (
    Segment,
    SegmentsUnavailable,
    _grade,
    _read_structure,
    choose_segments,
    plan_segments,
)
from kedro_repro.state import save_state

from .conftest import copy_project, kedro_unchecked, run_kedro

EPOCHS = ("--params", "training.epochs=4")
STORE = "training_checkpoints"


def _only_run(project: Path) -> str:
    runs = sorted(p.name for p in (project / "data" / "09_runs").iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def _verify(project: Path, run_id: str, *args: str) -> tuple[int, dict]:
    # A workdir beside the project: a failed verify keeps it, and tmp_path cleans it up.
    workdir = project.parent / f"replay-{len(list(project.parent.glob('replay-*')))}"
    result = kedro_unchecked(
        project, "repro", "verify", run_id, "--json", "--workdir", str(workdir), *args
    )
    try:
        return result.returncode, json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON:\n{result.stdout}\n{result.stderr}") from None


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # in the tensor data: the file still parses as safetensors
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> tuple[Path, str]:
    project = copy_project(tmp_path_factory.mktemp("segments") / "project")
    run_kedro(project, "run", "--env", "test", *EPOCHS)
    return project, _only_run(project)


def test_the_record_holds_the_policy_and_every_checkpoint_digest(honest):
    project, run_id = honest
    section = load_run(project / "data" / "09_runs", run_id).checkpoints[STORE]
    assert section.policy is not None and section.policy.model_dump() == {
        "keep_last": 3,
        "keep_every_epochs": 1,
    }
    assert [(e.step, e.epoch, e.kept) for e in section.history.values()] == [
        (5, 0, True),
        (10, 1, True),
        (15, 2, True),
        (20, 3, True),
    ]
    for name, entry in section.history.items():  # a verifier can check the bytes
        path = project / section.directory / name
        assert file_digest(path) == entry.digest == section.files[name]
        assert state_digest(path) == entry.state


def test_segments_of_an_honest_run_verify_bitwise(honest):
    project, run_id = honest
    code, result = _verify(project, run_id, "--segments", "3", "--segment-seed", "5")
    assert code == 0, result
    assert result["overall"] == "bitwise" and result["segments_total"] == 4
    # The choice is recorded in the output and is the seed's: the first, the last, one drawn.
    assert result["seed"] == 5 and result["chosen"] == choose_segments(4, 3, 5) == [0, 2, 3]
    assert [(s["start_step"], s["end_step"]) for s in result["segments"]] == [
        (0, 5),
        (10, 15),
        (15, 20),
    ]
    assert [s["verdict"] for s in result["segments"]] == ["bitwise"] * 3
    assert result["evaluation_verdict"] == "bitwise"
    assert {g["dataset"] for g in result["evaluation"]} >= {"hypotheses", "metrics"}
    assert not result["uncheckable"] and not result["checkpoint_problems"]


def test_a_flipped_byte_in_a_recorded_checkpoint_names_the_segment_and_file(honest, tmp_path):
    source, run_id = honest
    project = tmp_path / "project"
    shutil.copytree(source, project, symlinks=True)
    section = load_run(project / "data" / "09_runs", run_id).checkpoints[STORE]
    _flip_last_byte(project / section.directory / "step-000000010.safetensors")  # ends segment 1
    code, result = _verify(project, run_id, "--segments", "3", "--segment-seed", "1")
    assert code == 1
    assert result["overall"] == "tampered"
    verdicts = {s["index"]: s for s in result["segments"]}
    assert sorted(verdicts) == [0, 1, 3]
    assert (
        verdicts[1]["verdict"] == "tampered"
        and "step-000000010.safetensors" in (verdicts[1]["detail"])
    )
    assert verdicts[1]["seconds"] is None  # named from its bytes, never replayed
    assert verdicts[0]["verdict"] == verdicts[3]["verdict"] == "bitwise"
    assert len(result["checkpoint_problems"]) == 1
    assert "step-000000010.safetensors was modified" in result["checkpoint_problems"][0]


def _processes_reading(path: Path) -> list[str]:
    """Command lines of the live processes that name ``path``: a leftover host shows here."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended while we looked
            continue
        if str(path).encode() in words:
            found.append(" ".join(w.decode(errors="replace") for w in words))
    return found


def test_a_tampered_feature_shard_stops_verify_naming_it_and_the_host_with_it(honest, tmp_path):
    source, run_id = honest
    project = tmp_path / "project"
    shutil.copytree(source, project, symlinks=True)
    files = load_run(project / "data" / "09_runs", run_id).ledger["features"].files
    shard = next(name for name in files if name.endswith("shard-00000.safetensors"))
    _flip_last_byte(project / shard)
    workdir = tmp_path / "replay"
    result = kedro_unchecked(
        project, "repro", "verify", run_id, "--segments", "2", "--workdir", str(workdir)
    )
    assert result.returncode != 0
    assert f"{shard} was modified" in result.stdout + result.stderr
    # The host started before the bytes were checked; it must not outlive the refusal.
    assert (workdir / "segments" / "host.log").exists()
    assert _processes_reading(workdir / "segments" / "plan.json") == []
    assert not list(workdir.glob("segments/0*")), "no segment was replayed"


def test_a_pruned_checkpoint_makes_its_segments_uncheckable(tmp_path):
    project = copy_project(tmp_path / "project")
    catalog = project / "conf" / "base" / "catalog.yml"
    text = catalog.read_text()
    policy = "  keep: 3                 # the newest 3 (resume), and\n  keep_every_epochs: 1"
    assert policy in text
    # The newest 2 only, no epoch ends kept besides: the pre-retention default (keep: 3).
    catalog.write_text(text.replace(policy, "  keep: 2\n  keep_every_epochs: null", 1))
    run_kedro(project, "run", "--env", "test", *EPOCHS)
    run_id = _only_run(project)
    section = load_run(project / "data" / "09_runs", run_id).checkpoints[STORE]
    # Steps 5 and 10 are pruned, gone from disk, and still in the record with their digests.
    assert {n: e.kept for n, e in section.history.items()} == {
        "step-000000005.safetensors": False,
        "step-000000010.safetensors": False,
        "step-000000015.safetensors": True,
        "step-000000020.safetensors": True,
    }
    assert not (project / section.directory / "step-000000005.safetensors").exists()
    assert section.history["step-000000005.safetensors"].digest.startswith("blake3:")
    assert check_run(project, run_id).verdict == "intact"  # pruning is not tampering
    code, result = _verify(project, run_id, "--segments", "2")
    assert code == 1 and result["overall"] == "incomplete"
    first, last = result["segments"]
    assert (
        first["verdict"] == "uncheckable"
        and "step-000000005.safetensors pruned" in (first["detail"])
    )
    assert last["verdict"] == "bitwise"
    # Every uncheckable segment of the run is named, chosen or not.
    assert [(s["index"], s["start_step"], s["end_step"]) for s in result["uncheckable"]] == [
        (0, 0, 5),
        (1, 5, 10),
        (2, 10, 15),
    ]
    assert (
        "step-000000005.safetensors and step-000000010.safetensors pruned"
        in (result["uncheckable"][1]["detail"])
    )


def test_keeping_every_nth_epoch_end_makes_segments_of_n_epochs(honest):
    # The honest run's history under a policy that kept every 2nd epoch end (steps 10 and 20)
    # and the newest one: segments of two epochs, each from a kept checkpoint to a kept one.
    project, run_id = honest
    record = load_run(project / "data" / "09_runs", run_id)
    section = record.checkpoints[STORE]
    history = {
        name: entry.model_copy(update={"kept": entry.step in (10, 20)})
        for name, entry in section.history.items()
    }
    policy = section.policy.model_copy(update={"keep_last": 1, "keep_every_epochs": 2})
    pruned = section.model_copy(update={"history": history, "policy": policy})
    record = record.model_copy(update={"checkpoints": {STORE: pruned}})
    segments = plan_segments(record, STORE)
    assert [(s.start_step, s.end_step, s.verdict) for s in segments] == [
        (0, 10, "not replayed"),
        (10, 20, "not replayed"),
    ]


def test_the_segment_choice_is_the_seeds():
    assert choose_segments(50, 5, 123) == choose_segments(50, 5, 123)
    drawn = {tuple(choose_segments(50, 5, seed)) for seed in range(20)}
    assert len(drawn) > 1  # the seed decides the middle ones...
    for chosen in drawn:  # ...the first and the last are always in
        assert chosen[0] == 0 and chosen[-1] == 49 and len(chosen) == 5
    assert choose_segments(4, 9, 0) == [0, 1, 2, 3]


def test_a_replayed_state_that_differs_is_diverged_naming_the_part(tmp_path):
    state = {"model": {"w": torch.ones(3)}, "optimizer": {"m": torch.zeros(2)}, "log": [1.0]}
    recorded = tmp_path / "recorded" / "step-000000005.safetensors"
    recorded.parent.mkdir()
    save_state(recorded, state, metadata={"step": "5"})
    replayed = tmp_path / "step-000000005.safetensors"
    changed = {**state, "model": {"w": torch.tensor([1.0, 1.0, 1.5])}}
    save_state(replayed, changed, metadata={"step": "5"})
    entry = CheckpointEntry(
        step=5, epoch=0, digest=file_digest(recorded), state=state_digest(recorded)
    )
    segment = Segment(0, None, 0, recorded.name, 5, 0)
    _grade(segment, entry, replayed, recorded.parent)
    assert segment.verdict == "diverged"
    assert "model (max |diff| 0.5)" in segment.detail and "optimizer" not in segment.detail
    _grade(segment, entry, recorded, recorded.parent)
    assert segment.verdict == "bitwise"


def _host_that_prints(tmp_path: Path, script: str) -> subprocess.Popen:
    """A real child process standing in for the segment host's first words."""
    log = open(tmp_path / "host.log", "w")  # noqa: SIM115 - the child writes it until it ends
    return subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=log, text=True,
    )  # fmt: skip


def test_a_sweep_read_by_the_host_is_refused_naming_the_training_nodes(tmp_path):
    structure = {
        "trainers": [{"name": f"seed_{i}.train", "inputs": ["features"]} for i in range(3)],
        "evaluation_inputs": [],
    }
    host = _host_that_prints(tmp_path, f"print('structure', {json.dumps(json.dumps(structure))})")
    with pytest.raises(SegmentsUnavailable, match="3 nodes reading training_checkpoints"):
        _read_structure(host, tmp_path / "host.log", "RUN", STORE)
    host.wait()


def test_a_host_that_stops_before_the_structure_names_its_last_words(tmp_path):
    script = "import sys; sys.exit('ModuleNotFoundError: No module named kedro_repro.segments')"
    host = _host_that_prints(tmp_path, script)
    with pytest.raises(SegmentsUnavailable) as refused:
        _read_structure(host, tmp_path / "host.log", "RUN", STORE)
    message = str(refused.value)
    assert "exit 1" in message and "No module named kedro_repro.segments" in message
    assert "--code current" in message
