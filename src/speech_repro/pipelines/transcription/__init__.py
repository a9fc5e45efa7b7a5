"""A trained model on new audio: the ``new_audio`` dataset in, ``new_transcripts`` out."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
