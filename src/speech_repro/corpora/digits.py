"""The embedded TIDIGITS-like corpus: connected digit strings spoken by synthetic speakers.

A speaker is an espeak-ng accent (``en-US``, ``en-GB-scotland``, ...) combined with a voice variant
(``m3``, ``f2``, ...). Everything random about an utterance is drawn from a generator keyed on the
corpus seed and the speaker id, so adding speakers never changes the existing ones.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from kedro_repro.determinism import derive_seed

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ZERO_AS_OH = "oh"
PLAN_COLUMNS = [
    "utt_id", "speaker", "accent", "variant", "transcript",
    "voice", "rate_wpm", "pitch", "noise_seed", "sample_rate",
]  # fmt: skip


def speaker_id(accent: str, variant: str) -> str:
    """A filesystem-safe speaker id, e.g. ``en-gb-scotland_f2``."""
    return re.sub(r"[^a-z0-9-]+", "-", accent.lower()) + "_" + variant.lower()


def plan_digit_corpus(params: dict[str, Any]) -> pd.DataFrame:
    """One row per utterance: who says what, how fast, at which pitch, with which noise seed."""
    rows = []
    for accent in params["accents"]:
        for variant in params["variants"]:
            speaker = speaker_id(accent, variant)
            rng = np.random.default_rng(derive_seed(params["seed"], "speaker", speaker))
            base_rate = rng.uniform(*_range(params["speaker_rate_wpm"]))
            base_pitch = rng.uniform(*_range(params["speaker_pitch"]))
            for index in range(params["utterances_per_speaker"]):
                n_digits = int(rng.integers(params["digits"]["min"], params["digits"]["max"] + 1))
                rows.append(
                    {
                        "utt_id": f"{speaker}-{index:04d}",
                        "speaker": speaker,
                        "accent": accent,
                        "variant": variant,
                        "transcript": _digit_string(
                            rng, n_digits, params["zero_as_oh_probability"]
                        ),
                        "voice": f"{accent}+{variant}",
                        "rate_wpm": round(
                            base_rate + rng.uniform(-1, 1) * params["rate_jitter_wpm"]
                        ),
                        "pitch": round(base_pitch + rng.uniform(-1, 1) * params["pitch_jitter"]),
                        "noise_seed": int(rng.integers(1, 2**31 - 1)),
                        "sample_rate": int(params["sample_rate"]),
                    }
                )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def _digit_string(rng: np.random.Generator, n_digits: int, oh_probability: float) -> str:
    words = []
    for digit in rng.integers(0, 10, size=n_digits):
        zero_as_oh = digit == 0 and rng.random() < oh_probability
        words.append(ZERO_AS_OH if zero_as_oh else DIGIT_WORDS[digit])
    return " ".join(words)


def _range(bounds: dict[str, float]) -> tuple[float, float]:
    return float(bounds["min"]), float(bounds["max"])
