"""Reporting pipeline: checks of the data once, then the report of a trained and scored model."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    plot_feature_distributions,
    plot_run_learning_curve,
    plot_speaker_wer,
    review_flags,
    wer_intervals,
    write_run_report,
)


def data_review_pipeline() -> Pipeline:
    """Leakage, drift, determinism, split-size and bandwidth flags; feature distributions."""
    return Pipeline(
        [
            Node(
                review_flags,
                [
                    "split_lock",
                    "drift_report",
                    "params:determinism",
                    "manifest",
                    "params:features",
                ],
                "review_flags",
                name="review_flags",
            ),
            Node(
                plot_feature_distributions,
                ["feature_stats", "split_lock"],
                "feature_distribution_plot",
                name="plot_feature_distributions",
            ),
        ],
        tags="reporting",
    )


def run_report_pipeline() -> Pipeline:
    """WER intervals over speakers, learning curve, per-speaker WER and the Markdown report."""
    return Pipeline(
        [
            Node(
                wer_intervals,
                ["hypotheses", "params:reporting"],
                "wer_summary",
                name="wer_intervals",
            ),
            Node(
                plot_run_learning_curve,
                "training_log",
                "learning_curve_plot",
                name="plot_learning_curve",
            ),
            Node(
                plot_speaker_wer,
                ["wer_per_speaker", "params:reporting"],
                "speaker_wer_plot",
                name="plot_speaker_wer",
            ),
            Node(
                write_run_report,
                [
                    "metrics",
                    "wer_summary",
                    "review_flags",
                    "hypotheses",
                    "wer_per_speaker",
                    "training_log",
                    "params:reporting",
                ],
                "run_report",
                name="write_run_report",
            ),
        ],
        tags="reporting",
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Both parts, for a single run."""
    return data_review_pipeline() + run_report_pipeline()
