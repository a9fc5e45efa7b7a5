"""Training pipeline: one node, the CTC training loop."""

from kedro.pipeline import Node, Pipeline

from .nodes import train_model


def create_pipeline(training_params: str = "params:training", **kwargs) -> Pipeline:
    """Train on the locked train split; checkpoints go to this run's checkpoint directory.

    ``training_params`` names where the training settings come from: the ``training`` parameters,
    or a dataset derived from them (a seed sweep sets the seed per namespace). The node gets the
    ``determinism`` parameters too: the policy the loop trains under is an input, not global state.
    """
    return Pipeline(
        [
            Node(
                train_model,
                [
                    "features",
                    "split_lock",
                    "manifest",
                    "norm_stats",
                    training_params,
                    "params:model",
                    "params:text",
                    "training_checkpoints",
                    "params:determinism",
                ],
                ["model", "training_log", "model_selection"],
                name="train_model",
            )
        ],
        tags="training",
    )
