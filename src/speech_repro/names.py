"""Names the project's settings and its commands share; importing this costs nothing (no torch)."""

SUMMARY_SPLIT = "test"
"""The split whose WER sums a run up (runs listing, metric equivalence of a replay, compare)."""
HYPOTHESES = "hypotheses"
"""Scored outputs, one row per utterance with a ``split`` column (``<namespace>.hypotheses`` per seed)."""
