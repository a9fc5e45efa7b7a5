"""Batch order, collation, keyed augmentation in the dataset, and feature packing."""

from __future__ import annotations

import torch

from kedro_repro.shards import ShardedTensors, write_shards
from speech_repro.asr.augment import SpecAugmentConfig
from speech_repro.asr.batching import Utterance, UtteranceDataset, collate, epoch_batches
from speech_repro.asr.features import FeatureConfig, LogMel

LENGTHS = [(i * 37) % 50 + 5 for i in range(53)]


def test_epoch_batches_is_a_pure_function():
    a = epoch_batches(LENGTHS, 4, seed=1, epoch=0)
    torch.rand(10)  # global RNG use in between must not matter
    assert epoch_batches(list(LENGTHS), 4, seed=1, epoch=0) == a


def test_epoch_batches_cover_every_index_once():
    for epoch in range(3):
        batches = epoch_batches(LENGTHS, 4, seed=1, epoch=epoch, bucket_batches=3)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(LENGTHS)))
        assert all(1 <= len(b) <= 4 for b in batches)
        assert sum(len(b) < 4 for b in batches) <= -(-len(LENGTHS) // 12)  # one short per window


def test_epoch_batches_differ_between_epochs_and_seeds():
    base = epoch_batches(LENGTHS, 4, seed=1, epoch=0)
    assert epoch_batches(LENGTHS, 4, seed=1, epoch=1) != base
    assert epoch_batches(LENGTHS, 4, seed=2, epoch=0) != base


def test_epoch_batches_are_length_sorted_within_each_batch():
    for batch in epoch_batches(LENGTHS, 4, seed=3, epoch=0):
        assert [LENGTHS[i] for i in batch] == sorted(LENGTHS[i] for i in batch)


def test_epoch_batches_empty_input():
    assert epoch_batches([], 4, seed=0, epoch=0) == []


def test_collate_pads_and_concatenates():
    a = Utterance("a", torch.ones(3, 2), [1, 2])
    b = Utterance("b", torch.full((5, 2), 2.0), [3])
    c = Utterance("c", torch.full((1, 2), 3.0), [4, 5, 6])
    batch = collate([a, b, c])
    assert batch["utt_ids"] == ["a", "b", "c"]
    assert batch["features"].shape == (3, 5, 2)
    assert batch["lengths"].tolist() == [3, 5, 1]
    assert torch.equal(batch["features"][0, :3], a.features)
    assert torch.all(batch["features"][0, 3:] == 0)
    assert torch.equal(batch["features"][1], b.features)
    assert torch.all(batch["features"][2, 1:] == 0)
    assert batch["targets"].tolist() == [1, 2, 3, 4, 5, 6]
    assert batch["target_lengths"].tolist() == [2, 1, 3]
    assert batch["targets"].dtype == batch["target_lengths"].dtype == torch.int64


def _dataset(tmp_path, ids, augment=None, seed=0) -> UtteranceDataset:
    g = torch.Generator().manual_seed(0)
    features = {f"u{i}": torch.randn(40 + i, 12, generator=g) for i in range(4)}
    write_shards(tmp_path, [dict(list(features.items())[:2]), dict(list(features.items())[2:])])
    store = ShardedTensors(tmp_path)
    targets = [[int(u[1:]) + 1] for u in ids]
    return UtteranceDataset(
        store, ids, targets, torch.full((12,), 0.5), torch.full((12,), 2.0), augment, seed
    )


def test_dataset_reads_lazily_and_normalises(tmp_path):
    ds = _dataset(tmp_path, ["u0", "u1", "u2", "u3"])
    assert len(ds) == 4 and ds.lengths() == [40, 41, 42, 43]
    raw = ds.features["u2"]
    assert torch.equal(ds[2].features, (raw - 0.5) / 2.0)
    assert ds[2].targets == [3] and ds[2].utt_id == "u2"


def test_dataset_augmentation_is_keyed_on_seed_epoch_and_utterance(tmp_path):
    aug = SpecAugmentConfig(freq_width=4, time_width=8)
    plain = _dataset(tmp_path / "plain", ["u0", "u1", "u2", "u3"])
    ds = _dataset(tmp_path / "a", ["u0", "u1", "u2", "u3"], aug, seed=7)
    first = ds[1].features
    assert not torch.equal(first, plain[1].features)
    # Same utterance at another index (different dataset order) gets the same masks.
    reordered = _dataset(tmp_path / "b", ["u3", "u2", "u1", "u0"], aug, seed=7)
    assert torch.equal(reordered[2].features, first)
    ds.epoch = 1
    assert not torch.equal(ds[1].features, first)
    ds.epoch = 0
    assert torch.equal(ds[1].features, first)
    assert not torch.equal(_dataset(tmp_path / "c", ["u0", "u1"], aug, seed=8)[1].features, first)


def test_logmel_shape_matches_expected_frames():
    config = FeatureConfig(n_mels=20)
    logmel = LogMel(config)
    for n in (1600, 1601, 2000):
        wave = torch.sin(torch.arange(n) * 0.3) * 0.5
        out = logmel(wave)
        assert out.shape == (config.expected_frames(n), 20)
        assert out.is_contiguous() and torch.isfinite(out).all()
    silence = logmel(torch.zeros(1600))
    assert torch.allclose(silence, torch.full_like(silence, torch.log(torch.tensor(1e-6))))
