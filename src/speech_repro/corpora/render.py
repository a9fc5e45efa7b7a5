"""Turn a corpus plan into 16-bit PCM waveforms at the target sample rate."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
import torchaudio.functional as AF

from speech_repro.corpora.espeak import SynthesisRequest, synthesize


def render_plan(
    plan: pd.DataFrame, workers: int, progress: Callable[[int], object] | None = None
) -> list[np.ndarray]:
    """Synthesize every planned utterance; int16 mono waveforms at each row's ``sample_rate``.

    ``progress(1)`` is called as each utterance is synthesized."""
    requests = [
        SynthesisRequest(r.transcript, r.voice, int(r.rate_wpm), int(r.pitch), int(r.noise_seed))
        for r in plan.itertuples()
    ]
    waves, native_rate = synthesize(requests, workers=workers, progress=progress)
    return [
        to_pcm16(resample(w, native_rate, int(rate)))
        for w, rate in zip(waves, plan["sample_rate"], strict=True)
    ]


def resample(pcm16: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling in float64, so rounding back to 16 bits absorbs any ISA-level noise."""
    wave = torch.from_numpy(pcm16.astype(np.float64) / 32768.0)
    if source_rate != target_rate:
        wave = AF.resample(wave, source_rate, target_rate)
    return wave.numpy()


def to_pcm16(wave: np.ndarray) -> np.ndarray:
    """Round a [-1, 1) float waveform to int16 with clipping."""
    return np.clip(np.round(wave * 32768.0), -32768, 32767).astype(np.int16)
