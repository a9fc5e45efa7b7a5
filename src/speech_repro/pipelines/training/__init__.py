"""Seeded, deterministic CTC training with checkpoints."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
