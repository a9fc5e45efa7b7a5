"""Embedded corpus pipeline: one node whose output dataset synthesizes the audio."""

from kedro.pipeline import Node, Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """Plan the digits corpus; saving the plan to ``raw_corpus`` renders any missing audio."""
    # Imported here: settings.py imports this package (its hook) for every kedro command, and the
    # data-processing nodes import torch.
    from ..data_processing.nodes import plan_corpus

    return Pipeline(
        [Node(plan_corpus, "params:corpus", "raw_corpus", name="plan_corpus")], tags="data"
    )
