"""Greedy decoding and jiwer scoring per split and per speaker."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
