"""Tensors keyed by item id, written in shards and read back one item at a time.

A shard is a safetensors file holding the items' rows concatenated (``data``) and their row
``offsets``; ``index.json`` maps every item to its shard and rows. Readers read one item's bytes
without loading the rest, so a consumer never holds the whole collection.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from blake3 import blake3
from safetensors.torch import load_file, save_file

from kedro_repro.atomic import atomic_open, atomic_path
from kedro_repro.hashing import ALGORITHM, tensors_digest

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
        self._layouts: dict[int, tuple[int, torch.dtype, tuple[int, ...]]] = {}

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
        if number not in self._layouts:
            self._layouts[number] = _data_layout(self._files[number])
        offset, dtype, row_shape = self._layouts[number]
        row_bytes = math.prod(row_shape) * dtype.itemsize
        # pread, not mmap: pages read this way stay in the page cache instead of counting towards
        # this process's memory, so reading a whole corpus does not grow the process.
        with open(self._files[number], "rb") as handle:
            data = os.pread(handle.fileno(), (end - start) * row_bytes, offset + start * row_bytes)
        return torch.frombuffer(bytearray(data), dtype=dtype).reshape(end - start, *row_shape)

    def shards(self) -> Iterator[dict[str, torch.Tensor]]:
        """Whole shards in order, one in memory at a time."""
        for path, items in zip(self._files, self._shard_items, strict=True):
            loaded = load_file(str(path))
            data, offsets = loaded["data"], loaded["offsets"].tolist()
            yield {item: data[offsets[k] : offsets[k + 1]] for k, item in enumerate(items)}

    def content_digest(self) -> str:
        """Digest of every item's tensor, in item order (independent of how items are sharded)."""
        hasher = blake3()
        for shard in self.shards():
            for item, tensor in shard.items():
                hasher.update(f"{item}|".encode())
                hasher.update(tensors_digest({"t": tensor}).encode())
        return f"{ALGORITHM}:{hasher.hexdigest()}"


_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
}


def _data_layout(path: Path) -> tuple[int, torch.dtype, tuple[int, ...]]:
    """Byte offset, dtype and row shape of the ``data`` tensor in a safetensors file."""
    with open(path, "rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
    entry = header["data"]
    return (
        8 + header_size + entry["data_offsets"][0],
        _DTYPES[entry["dtype"]],
        tuple(entry["shape"][1:]),
    )
