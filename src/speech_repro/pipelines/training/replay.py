"""The training of a recorded run, continued from a checkpoint under a probe (``verify --bisect``).

kedro-repro's bisection calls :func:`replay_training` in a fresh process (through
``REPRO.step_replay``): the run's datasets as it saved them, its parameters with the replay's
overrides, a checkpoint store holding the checkpoint to start from, and the probe that watches
each optimizer step and ends the loop. It is the training node's own loop, single process.
"""

from __future__ import annotations

from typing import Any

from kedro_repro.bisect import StepProbe
from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.determinism import DeterminismPolicy
from speech_repro.parameters import ModelParams, TextParams, TrainingParams


def replay_training(
    loaded: dict[str, Any],
    parameters: dict[str, Any],
    checkpoints: CheckpointStore,
    probe: StepProbe,
) -> list[dict[str, Any]]:
    """Train as ``train_model`` did, from ``checkpoints``' newest checkpoint until ``probe`` stops
    it; returns the log rows (every step from the start of training)."""
    from speech_repro.pipelines.training.loop import TrainingInputs, fit

    training = TrainingParams.model_validate(parameters["training"])
    if training.distributed.world_size > 1:
        raise ValueError("bisecting a data-parallel training is not supported")
    inputs = TrainingInputs(
        loaded["features"],
        loaded["split_lock"],
        loaded["manifest"],
        loaded["norm_stats"],
        training,
        ModelParams.model_validate(parameters.get("model") or {}),
        TextParams.model_validate(parameters["text"]),
        checkpoints,
    )
    policy = DeterminismPolicy(**parameters.get("determinism", {}))
    _, log, _ = fit(inputs, policy, probe=probe)
    return log
