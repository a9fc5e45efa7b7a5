"""Evaluation pipeline: decode, then score."""

from kedro.pipeline import Node, Pipeline

from .nodes import score, transcribe


def create_pipeline(**kwargs) -> Pipeline:
    """Greedy CTC decoding of the evaluated splits, then WER/CER/MER/WIL tables."""
    return Pipeline(
        [
            Node(
                transcribe,
                [
                    "model",
                    "features",
                    "split_lock",
                    "manifest",
                    "norm_stats",
                    "params:text",
                    "params:evaluation",
                ],
                "hypotheses",
                name="transcribe",
            ),
            Node(
                score,
                ["hypotheses", "params:text", "model_selection"],
                ["metrics", "wer_per_split", "wer_per_speaker"],
                name="score",
            ),
        ],
        tags="evaluation",
    )
