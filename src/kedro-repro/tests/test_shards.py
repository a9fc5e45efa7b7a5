"""Sharded tensor store: items read back exactly, lazily, and incomplete writes are refused."""

from __future__ import annotations

import pickle

import pytest
import torch

from kedro_repro.shards import INDEX_FILE, ShardedTensors, write_shards


def _shards():
    g = torch.Generator().manual_seed(3)
    return [
        {f"a{i}": torch.randn(i + 1, 4, generator=g) for i in range(3)},
        {"b0": torch.randn(7, 4, generator=g)},
    ]


def test_items_round_trip_in_order_and_by_id(tmp_path):
    shards = _shards()
    assert write_shards(tmp_path, iter(shards)) == 4  # a generator is fine
    store = ShardedTensors(tmp_path)
    assert list(store) == ["a0", "a1", "a2", "b0"] and len(store) == 4 and "b0" in store
    for shard in shards:
        for item, tensor in shard.items():
            assert torch.equal(store[item], tensor) and store.rows(item) == tensor.shape[0]
    assert [list(s) for s in store.shards()] == [["a0", "a1", "a2"], ["b0"]]


def test_a_directory_without_index_is_incomplete(tmp_path):
    write_shards(tmp_path, _shards())
    (tmp_path / INDEX_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="not completely written"):
        ShardedTensors(tmp_path)


def test_an_item_in_two_shards_is_refused(tmp_path):
    with pytest.raises(ValueError, match="two shards"):
        write_shards(tmp_path, [{"x": torch.zeros(1, 2)}, {"x": torch.ones(1, 2)}])


def test_reader_survives_pickling_for_dataloader_workers(tmp_path):
    write_shards(tmp_path, _shards())
    store = ShardedTensors(tmp_path)
    _ = store["a1"]  # opens a file handle
    clone = pickle.loads(pickle.dumps(store))
    assert torch.equal(clone["a1"], store["a1"])
