"""Data processing pipeline: plan -> audio -> manifest -> split lock -> features -> statistics."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    assign_splits,
    build_manifest,
    compute_features,
    compute_normalization,
    plan_corpus,
    summarize_features,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Prepare the corpus and its features; every table is schema-checked by the catalog."""
    return Pipeline(
        [
            Node(plan_corpus, "params:corpus", "raw_corpus", name="plan_corpus"),
            Node(build_manifest, "raw_corpus", "manifest", name="build_manifest"),
            Node(assign_splits, ["manifest", "params:split"], "split_lock", name="assign_splits"),
            Node(
                compute_features,
                ["manifest", "params:features"],
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
                compute_normalization,
                ["features", "split_lock", "feature_stats"],
                "norm_stats",
                name="compute_normalization",
            ),
        ]
    )
