"""Reports of a run: intervals, review flags, figures and a Markdown summary."""

from .pipeline import create_pipeline, data_review_pipeline, run_report_pipeline

__all__ = ["create_pipeline", "data_review_pipeline", "run_report_pipeline"]
