"""Statistics of word error rates that respect how speech data is correlated.

Utterances of one speaker are not independent, so confidence intervals resample speakers, not
utterances (a block bootstrap).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jiwer
import numpy as np
import pandas as pd
import scipy.stats


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


def pooled_word_errors(runs: pd.DataFrame | Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per-utterance word errors of one system; several runs of it (seeds) are averaged.

    Averaging the errors of the seeds utterance by utterance keeps the pairing with another
    system intact, so a comparison of two configurations uses every seed of each.
    """
    frames = [runs] if isinstance(runs, pd.DataFrame) else list(runs)
    if not frames:
        raise ValueError("no hypotheses")
    errors = [word_errors(frame).set_index("utt_id").sort_index() for frame in frames]
    for other in errors[1:]:
        if not other.index.equals(errors[0].index):
            raise ValueError("the runs of one system were scored on different utterances")
    pooled = errors[0].copy()
    pooled["errors"] = np.mean([e["errors"].to_numpy(dtype=float) for e in errors], axis=0)
    return pooled.reset_index()


UNDEFINED_INTERVAL_METHOD = "undefined (fewer than 2 speakers)"


def speaker_wer_interval(
    hypotheses: pd.DataFrame, replicates: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float | int | str | None]:
    """WER with a bootstrap confidence interval that resamples speakers, not utterances.

    ``scipy.stats.bootstrap`` with the BCa method over per-speaker (errors, words) pairs; when
    BCa is undefined (e.g. every speaker has zero errors) the percentile interval is reported
    instead, and ``method`` says which one was used. With fewer than two speakers there is no
    interval: resampling one speaker returns that speaker, a zero-width interval that claims a
    certainty the data cannot give. ``ci_low`` and ``ci_high`` are then ``None`` and
    ``ci_undefined`` says why (``"1 speaker"``); otherwise ``ci_undefined`` is ``None``.
    """
    per_speaker = word_errors(hypotheses).groupby("speaker", sort=True)[["errors", "words"]].sum()
    errors = per_speaker["errors"].to_numpy(dtype=float)
    words = per_speaker["words"].to_numpy(dtype=float)
    wer = float(errors.sum() / max(words.sum(), 1))

    def ratio(e: np.ndarray, w: np.ndarray, axis: int = -1) -> np.ndarray:
        return e.sum(axis=axis) / np.maximum(w.sum(axis=axis), 1)

    if len(per_speaker) < 2:
        return {
            "wer": wer,
            "ci_low": None,
            "ci_high": None,
            "ci_undefined": f"{len(per_speaker)} speaker{'' if len(per_speaker) == 1 else 's'}",
            "level": level,
            "speakers": len(per_speaker),
            "utterances": len(hypotheses),
            "words": int(words.sum()),
            "method": UNDEFINED_INTERVAL_METHOD,
        }
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():  # a degenerate BCa warns and returns NaN
            warnings.simplefilter("ignore")
            result = scipy.stats.bootstrap(
                (errors, words),
                ratio,
                paired=True,
                vectorized=True,
                n_resamples=replicates,
                confidence_level=level,
                method=method,
                rng=np.random.default_rng(seed),
            )
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            break
    return {
        "wer": wer,
        "ci_low": float(low),
        "ci_high": float(high),
        "ci_undefined": None,
        "level": level,
        "speakers": len(per_speaker),
        "utterances": len(hypotheses),
        "words": int(words.sum()),
        "method": f"{method} bootstrap over speakers ({replicates} resamples, scipy.stats.bootstrap)",
    }


def paired_speaker_bootstrap(
    hypotheses_a: pd.DataFrame | Sequence[pd.DataFrame],
    hypotheses_b: pd.DataFrame | Sequence[pd.DataFrame],
    replicates: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | bool | int | str | None]:
    """WER(b) - WER(a) on the same utterances, with a bootstrap CI over speakers.

    Each side is one run's hypotheses, or several runs of one configuration (seeds), whose
    errors are averaged per utterance. ``equivalent`` is true when the interval contains 0: the
    two systems' difference is within what resampling the speakers alone produces.
    ``p_improvement`` is the share of replicates in which b has the lower WER. With fewer than
    2 speakers there is no interval (``ci_low``/``ci_high`` None, ``ci_undefined`` says why) and
    the systems are never called equivalent.
    """
    a = pooled_word_errors(hypotheses_a).set_index("utt_id")
    b = pooled_word_errors(hypotheses_b).set_index("utt_id")
    if set(a.index) != set(b.index):
        raise ValueError("the two systems were scored on different utterances")
    b = b.loc[a.index]
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
    wer_a = float(totals[:, 0].sum() / max(totals[:, 2].sum(), 1))
    wer_b = float(totals[:, 1].sum() / max(totals[:, 2].sum(), 1))
    if len(totals) < 2:  # resampling one speaker returns it: a zero-width interval would lie
        return {
            "wer_a": wer_a,
            "wer_b": wer_b,
            "delta": wer_b - wer_a,
            "ci_low": None,
            "ci_high": None,
            "ci_undefined": f"{len(totals)} speaker{'' if len(totals) == 1 else 's'}",
            "level": level,
            "speakers": len(totals),
            "replicates": 0,
            "p_improvement": None,
            "equivalent": False,  # no interval: equivalence cannot be shown
            "method": UNDEFINED_INTERVAL_METHOD,
        }
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(totals), size=(replicates, len(totals)))
    sums = totals[picks].sum(axis=1)
    deltas = (sums[:, 1] - sums[:, 0]) / np.maximum(sums[:, 2], 1)
    low, high = np.quantile(deltas, [(1 - level) / 2, (1 + level) / 2])
    observed = (totals[:, 1].sum() - totals[:, 0].sum()) / max(totals[:, 2].sum(), 1)
    return {
        "wer_a": wer_a,
        "wer_b": wer_b,
        "delta": float(observed),
        "ci_low": float(low),
        "ci_high": float(high),
        "ci_undefined": None,
        "level": level,
        "speakers": len(totals),
        "replicates": replicates,
        "p_improvement": float((deltas < 0).mean()),
        "equivalent": bool(low <= 0 <= high),
        "method": f"paired percentile bootstrap over speakers ({replicates} resamples)",
    }


def format_interval(entry: Mapping[str, Any], spec: str = ".2%") -> str:
    """``[low, high]`` formatted with ``spec``, or ``undefined: <why>`` where there is no interval."""
    if entry["ci_low"] is None:
        return f"undefined: {entry.get('ci_undefined') or 'no interval'}"
    return f"[{entry['ci_low']:{spec}}, {entry['ci_high']:{spec}}]"


WORD_INTERVAL_METHOD = (
    "Wilson score interval over the speaker's reference words (errors capped at the word count;"
    " words taken as independent, so narrower than the truth)"
)


def speaker_word_intervals(per_speaker: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """``per_speaker`` (evaluation's ``wer_per_speaker``) with a Wilson interval on each WER.

    Errors are S + D + I over ``reference_words``. A speaker has too few utterances to resample,
    so the interval treats each reference word as one trial (see :data:`WORD_INTERVAL_METHOD`);
    a speaker without reference words gets NaN.
    """
    errors = per_speaker[["substitutions", "deletions", "insertions"]].sum(axis=1).astype(int)
    words = per_speaker["reference_words"].astype(int)
    bounds = [
        scipy.stats.binomtest(min(e, w), w).proportion_ci(level, method="wilson") if w > 0 else None
        for e, w in zip(errors, words, strict=True)
    ]
    return per_speaker.assign(
        errors=errors,
        ci_low=[b.low if b is not None else np.nan for b in bounds],
        ci_high=[b.high if b is not None else np.nan for b in bounds],
    )
