"""The audio, feature and augmentation settings as typed records.

Kept apart from the torch code that uses them: project settings read them (the parameter
schema), and a ``kedro`` command that only reads run records must not import torch.
"""

from __future__ import annotations

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as pydantic_dataclass

__all__ = ["AudioPolicy", "FeatureConfig", "SpecAugmentConfig"]


# A pydantic dataclass: validated when built, unknown fields refused (parameters).
@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class AudioPolicy:
    """What to do with audio that is not already at the target rate and mono.

    ``resample``: bring other sample rates to ``sample_rate`` (torchaudio's band-limited sinc
    resampling), or reject them. ``downmix``: ``mean`` of the channels, the ``first`` channel, or
    ``error`` to reject multi-channel audio. Utterances outside ``[min_seconds, max_seconds]``
    are rejected.
    """

    sample_rate: int = 16000
    resample: bool = True
    downmix: str = "mean"
    min_seconds: float = 0.1
    max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.downmix not in {"mean", "first", "error"}:
            raise ValueError(f"audio.downmix must be mean, first or error, not {self.downmix!r}")


# A pydantic dataclass: validated when built, unknown fields refused (parameters).
@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class FeatureConfig:
    """Log-mel settings; defaults are the usual 25 ms windows every 10 ms at 16 kHz."""

    sample_rate: int = 16000
    n_fft: int = 400
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float = 7600.0
    log_floor: float = 1e-6

    def expected_frames(self, num_samples: int) -> int:
        """Frame count for a waveform of ``num_samples`` (centred frames: 1 + n // hop)."""
        return 1 + num_samples // self.hop_length


# A pydantic dataclass: validated when built, unknown fields refused (parameters).
@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class SpecAugmentConfig:
    """Mask counts and maximum widths (frequency bins, frames); ``p`` is the chance to augment."""

    freq_masks: int = 2
    freq_width: int = 8
    time_masks: int = 2
    time_width: int = 10
    p: float = 1.0
