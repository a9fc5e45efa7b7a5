"""Manifest, validation, split lock, sharded features and their statistics."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
