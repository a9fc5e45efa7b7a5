"""Log-mel features with torchaudio, with every setting explicit (no library defaults)."""

from __future__ import annotations

import torch
import torchaudio
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as pydantic_dataclass


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


class LogMel(torch.nn.Module):
    """Waveform (float, [-1, 1]) -> log-mel features of shape (frames, n_mels)."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
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

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(waveform) + self.config.log_floor).transpose(0, 1).contiguous()
