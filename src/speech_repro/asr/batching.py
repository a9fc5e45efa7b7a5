"""Turn packed features + transcripts into padded CTC batches, with seeded order and augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from speech_repro.asr.augment import SpecAugmentConfig, spec_augment
from speech_repro.repro.determinism import make_generator


@dataclass(frozen=True)
class Utterance:
    """One training or test example: normalised features and target character indices."""

    utt_id: str
    features: torch.Tensor
    targets: list[int]


class UtteranceDataset(Dataset):
    """Utterances with optional SpecAugment keyed on (seed, epoch, utterance id)."""

    def __init__(
        self, utterances: list[Utterance], augment: SpecAugmentConfig | None = None, seed: int = 0
    ):
        self.utterances = utterances
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Utterance:
        utt = self.utterances[index]
        if self.augment is None:
            return utt
        generator = make_generator(self.seed, "specaugment", self.epoch, utt.utt_id)
        return Utterance(
            utt.utt_id, spec_augment(utt.features, self.augment, generator), utt.targets
        )


def collate(batch: list[Utterance]) -> dict:
    """Pad features to the longest utterance; concatenate targets as CTC expects."""
    lengths = torch.tensor([u.features.shape[0] for u in batch], dtype=torch.int64)
    features = torch.nn.utils.rnn.pad_sequence([u.features for u in batch], batch_first=True)
    return {
        "utt_ids": [u.utt_id for u in batch],
        "features": features,
        "lengths": lengths,
        "targets": torch.tensor([t for u in batch for t in u.targets], dtype=torch.int64),
        "target_lengths": torch.tensor([len(u.targets) for u in batch], dtype=torch.int64),
    }


def epoch_batches(
    lengths: list[int], batch_size: int, seed: int, epoch: int, bucket_batches: int = 8
) -> list[list[int]]:
    """Shuffled batches of similar-length utterances, a pure function of (lengths, seed, epoch).

    Shuffle everything, sort within windows of ``bucket_batches`` batches to limit padding, then
    shuffle the batch order.
    """
    generator = make_generator(seed, "shuffle", epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    permutation = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in permutation]
