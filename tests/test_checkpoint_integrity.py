"""A real run continuing another's checkpoints passes over a corrupt one, names it, completes."""

from __future__ import annotations

import json
from pathlib import Path

from kedro_repro.hashing import tensors_digest
from kedro_repro.record import RUNS_DIR, list_records
from kedro_repro.state import load_state

from .conftest import copy_project, run_kedro


def _last_run_id(project: Path) -> str:
    return list_records(project / RUNS_DIR)[-1].run_id


def _model_digest(project: Path, run_id: str) -> str:
    path = project / "data/06_models/model.safetensors" / run_id / "model.safetensors"
    return tensors_digest(load_state(path)["weights"])


def test_a_bit_flipped_last_checkpoint_is_named_and_the_run_falls_back(tmp_path):
    project = copy_project(tmp_path / "speech-repro")
    run_kedro(project, "run", "--env", "test")
    first = _last_run_id(project)
    store = Path("data/06_models/checkpoints") / first / "checkpoints"  # as the run names it
    checkpoints = sorted((project / store).glob("step-*.safetensors"))
    assert len(checkpoints) >= 2, checkpoints
    previous, last = checkpoints[-2], checkpoints[-1]
    data = bytearray(last.read_bytes())
    data[-1] ^= 0x01  # in the tensor data: the file still parses as safetensors
    last.write_bytes(bytes(data))

    result = run_kedro(
        project, "run", "--env", "test", "--load-versions", f"training_checkpoints:{first}"
    )
    log = result.stdout + result.stderr
    previous_step = int(previous.name[5:14])
    assert str(store / last.name) in log, log
    assert f"falling back to the checkpoint at step {previous_step}" in log, log
    assert f"Continuing from the checkpoint at step {previous_step}" in log, log

    second = _last_run_id(project)
    record = json.loads((project / RUNS_DIR / second / "record.json").read_text())
    assert second != first and record["status"] == "complete"
    (skipped,) = record["checkpoints"]["training_checkpoints"]["skipped"]
    assert str(store / last.name) in skipped and "digest mismatch" in skipped
    # Resuming from the intact earlier checkpoint retrains the rest bit-exactly.
    assert _model_digest(project, second) == _model_digest(project, first)
