"""Seed sweeps: the same experiment under several seeds, then statistics across them."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
