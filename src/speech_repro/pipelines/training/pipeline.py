"""Training pipeline: one node, the CTC training loop."""

from kedro.pipeline import Node, Pipeline

from .nodes import train_model


def create_pipeline(**kwargs) -> Pipeline:
    """Train on the locked train split; checkpoints go to this run's checkpoint directory."""
    return Pipeline(
        [
            Node(
                train_model,
                [
                    "features",
                    "split_lock",
                    "manifest",
                    "norm_stats",
                    "params:training",
                    "params:model",
                    "params:text",
                    "training_checkpoints",
                ],
                ["model", "training_log"],
                name="train_model",
            )
        ]
    )
