"""Stream features + transcripts into padded CTC batches, with seeded order and augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from kedro_repro.determinism import make_generator
from kedro_repro.shards import ShardedTensors
from speech_repro.asr.augment import SpecAugmentConfig, spec_augment


@dataclass(frozen=True)
class Utterance:
    """One training or test example: normalised features and target character indices."""

    utt_id: str
    features: torch.Tensor
    targets: list[int]


class UtteranceDataset(Dataset):
    """Utterances read lazily from a feature store, normalised, optionally augmented.

    Augmentation is keyed on (seed, epoch, utterance id); set ``epoch`` before each epoch.
    """

    def __init__(
        self,
        features: ShardedTensors,
        utt_ids: list[str],
        targets: list[list[int]],
        mean: torch.Tensor,
        std: torch.Tensor,
        augment: SpecAugmentConfig | None = None,
        seed: int = 0,
    ):
        self.features = features
        self.utt_ids = utt_ids
        self.targets = targets
        self.mean, self.std = mean, std
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.utt_ids)

    def lengths(self) -> list[int]:
        """Frames per utterance, without loading any features."""
        return [self.features.rows(u) for u in self.utt_ids]

    def __getitem__(self, index: int) -> Utterance:
        utt_id = self.utt_ids[index]
        features = (self.features[utt_id] - self.mean) / self.std
        if self.augment is not None:
            generator = make_generator(self.seed, "specaugment", self.epoch, utt_id)
            features = spec_augment(features, self.augment, generator)
        return Utterance(utt_id, features, self.targets[index])


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


def rank_batches(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """The share of one epoch's ``batches`` that process ``rank`` of ``world_size`` trains on.

    Rank ``r`` takes every ``world_size``-th batch starting at ``r``, and every rank takes the
    same number: the ``len(batches) % world_size`` batches left over are dropped this epoch (they
    are others next epoch, since :func:`epoch_batches` reshuffles). Every rank must take part in
    every gradient all-reduce, so equal counts are required. This is a seeded distributed sampler
    over *batches*: torch's ``DistributedSampler`` splits utterances, which would undo the
    length bucketing. With ``world_size`` 1 it returns ``batches`` unchanged.
    """
    per_rank = len(batches) // world_size
    return batches[rank::world_size][:per_rank]
