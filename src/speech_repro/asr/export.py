"""A trained model as one standalone file: waveform in, CTC log-probabilities out.

:class:`StandaloneModel` puts the run's feature front end (log-mel, then the train-split
normalisation) in front of the :class:`~speech_repro.asr.model.CTCModel`, for one utterance at a
time: without a batch there is no padding, so the recurrent layer runs on the plain sequence
instead of a packed one (``pack_padded_sequence`` does not export). :func:`export_torchscript`
and :func:`export_onnx` write it with its vocabulary and configuration, so the file alone (and,
for ONNX, its JSON sidecar) is enough to transcribe: greedy decoding is an argmax, merging
repeats and dropping index 0 (the CTC blank), then the vocabulary's characters.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from speech_repro.asr.config import FeatureConfig
from speech_repro.asr.features import mel_spectrogram
from speech_repro.asr.model import CTCModel
from speech_repro.asr.text import BLANK, TextNormalization

VOCABULARY_FILE = "vocabulary.json"
CONFIG_FILE = "config.json"


class DFTLogMel(nn.Module):
    """The log-mel front end of :class:`~speech_repro.asr.features.LogMel` with the short-time
    Fourier transform written as a strided convolution with a windowed DFT basis.

    Same framing (centred, reflect padding), window, power and mel filters as torchaudio's
    ``MelSpectrogram``; it exists because ONNX export cannot take ``torch.stft``'s complex
    output (the TorchScript-based exporter) and the dynamo exporter fails on the GRU with a
    dynamic length (torch 2.11). The sums run in another order, so features differ from
    torchaudio's by float rounding; the export's parity test measures it.
    """

    def __init__(self, mel: torchaudio.transforms.MelSpectrogram, log_floor: float) -> None:
        super().__init__()
        spectrogram = mel.spectrogram
        n_fft, win_length = spectrogram.n_fft, spectrogram.win_length
        window = torch.zeros(n_fft, dtype=torch.float64)
        offset = (n_fft - win_length) // 2  # torch.stft centres a shorter window in n_fft
        window[offset : offset + win_length] = spectrogram.window.double()
        frequencies = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        phase = 2 * torch.pi * frequencies * torch.arange(n_fft, dtype=torch.float64) / n_fft
        basis = torch.cat([torch.cos(phase) * window, -torch.sin(phase) * window])
        self.register_buffer("basis", basis.float()[:, None, :])  # (2 * bins, 1, n_fft)
        self.register_buffer("filters", mel.mel_scale.fb.clone())  # (bins, mels)
        self.n_fft, self.hop_length, self.log_floor = n_fft, spectrogram.hop_length, log_floor

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        padded = F.pad(waveform[None, None, :], (self.n_fft // 2, self.n_fft // 2), "reflect")
        spectrum = F.conv1d(padded, self.basis, stride=self.hop_length)[0]  # (2 * bins, frames)
        real, imaginary = spectrum.chunk(2, dim=0)
        power = (real * real + imaginary * imaginary).transpose(0, 1)  # (frames, bins)
        return torch.log(power @ self.filters + self.log_floor)


class StandaloneModel(nn.Module):
    """Mono float32 waveform ``(samples,)`` at ``features.sample_rate`` -> log-probabilities
    ``(frames, vocabulary)`` of one utterance.

    ``dft_front_end``: compute the spectrum with :class:`DFTLogMel` (for ONNX) instead of
    torchaudio's ``MelSpectrogram`` (what training used; TorchScript keeps it).
    """

    def __init__(
        self,
        model: CTCModel,
        features: FeatureConfig,
        mean: torch.Tensor,
        std: torch.Tensor,
        dft_front_end: bool = False,
    ) -> None:
        super().__init__()
        # LogMel's own spectrogram, outside LogMel: a scripted or exported module cannot call
        # its no_grad-decorated forward.
        mel = mel_spectrogram(features)
        self.front_end = (
            DFTLogMel(mel, features.log_floor)
            if dft_front_end
            else _LogMel(mel, features.log_floor)
        )
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.subsample, self.conv = model.subsample, model.conv
        self.rnn, self.head = model.rnn, model.head

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        features = self.front_end(waveform)  # (frames, mels)
        x = ((features - self.mean) / self.std).transpose(0, 1).unsqueeze(0)  # (1, mels, frames)
        x = F.gelu(self.conv(F.gelu(self.subsample(x)))).transpose(1, 2)
        x, _ = self.rnn(x)
        return self.head(x).log_softmax(dim=-1)[0]


class _LogMel(nn.Module):
    """torchaudio's log-mel, as :class:`~speech_repro.asr.features.LogMel` computes it."""

    def __init__(self, mel: torchaudio.transforms.MelSpectrogram, log_floor: float) -> None:
        super().__init__()
        self.mel, self.log_floor = mel, log_floor

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(waveform) + self.log_floor).transpose(0, 1)


def standalone_model(
    model: CTCModel,
    features: FeatureConfig,
    mean: torch.Tensor,
    std: torch.Tensor,
    dft_front_end: bool = False,
) -> StandaloneModel:
    """The model in inference mode (no dropout) behind its front end."""
    return StandaloneModel(model.eval(), features, mean, std, dft_front_end).eval()


def describe(
    vocabulary: list[str],
    features: FeatureConfig,
    normalization: TextNormalization,
    model_config: dict,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The sidecar and metadata: what the input must be and how to read the output."""
    return {
        "input": {
            "waveform": "float32 (samples,), mono, [-1, 1]",
            "sample_rate": features.sample_rate,
        },
        "output": {"log_probs": "float32 (frames, vocabulary)", "blank": 0},
        "vocabulary": vocabulary,
        "features": asdict(features),
        "text_normalization": asdict(normalization),
        "model": model_config,
        **extra,
    }


def greedy_text(log_probs: Any, vocabulary: list[str]) -> str:
    """Greedy CTC decoding of one utterance's ``(frames, vocabulary)`` scores (torch or NumPy)."""
    best = [int(i) for i in log_probs.argmax(-1).tolist()]
    kept = [s for i, s in enumerate(best) if s != 0 and (i == 0 or s != best[i - 1])]
    return "".join(vocabulary[s] for s in kept if vocabulary[s] != BLANK)


def export_torchscript(module: StandaloneModel, path: Path, description: dict[str, Any]) -> Path:
    """A scripted module with ``vocabulary.json`` and ``config.json`` as extra files."""
    scripted = torch.jit.script(module)
    files = {
        VOCABULARY_FILE: json.dumps(description["vocabulary"], ensure_ascii=False),
        CONFIG_FILE: json.dumps(description, ensure_ascii=False, indent=1),
    }
    torch.jit.save(scripted, str(path), _extra_files=files)
    return path


def export_onnx(
    module: StandaloneModel, path: Path, description: dict[str, Any], example: torch.Tensor
) -> tuple[Path, Path]:
    """An ONNX graph (dynamic waveform length) with the vocabulary and configuration in its
    ``metadata_props``, plus the same description as a JSON sidecar ``<path>.json``."""
    import onnx

    # The TorchScript-based exporter: the dynamo exporter (torch 2.11) fails on the GRU once
    # its length is dynamic. The module must have the DFT front end (no complex STFT).
    with warnings.catch_warnings():
        # Constant-folding notes, and a GRU warning about batches other than 1 (this is one)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["waveform"],
            output_names=["log_probs"],
            dynamic_axes={"waveform": {0: "samples"}, "log_probs": {0: "frames"}},
        )
    graph = onnx.load(str(path))
    for key, value in (
        ("vocabulary", json.dumps(description["vocabulary"], ensure_ascii=False)),
        ("config", json.dumps(description, ensure_ascii=False)),
    ):
        graph.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save(graph, str(path))
    sidecar = path.with_name(path.name + ".json")
    sidecar.write_text(json.dumps(description, ensure_ascii=False, indent=1) + "\n")
    return path, sidecar
