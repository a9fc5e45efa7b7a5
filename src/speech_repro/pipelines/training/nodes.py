"""The training node: builds the loop's inputs from the Kedro datasets and parameters, then trains.

The loop itself is :func:`speech_repro.pipelines.training.loop.fit`; with more than one training
process the node hands it to torchrun (:mod:`speech_repro.pipelines.training.distributed`).
"""

from __future__ import annotations

import pandas as pd

from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.determinism import DeterminismPolicy
from kedro_repro.shards import ShardedTensors
from speech_repro.parameters import ModelParams, TextParams, TrainingParams
from speech_repro.pipelines.training.distributed import launch
from speech_repro.pipelines.training.loop import TrainingInputs, fit


def train_model(
    features: ShardedTensors,
    split_lock: pd.DataFrame,
    manifest: pd.DataFrame,
    norm_stats: dict,
    training: TrainingParams,
    model: ModelParams,
    text: TextParams,
    checkpoints: CheckpointStore,
    determinism: DeterminismPolicy,
) -> tuple[dict, pd.DataFrame, dict]:
    """Train the CTC model on the train split; returns the model bundle, the per-step log and
    the selection record (``model_selection``: the step whose weights the bundle holds, why,
    and every dev evaluation; ``training.selection``).

    ``determinism`` is the ``determinism`` parameters: the policy the DeterminismHook applied to
    this process; the loop receives it explicitly instead of reading torch's global switches.
    See :func:`~speech_repro.pipelines.training.loop.fit` for seeding and checkpoints. With
    ``training.distributed.world_size`` > 1 the node launches that many processes with torchrun
    on this machine and waits for them; the outputs have the same form either way.
    """
    inputs = TrainingInputs(
        features, split_lock, manifest, norm_stats, training, model, text, checkpoints
    )
    trained = launch(inputs, determinism) if inputs.world_size > 1 else fit(inputs, determinism)
    bundle, log, selection = trained
    return bundle, pd.DataFrame(log), selection
