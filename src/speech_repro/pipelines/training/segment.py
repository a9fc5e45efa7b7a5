"""One checkpoint interval of training, for ``kedro repro verify --segments``.

kedro-repro's segment worker loads the training node's inputs as the verified run saved them
(its checkpoint store continuing from the interval's first checkpoint) and calls
:func:`train_segment`, which trains exactly as the node does and stops once the checkpoint of
the interval's last step is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from speech_repro.pipelines.training.loop import TrainingInputs, fit


def train_segment(inputs: Mapping[str, Any], stop_step: int) -> None:
    """Train from the store's checkpoint (or step 0) until the checkpoint of ``stop_step``.

    ``inputs`` are the ``train_model`` node's inputs by dataset name, parameters typed.
    Data-parallel runs are not replayed by segments: their ranks' RNG states need the same
    number of processes, which one segment worker does not start.
    """
    training = inputs["params:training"]
    if training.distributed.world_size > 1:
        raise ValueError(
            "segment verification replays single-process training; this run trained with "
            f"training.distributed.world_size {training.distributed.world_size}"
        )
    fit(
        TrainingInputs(
            inputs["features"],
            inputs["split_lock"],
            inputs["manifest"],
            inputs["norm_stats"],
            training,
            inputs["params:model"],
            inputs["params:text"],
            inputs["training_checkpoints"],
        ),
        inputs["params:determinism"],
        stop_after=stop_step,
    )
