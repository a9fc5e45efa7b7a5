"""Data processing pipeline: corpus index -> manifest -> split lock -> features -> statistics."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    assign_splits,
    build_manifest,
    compute_features,
    fit_normalization,
    summarize_features,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Validate and prepare any corpus the ``raw_corpus`` catalog entry points at."""
    return Pipeline(
        [
            Node(
                build_manifest,
                ["raw_corpus", "params:audio", "params:text"],
                "manifest",
                name="build_manifest",
            ),
            Node(assign_splits, ["manifest", "params:split"], "split_lock", name="assign_splits"),
            Node(
                compute_features,
                # raw_corpus knows where the audio lies: the manifest stores paths relative to it.
                ["manifest", "raw_corpus", "params:features", "params:audio", "params:sharding"],
                "features",
                name="compute_features",
            ),
            Node(
                summarize_features,
                ["features", "manifest", "params:features"],
                "feature_stats",
                name="summarize_features",
            ),
            Node(
                fit_normalization,
                ["features", "split_lock", "feature_stats", "params:drift"],
                ["norm_stats", "drift_report"],
                name="fit_normalization",
            ),
        ],
        tags="data",
    )
