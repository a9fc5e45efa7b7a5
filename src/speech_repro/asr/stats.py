"""Statistics of word error rates that respect how speech data is correlated.

Utterances of one speaker are not independent, so confidence intervals resample speakers, not
utterances (a block bootstrap).
"""

from __future__ import annotations

import jiwer
import numpy as np
import pandas as pd


def word_errors(hypotheses: pd.DataFrame) -> pd.DataFrame:
    """Per utterance: speaker, word errors (S + D + I) and reference words."""
    rows = []
    for row in hypotheses.itertuples():
        out = jiwer.process_words(row.reference, row.hypothesis)
        rows.append(
            {
                "utt_id": row.utt_id,
                "speaker": row.speaker,
                "errors": out.substitutions + out.deletions + out.insertions,
                "words": out.hits + out.substitutions + out.deletions,
            }
        )
    return pd.DataFrame(rows)


def paired_speaker_bootstrap(
    hypotheses_a: pd.DataFrame,
    hypotheses_b: pd.DataFrame,
    replicates: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | bool | int]:
    """WER(b) - WER(a) on the same utterances, with a bootstrap CI over speakers.

    ``equivalent`` is true when the interval contains 0: the two systems' difference is within
    what resampling the speakers alone produces. ``p_improvement`` is the share of replicates in
    which b has the lower WER.
    """
    a = word_errors(hypotheses_a).set_index("utt_id")
    b = word_errors(hypotheses_b).set_index("utt_id").loc[a.index]
    per_speaker = (
        pd.DataFrame(
            {
                "speaker": a["speaker"],
                "errors_a": a["errors"],
                "errors_b": b["errors"],
                "words": a["words"],
            }
        )
        .groupby("speaker", sort=True)[["errors_a", "errors_b", "words"]]
        .sum()
    )
    totals = per_speaker.to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(totals), size=(replicates, len(totals)))
    sums = totals[picks].sum(axis=1)
    deltas = (sums[:, 1] - sums[:, 0]) / np.maximum(sums[:, 2], 1)
    low, high = np.quantile(deltas, [(1 - level) / 2, (1 + level) / 2])
    observed = (totals[:, 1].sum() - totals[:, 0].sum()) / max(totals[:, 2].sum(), 1)
    return {
        "wer_a": float(totals[:, 0].sum() / max(totals[:, 2].sum(), 1)),
        "wer_b": float(totals[:, 1].sum() / max(totals[:, 2].sum(), 1)),
        "delta": float(observed),
        "ci_low": float(low),
        "ci_high": float(high),
        "level": level,
        "speakers": len(totals),
        "replicates": replicates,
        "p_improvement": float((deltas < 0).mean()),
        "equivalent": bool(low <= 0 <= high),
    }
