"""Tensors keyed by item id, written in shards and read back one item at a time.

A shard is a safetensors file holding the items' rows concatenated (``data``) and their row
``offsets``; ``index.json`` maps every item to its shard and rows. Readers memory-map shards and
slice one item without loading the rest, so a consumer never holds the whole collection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from speech_repro.repro.atomic import atomic_open, atomic_path

INDEX_FILE = "index.json"


def write_shards(directory: str | Path, shards: Iterable[dict[str, torch.Tensor]]) -> int:
    """Write each ``{item id: tensor}`` shard as it arrives; returns the number of items.

    Items of one shard are concatenated along dimension 0, so their other dimensions must agree.
    The index is written last: a directory without ``index.json`` is incomplete.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index: dict[str, list] = {"shards": [], "items": {}}
    for number, shard in enumerate(shards):
        name = f"shard-{number:05d}.safetensors"
        ids = list(shard)
        lengths = torch.tensor([shard[i].shape[0] for i in ids], dtype=torch.int64)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        with atomic_path(directory / name) as tmp:
            save_file(
                {"data": torch.cat([shard[i] for i in ids]).contiguous(), "offsets": offsets},
                str(tmp),
            )
        index["shards"].append({"file": name, "items": ids})
        for k, item in enumerate(ids):
            if item in index["items"]:
                raise ValueError(f"item {item!r} appears in two shards")
            index["items"][item] = [number, int(offsets[k]), int(offsets[k + 1])]
    with atomic_open(directory / INDEX_FILE) as handle:
        json.dump(index, handle)
    return len(index["items"])


class ShardedTensors:
    """Read side of :func:`write_shards`: ``store[item_id]`` loads one item's rows."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        index_file = self.directory / INDEX_FILE
        if not index_file.exists():
            raise FileNotFoundError(
                f"{index_file} is missing: the shards were not completely written"
            )
        index = json.loads(index_file.read_text())
        self._files = [self.directory / s["file"] for s in index["shards"]]
        self._shard_items = [s["items"] for s in index["shards"]]
        self._items = index["items"]
        self._handles: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: str) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def rows(self, item: str) -> int:
        """Number of rows (e.g. frames) of one item."""
        _, start, end = self._items[item]
        return end - start

    def __getitem__(self, item: str) -> torch.Tensor:
        number, start, end = self._items[item]
        if number not in self._handles:
            self._handles[number] = safe_open(str(self._files[number]), framework="pt")
        return self._handles[number].get_slice("data")[start:end]

    def shards(self) -> Iterator[dict[str, torch.Tensor]]:
        """Whole shards in order, one in memory at a time."""
        for path, items in zip(self._files, self._shard_items, strict=True):
            loaded = load_file(str(path))
            data, offsets = loaded["data"], loaded["offsets"].tolist()
            yield {item: data[offsets[k] : offsets[k + 1]] for k, item in enumerate(items)}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}  # open files do not cross process boundaries
