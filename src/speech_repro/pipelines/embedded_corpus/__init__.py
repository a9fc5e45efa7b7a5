"""The embedded digits corpus: a plan, rendered to audio by the ``raw_corpus`` dataset."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
