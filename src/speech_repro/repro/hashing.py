"""Content digests for files, byte strings, tensors and JSON-like values.

Digests are written as ``<algorithm>:<hex>`` so a reader never has to guess the algorithm.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ALGORITHM = "sha256"
_CHUNK = 1 << 20


def bytes_digest(data: bytes) -> str:
    """Digest of a byte string."""
    return f"{ALGORITHM}:{hashlib.new(ALGORITHM, data).hexdigest()}"


def file_digest(path: str | Path) -> str:
    """Digest of a file's full content, read in chunks."""
    with open(path, "rb") as handle:
        return f"{ALGORITHM}:{hashlib.file_digest(handle, ALGORITHM).hexdigest()}"


def json_digest(value: Any) -> str:
    """Digest of a JSON-serialisable value in canonical form (sorted keys, no whitespace)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return bytes_digest(canonical.encode())


def combined_digest(digests: Iterable[str]) -> str:
    """One digest naming a collection, over its members' digests in sorted order."""
    return bytes_digest("\n".join(sorted(digests)).encode())


def tensors_digest(tensors: Mapping[str, Any]) -> str:
    """Digest of named tensors by content (name, dtype, shape, raw bytes), in sorted name order.

    Independent of the container format, so two files holding equal tensors get equal digests.
    """
    h = hashlib.new(ALGORITHM)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(_byte_dtype()).numpy().tobytes() if t.numel() else b"")
    return f"{ALGORITHM}:{h.hexdigest()}"


def _byte_dtype():
    import torch

    return torch.uint8
