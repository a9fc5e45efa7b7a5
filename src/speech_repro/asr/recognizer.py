"""A trained model as a recogniser: waveforms in, normalised text out, as its run prepared audio.

:class:`Recognizer` holds everything a run's decoding depends on: the model bundle (architecture,
weights, vocabulary), the train-split normalisation statistics, the feature settings, the audio
policy and the text normalisation. Audio is read, down-mixed and resampled by
:func:`speech_repro.asr.audio.load_audio` and turned into log-mel features with one torch thread,
exactly as ``compute_features`` did for the run; decoding is the evaluation's greedy CTC path, so
a recogniser built from a run reproduces the run's own hypotheses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from kedro_repro.determinism import torch_threads
from speech_repro.asr.audio import load_audio
from speech_repro.asr.config import AudioPolicy, FeatureConfig
from speech_repro.asr.features import LogMel
from speech_repro.asr.model import CTCModel, ModelConfig, greedy_decode
from speech_repro.asr.text import CharVocabulary, TextNormalization
from speech_repro.parameters import TextParams


@dataclass(frozen=True)
class AudioItem:
    """One utterance to transcribe: its id, its audio file and the span ``[start, end)`` in seconds
    (``end`` NaN: to the end of the file)."""

    utt_id: str
    path: str
    start: float = 0.0
    end: float = math.nan


class Recognizer:
    """Greedy CTC transcription with one run's model, features, normalisation and vocabulary."""

    def __init__(
        self,
        model: CTCModel,
        vocabulary: CharVocabulary,
        mean: torch.Tensor,
        std: torch.Tensor,
        features: FeatureConfig,
        audio: AudioPolicy,
        normalization: TextNormalization,
    ) -> None:
        if features.sample_rate != audio.sample_rate:
            raise ValueError(
                f"features.sample_rate {features.sample_rate} != audio.sample_rate "
                f"{audio.sample_rate}"
            )
        self.model = model.eval()
        self.vocabulary = vocabulary
        self.mean, self.std = mean, std
        self.features = features
        self.audio = audio
        self.normalization = normalization
        self.logmel = LogMel(features)

    @classmethod
    def from_bundle(
        cls,
        model: dict,
        norm_stats: dict,
        features: FeatureConfig,
        audio: AudioPolicy,
        text: TextParams,
    ) -> Recognizer:
        """From the ``model`` and ``norm_stats`` datasets of a run and its parameters.

        The vocabulary is the one stored with the weights (what the model was trained on); the
        text normalisation is the run's ``text.normalization``.
        """
        net = CTCModel(ModelConfig(**model["config"]))
        net.load_state_dict(model["weights"])
        return cls(
            net,
            CharVocabulary(model["vocabulary"]),
            norm_stats["mean"],
            norm_stats["std"],
            features,
            audio,
            text.normalization,
        )

    def read(self, item: AudioItem) -> torch.Tensor:
        """The mono waveform of ``item`` at the model's rate, down-mixed and resampled as declared."""
        return load_audio(item.path, self.audio, item.start, item.end)

    def featurize(self, waveform: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel features (frames, mels) of a waveform, computed as data preparation
        computed them (one torch thread: the same bits as the run's feature shards)."""
        with torch_threads(1):
            features = self.logmel(waveform)
        return (features - self.mean) / self.std

    def log_probs(self, waveforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC log-probabilities (batch, frames, vocabulary) and valid frames per waveform."""
        features = [self.featurize(w) for w in waveforms]
        lengths = torch.tensor([f.shape[0] for f in features], dtype=torch.int64)
        padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)
        with torch.inference_mode():
            return self.model(padded, lengths)

    def transcribe(self, waveforms: Sequence[torch.Tensor]) -> list[str]:
        """Normalised hypotheses of mono waveforms at ``audio.sample_rate``, in order."""
        if not waveforms:
            return []
        log_probs, lengths = self.log_probs(waveforms)
        return [
            self.normalization(self.vocabulary.decode(path))
            for path in greedy_decode(log_probs, lengths)
        ]

    def transcribe_items(
        self,
        items: Sequence[AudioItem],
        batch_size: int = 16,
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Hypotheses of ``items`` read from disk, decoded ``batch_size`` at a time;
        ``progress(n)`` is called after each batch of ``n``."""
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {batch_size}")
        hypotheses: list[str] = []
        for batch in _batches(items, batch_size):
            hypotheses += self.transcribe([self.read(item) for item in batch])
            if progress is not None:
                progress(len(batch))
        return hypotheses


def _batches(items: Sequence[AudioItem], size: int) -> Iterable[Sequence[AudioItem]]:
    return (items[i : i + size] for i in range(0, len(items), size))
