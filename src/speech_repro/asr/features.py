"""Log-mel features with torchaudio, with every setting explicit (no library defaults)."""

from __future__ import annotations

import torch
import torchaudio

from speech_repro.asr.config import FeatureConfig


def mel_spectrogram(config: FeatureConfig) -> torchaudio.transforms.MelSpectrogram:
    """The power mel spectrogram every front end of the project computes (training's features,
    the exported models)."""
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=config.sample_rate,
        n_fft=config.n_fft,
        win_length=config.win_length,
        hop_length=config.hop_length,
        f_min=config.f_min,
        f_max=config.f_max,
        n_mels=config.n_mels,
        power=2.0,
        center=True,
        pad_mode="reflect",
        norm="slaney",
        mel_scale="slaney",
    )


class LogMel(torch.nn.Module):
    """Waveform (float, [-1, 1]) -> log-mel features of shape (frames, n_mels)."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.mel = mel_spectrogram(config)

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(waveform) + self.config.log_floor).transpose(0, 1).contiguous()
