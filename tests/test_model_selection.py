"""Declared stopping and model selection, on the real tiny corpus.

In process: dev evaluations leave training's bits alone, ``best_dev_wer`` keeps the best
evaluated step's weights, patience stops early and says so, a crashed run resumes to the same
selection, bad selection parameters are refused. One ``kedro run --env test`` (module fixture):
the model digest is the regression anchor, and the selection reaches model_selection.json,
training_log.csv, metrics.json and ``kedro repro show``.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.determinism import DeterminismPolicy
from kedro_repro.hashing import tensors_digest
from speech_repro.parameters import ModelParams, SelectionParams, TextParams, TrainingParams
from speech_repro.pipelines.training.nodes import train_model
from tests.conftest import copy_project, kedro_unchecked, run_kedro

# ATen, MKL and oneDNN pick kernels by CPU, so unpinned bits differ between machines (CI's pool
# mixes CPUs: one AVX-512 machine gave blake3:866276a5..., another blake3:1d37414e...). The anchor
# run pins all three to code paths every x86-64 CPU with AVX2 runs alike (docs/reproducibility.md).
PORTABLE_ISA = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
# `kedro run --env test` model digest under PORTABLE_ISA (docs: regression anchors).
TEST_ENV_MODEL = "blake3:e62106e09c2ade2b8f9e40c3909878e01ee4e77490d1340cabd2c97973a1094c"
# Long enough for the tiny model's dev WER to move, then settle: 30 steps, 15 evaluations.
CURVE = {"epochs": 6, "checkpoint_every_steps": 2}


class Crash(Exception):
    """Stands in for the process dying right after a checkpoint was written."""


class CrashAt(CheckpointStore):
    """A store whose process dies right after it wrote the checkpoint of ``step``."""

    def __init__(self, directory: Path, step: int):
        super().__init__(directory)
        self.crash_step = step

    def save(self, step, state, epoch=None):
        path = super().save(step, state, epoch=epoch)
        if step == self.crash_step:
            raise Crash(path)
        return path


def _train(prepared, params, store, selection=None, **training):
    settings = {**params["training"], **training, "selection": selection or {}}
    return train_model(
        prepared["features"],
        prepared["split_lock"],
        prepared["manifest"],
        prepared["norm_stats"],
        TrainingParams(**settings),
        ModelParams(**params["model"]),
        TextParams(**params["text"]),
        store,
        DeterminismPolicy(**params["determinism"]),
    )


def _logged(log: pd.DataFrame) -> dict[int, float]:
    evaluated = log.dropna(subset=["dev_wer"])
    return dict(zip(evaluated["step"], evaluated["dev_wer"], strict=True))


def test_dev_evaluations_leave_the_trained_weights_and_the_log_alone(prepared, params, tmp_path):
    never, never_log, _ = _train(
        prepared, params, CheckpointStore(tmp_path / "n"), {"eval_every_steps": 0}
    )
    default, default_log, selection = _train(prepared, params, CheckpointStore(tmp_path / "d"))
    often, often_log, _ = _train(
        prepared, params, CheckpointStore(tmp_path / "o"), {"eval_every_steps": 1}
    )
    assert tensors_digest(default["weights"]) == tensors_digest(never["weights"])
    assert tensors_digest(often["weights"]) == tensors_digest(never["weights"])
    columns = ["epoch", "step", "loss", "grad_norm", "learning_rate", "batch_size"]
    assert default_log[columns].equals(never_log[columns])
    assert often_log[columns].equals(never_log[columns])
    assert never_log["dev_wer"].isna().all()
    # The default evaluates once per epoch, at its end; every N steps evaluates every N steps.
    steps_per_epoch = len(default_log) // params["training"]["epochs"]
    assert list(_logged(default_log)) == list(
        range(steps_per_epoch, len(default_log) + 1, steps_per_epoch)
    )
    assert list(_logged(often_log)) == list(range(1, len(often_log) + 1))
    assert selection["criterion"] == "last"
    assert selection["selected_step"] == selection["last_step"] == len(default_log)
    assert selection["dev_wer"] == _logged(default_log)[len(default_log)]
    assert selection["stopped_early"] is False


def test_best_dev_wer_keeps_the_weights_of_the_lowest_evaluated_step(prepared, params, tmp_path):
    store = CheckpointStore(tmp_path)  # keeps every checkpoint, one each 2 steps
    bundle, log, selection = _train(
        prepared, params, store, {"criterion": "best_dev_wer", "eval_every_steps": 2}, **CURVE
    )
    logged = _logged(log)
    assert list(logged) == list(range(2, len(log) + 1, 2))
    best = min(logged.values())
    first_best = min(step for step, wer in logged.items() if wer == best)
    assert selection["selected_step"] == selection["best_step"] == first_best
    assert selection["dev_wer"] == selection["best_dev_wer"] == best
    assert first_best != len(log)  # the curve settles: the last step is not the first best
    assert tensors_digest(bundle["weights"]) == tensors_digest(store.load(first_best)["model"])
    last = store.load(len(log))["model"]
    assert tensors_digest(bundle["weights"]) != tensors_digest(last)
    assert [e["step"] for e in selection["evaluations"]] == list(logged)
    assert "lowest dev WER" in selection["reason"]


def test_patience_stops_early_and_records_where_and_why(prepared, params, tmp_path):
    store = CheckpointStore(tmp_path)
    selection_params = {"criterion": "best_dev_wer", "eval_every_steps": 2, "patience": 3}
    bundle, log, selection = _train(prepared, params, store, selection_params, **CURVE)
    planned = selection["planned_steps"]
    assert selection["stopped_early"] is True
    # Three evaluations (6 steps) after the best one, and no step after them.
    assert len(log) == selection["last_step"] == selection["best_step"] + 3 * 2 < planned
    assert max(store.steps()) == len(log)  # the stop is checkpointed: a resume trains no more
    assert f"stopped early at step {len(log)} of {planned}" in selection["reason"]
    assert "patience 3" in selection["reason"]
    assert tensors_digest(bundle["weights"]) == tensors_digest(
        store.load(selection["best_step"])["model"]
    )


@pytest.mark.parametrize("crash_step", [10, 14], ids=["after-the-best", "at-the-stop"])
def test_a_resumed_run_selects_what_an_uninterrupted_one_does(
    prepared, params, tmp_path, crash_step
):
    selection_params = {"criterion": "best_dev_wer", "eval_every_steps": 2, "patience": 3}
    straight, straight_log, straight_selection = _train(
        prepared, params, CheckpointStore(tmp_path / "straight"), selection_params, **CURVE
    )
    # The best step (8) lies before the crash: only the checkpoint can tell the resumed run.
    assert straight_selection["best_step"] < crash_step <= straight_selection["last_step"]
    with pytest.raises(Crash):
        _train(
            prepared, params, CrashAt(tmp_path / "crashed", crash_step), selection_params, **CURVE
        )
    resumed, resumed_log, resumed_selection = _train(
        prepared, params, CheckpointStore(tmp_path / "crashed"), selection_params, **CURVE
    )
    assert resumed_selection == straight_selection
    assert tensors_digest(resumed["weights"]) == tensors_digest(straight["weights"])
    assert resumed_log.equals(straight_log)


@pytest.mark.parametrize(
    ("selection", "says"),
    [
        ({"criterion": "best"}, "criterion"),
        ({"patience": 0}, "patience"),
        ({"criterion": "best_dev_wer", "eval_every_steps": 0}, "evaluates nothing"),
        ({"eval_every_steps": 0, "patience": 2}, "evaluates nothing"),
        ({"min_delta": -0.1}, "min_delta"),
        ({"every": 3}, "every"),
    ],
)
def test_bad_selection_parameters_are_refused(selection, says):
    with pytest.raises(ValidationError, match=says):
        SelectionParams(**selection)


def test_a_selection_split_without_utterances_is_an_error_when_selection_needs_it(
    prepared, params, tmp_path
):
    with pytest.raises(ValueError, match="'validation' split, which has no utterances"):
        _train(
            prepared,
            params,
            CheckpointStore(tmp_path),
            {"criterion": "best_dev_wer", "split": "validation"},
        )


# --- one real `kedro run --env test` -------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("selection") / "project")


@pytest.fixture(scope="module")
def test_run(project):
    """The run's id, its stderr and its outputs: model selection, log, metrics."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", **PORTABLE_ISA}
    result = run_kedro(project, "run", "--env", "test", env=env)
    (run_id,) = [p.name for p in (project / "data/09_runs").iterdir() if p.is_dir()]

    def output(path: str) -> Path:
        return project / path / run_id / Path(path).name

    return {
        "id": run_id,
        "stderr": result.stderr,
        "selection": json.loads(output("data/06_models/model_selection.json").read_text()),
        "log": pd.read_csv(output("data/08_reporting/training_log.csv")),
        "metrics": json.loads(output("data/08_reporting/metrics.json").read_text()),
    }


def test_the_default_selection_trains_the_model_it_always_did(project, test_run):
    record = json.loads((project / "data/09_runs" / test_run["id"] / "record.json").read_text())
    # The pins reached the run (the record says which kernels it used), then the bits.
    assert {
        name: record["environment"]["determinism_env"][name] for name in PORTABLE_ISA
    } == PORTABLE_ISA
    assert record["environment"]["torch"]["cpu_capability"] == "AVX2"
    assert record["ledger"]["model"]["digest"] == TEST_ENV_MODEL


def test_the_run_records_which_step_it_selected_and_why(project, test_run):
    selection, log, metrics = test_run["selection"], test_run["log"], test_run["metrics"]
    assert selection["criterion"] == "last"
    assert selection["selected_step"] == len(log)
    assert metrics["selection"] == selection
    evaluated = log.dropna(subset=["dev_wer"])
    assert evaluated["step"].tolist() == [e["step"] for e in selection["evaluations"]]
    assert log["dev_wer"].isna().sum() == len(log) - len(evaluated)
    # Training's dev WER of the last step is the WER evaluation scores for the same model.
    assert math.isclose(selection["dev_wer"], metrics["splits"]["dev"]["wer"])
    shown = run_kedro(project, "repro", "show", test_run["id"]).stdout
    assert f"model  step {len(log)} of {selection['planned_steps']} (last)" in shown
    assert test_run["id"] in run_kedro(project, "repro", "runs").stdout


def test_no_progress_bar_reaches_a_log_that_is_not_a_terminal(test_run):
    # tqdm's bar would read "transcribe: 100%|...": the node's own log line has no "%|".
    assert not re.search(r"transcribe:\s+\d+%", test_run["stderr"])
    assert "Completed node: transcribe" in test_run["stderr"]


def test_a_bad_criterion_stops_the_run_before_any_node(project, test_run):
    result = kedro_unchecked(
        project, "run", "--env", "test", "--params", "training.selection.criterion=best"
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "training.selection.criterion" in output and "best_dev_wer" in output
    assert "nothing was run" in output
    assert "Running node" not in output


def test_continuing_a_last_run_with_best_dev_wer_is_refused(prepared, params, tmp_path):
    store = CheckpointStore(tmp_path)
    with pytest.raises(Crash):
        _train(prepared, params, CrashAt(tmp_path, 5), {"eval_every_steps": 1})
    with pytest.raises(ValueError, match="no weights of its best step"):
        _train(prepared, params, store, {"criterion": "best_dev_wer", "eval_every_steps": 1})
