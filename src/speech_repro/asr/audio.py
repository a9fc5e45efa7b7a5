"""Reading audio under a declared policy: channel down-mix and resampling to the target rate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

MAX_SAMPLE = 1e3  # full scale is 1.0; far beyond it is a broken float file, not loud speech


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class AudioInfo:
    """What inspecting one (segment of an) audio file found; ``error`` is empty when readable."""

    sample_rate: int = 0
    channels: int = 0
    num_samples: int = 0
    error: str = ""


def _frames(rate: int, start: float, end: float) -> tuple[int, int | None]:
    first = round(start * rate)
    return first, (None if end is None or math.isnan(end) else round(end * rate))


def inspect_audio(path: str, start: float = 0.0, end: float = math.nan) -> AudioInfo:
    """Decode the whole (segment of the) file once and report its properties or what is wrong.

    Catches unreadable, empty, truncated (header promises more data than the file holds),
    undecodable, non-finite and absurdly large samples (whose features would be inf or NaN).
    """
    try:
        info = sf.info(path)
    except Exception as error:  # libsndfile raises several types; the message is what matters
        return AudioInfo(error=f"unreadable: {error}")
    if "should be" in info.extra_info:  # libsndfile's parser noticed a chunk larger than the file
        return AudioInfo(
            info.samplerate, info.channels, 0, "truncated: header and file size disagree"
        )
    first, last = _frames(info.samplerate, start, end)
    if last is not None and last > info.frames:
        return AudioInfo(
            info.samplerate,
            info.channels,
            0,
            f"segment ends after the file ({info.frames} samples)",
        )
    try:
        wave, _ = sf.read(path, start=first, stop=last, dtype="float32", always_2d=True)
    except Exception as error:
        return AudioInfo(info.samplerate, info.channels, 0, f"undecodable: {error}")
    if len(wave) == 0:
        return AudioInfo(info.samplerate, info.channels, 0, "empty: no samples")
    if not np.isfinite(wave).all():
        return AudioInfo(
            info.samplerate, info.channels, len(wave), "non-finite samples (NaN or inf)"
        )
    if np.abs(wave).max() > MAX_SAMPLE:  # float files can hold values whose power overflows
        return AudioInfo(
            info.samplerate,
            info.channels,
            len(wave),
            f"samples beyond +-{MAX_SAMPLE:g} (features would overflow)",
        )
    return AudioInfo(info.samplerate, info.channels, len(wave))


def load_audio(
    path: str, policy: AudioPolicy, start: float = 0.0, end: float = math.nan
) -> torch.Tensor:
    """Mono float32 waveform at ``policy.sample_rate``, down-mixed and resampled as declared."""
    rate = sf.info(path).samplerate
    first, last = _frames(rate, start, end)
    wave, rate = sf.read(path, start=first, stop=last, dtype="float32", always_2d=True)
    samples = torch.from_numpy(wave)
    if samples.shape[1] > 1:
        if policy.downmix == "error":
            raise ValueError(f"{path}: {samples.shape[1]} channels and audio.downmix is 'error'")
        samples = samples.mean(dim=1) if policy.downmix == "mean" else samples[:, 0]
    else:
        samples = samples[:, 0]
    if rate != policy.sample_rate:
        if not policy.resample:
            raise ValueError(
                f"{path}: {rate} Hz, expected {policy.sample_rate} Hz and audio.resample is false"
            )
        samples = AF.resample(samples, rate, policy.sample_rate)
    return samples.contiguous()
