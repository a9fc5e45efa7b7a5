"""SpecAugment masks drawn from an explicit generator.

torchaudio's masking transforms draw from the global RNG and take no generator, which couples
augmentation to everything else that consumes random numbers. Here every utterance's masks come
from a generator keyed on (seed, epoch, utterance), so they are the same whatever the batch
composition, worker count or resume point.
"""

from __future__ import annotations

import torch

from speech_repro.asr.config import SpecAugmentConfig


def spec_augment(
    features: torch.Tensor, config: SpecAugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Return a copy of ``features`` (frames, bins) with masked bands set to the utterance mean."""
    if torch.rand((), generator=generator) >= config.p:
        return features
    out = features.clone()
    frames, bins = out.shape
    fill = out.mean()
    for _ in range(config.freq_masks):
        width = int(torch.randint(0, min(config.freq_width, bins) + 1, (), generator=generator))
        start = int(torch.randint(0, bins - width + 1, (), generator=generator))
        out[:, start : start + width] = fill
    for _ in range(config.time_masks):
        width = int(
            torch.randint(0, min(config.time_width, frames // 5) + 1, (), generator=generator)
        )
        start = int(torch.randint(0, frames - width + 1, (), generator=generator))
        out[start : start + width, :] = fill
    return out
