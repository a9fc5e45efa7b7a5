"""Reading audio under a declared policy: channel down-mix and resampling to the target rate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from speech_repro.asr.config import AudioPolicy

MAX_SAMPLE = 1e3  # full scale is 1.0; far beyond it is a broken float file, not loud speech


@dataclass(frozen=True)
class AudioInfo:
    """What inspecting one (segment of an) audio file found; ``error`` is empty when readable.

    ``decoded`` is False when the span was refused on its header alone (outside the duration
    bounds): ``num_samples`` is then the header's count and the samples were never read.
    """

    sample_rate: int = 0
    channels: int = 0
    num_samples: int = 0
    error: str = ""
    decoded: bool = True


def _frames(rate: int, start: float, end: float) -> tuple[int, int | None]:
    first = round(start * rate)
    return first, (None if end is None or math.isnan(end) else round(end * rate))


def span_frames(rate: int, frames: int, start: float, end: float) -> tuple[int, int]:
    """First and last (exclusive) sample frame of ``[start, end)`` seconds in a file of ``frames``.

    ``end`` NaN means the end of the file. Raises ``ValueError`` for non-finite times.
    """
    if not (math.isfinite(start) and (math.isnan(end) or math.isfinite(end))):
        raise ValueError(f"segment times {start}, {end} are not finite")
    first, last = _frames(rate, start, end)
    return first, frames if last is None else last


BLOCK_FRAMES = 1 << 16  # samples decoded at a time by the scan (256 KiB per channel as float32)


def inspect_audio(
    path: str,
    start: float = 0.0,
    end: float = math.nan,
    min_seconds: float | None = None,
    max_seconds: float | None = None,
) -> AudioInfo:
    """Report the properties of (a segment of) a file, or what is wrong with it.

    Rate, channels and length come from the header first: a span outside ``[min_seconds,
    max_seconds]`` (when given) is reported with ``decoded=False`` and never decoded, so a
    two-hour file costs a header read. Otherwise the span is decoded once, in blocks of
    ``BLOCK_FRAMES`` (memory does not grow with the file), which catches unreadable, empty,
    truncated (header promises more data than the file holds), undecodable, non-finite and
    absurdly large samples (whose features would be inf or NaN).
    """
    try:
        info = sf.info(path)
    except Exception as error:  # libsndfile raises several types; the message is what matters
        return AudioInfo(error=f"unreadable: {error}")
    rate, channels = info.samplerate, info.channels
    if "should be" in info.extra_info:  # libsndfile's parser noticed a chunk larger than the file
        return AudioInfo(rate, channels, 0, "truncated: header and file size disagree")
    try:
        first, last = span_frames(rate, info.frames, start, end)
    except (ValueError, OverflowError) as error:
        return AudioInfo(rate, channels, 0, f"invalid segment: {error}")
    if last > info.frames:
        return AudioInfo(rate, channels, 0, f"segment ends after the file ({info.frames} samples)")
    if last <= first:
        return AudioInfo(rate, channels, 0, "empty: no samples")
    seconds = (last - first) / rate
    too_short = min_seconds is not None and seconds < min_seconds
    if too_short or (max_seconds is not None and seconds > max_seconds):
        return AudioInfo(rate, channels, last - first, decoded=False)
    count, peak = 0, 0.0
    try:
        stop = None if math.isnan(end) else last
        for block in sf.blocks(
            path, blocksize=BLOCK_FRAMES, start=first, stop=stop, dtype="float32", always_2d=True
        ):
            if not np.isfinite(block).all():
                return AudioInfo(
                    rate, channels, count + len(block), "non-finite samples (NaN or inf)"
                )
            count += len(block)
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
    except Exception as error:
        return AudioInfo(rate, channels, 0, f"undecodable: {error}")
    if count == 0:
        return AudioInfo(rate, channels, 0, "empty: no samples")
    if peak > MAX_SAMPLE:  # float files can hold values whose power overflows
        return AudioInfo(
            rate, channels, count, f"samples beyond +-{MAX_SAMPLE:g} (features would overflow)"
        )
    return AudioInfo(rate, channels, count)


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
