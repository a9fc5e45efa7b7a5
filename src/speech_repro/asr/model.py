"""A small CTC acoustic model: convolutional front end, bidirectional GRU, linear character head.

Readable in one sitting: features (B, T, F) -> log-probabilities (B, T/stride, vocabulary).
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as pydantic_dataclass
from torch import nn
from torch.nn import functional as F


# A pydantic dataclass: validated when built, unknown fields refused (parameters).
@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ModelConfig:
    """Architecture of :class:`CTCModel`; stored with the weights so a model reloads on its own."""

    n_mels: int = 40
    vocab_size: int = 29
    conv_channels: int = 128
    conv_kernel: int = 5
    stride: int = 2
    rnn_hidden: int = 128
    rnn_layers: int = 2
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class CTCModel(nn.Module):
    """Conv1d subsampling -> BiGRU -> Linear, trained with CTC over characters (index 0 = blank)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        pad = config.conv_kernel // 2
        self.subsample = nn.Conv1d(
            config.n_mels, config.conv_channels, config.conv_kernel, config.stride, pad
        )
        self.conv = nn.Conv1d(
            config.conv_channels, config.conv_channels, config.conv_kernel, 1, pad
        )
        self.rnn = nn.GRU(
            config.conv_channels,
            config.rnn_hidden,
            num_layers=config.rnn_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.rnn_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * config.rnn_hidden, config.vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames after the strided convolution."""
        pad = self.config.conv_kernel // 2
        return (lengths + 2 * pad - self.config.conv_kernel) // self.config.stride + 1

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out_lengths = self.output_lengths(lengths)
        x = F.gelu(self.subsample(features.transpose(1, 2)))
        # Padding frames must look like the convolution's own zero padding to the next layer,
        # otherwise an utterance's output depends on the longest utterance in its batch.
        valid = torch.arange(x.shape[-1], device=x.device) < out_lengths[:, None].to(x.device)
        x = F.gelu(self.conv(x * valid[:, None, :])).transpose(1, 2)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, out_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        x, _ = self.rnn(packed)
        x, _ = nn.utils.rnn.pad_packed_sequence(
            x, batch_first=True, total_length=int(out_lengths.max())
        )
        return self.head(self.dropout(x)).log_softmax(dim=-1), out_lengths


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path per utterance with repeats merged and blanks (0) removed."""
    best = log_probs.argmax(dim=-1)
    decoded = []
    for path, length in zip(best, lengths, strict=True):
        path = path[: int(length)].tolist()
        decoded.append([s for i, s in enumerate(path) if s != 0 and (i == 0 or s != path[i - 1])])
    return decoded
