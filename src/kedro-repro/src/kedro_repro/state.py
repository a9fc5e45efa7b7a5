"""Save and load nested training state (model, optimizer, scheduler, RNG) without pickle.

Tensors go into a safetensors file; everything else (numbers, strings, nesting, tuples, integer
dict keys) goes into a JSON skeleton stored in the file's metadata. Loading never executes code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro_repro.atomic import atomic_path

if TYPE_CHECKING:
    import torch

_SKELETON_KEY = "state_skeleton"


def loaded_instance(value: Any, module: str, name: str) -> bool:
    """Whether ``value`` is a ``module.name``, without importing ``module``.

    An instance can only exist once its module is imported, so projects without torch, numpy or
    pandas never import them here (records, checks and diffs of such projects stay light).
    """
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(value, getattr(loaded, name))


def flatten_state(state: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split ``state`` into named tensors and a JSON skeleton that says where each one goes."""
    tensors: dict[str, torch.Tensor] = {}
    return tensors, _encode(state, "", tensors)


def save_state(path: str | Path, state: Any, metadata: dict[str, str] | None = None) -> None:
    """Atomically write ``state`` (any nesting of dicts, lists, tuples, tensors, scalars) to ``path``."""
    tensors, skeleton = flatten_state(state)
    meta = {**(metadata or {}), _SKELETON_KEY: json.dumps(skeleton)}  # keeps dict order
    with atomic_path(path) as tmp:
        # Bytes written into our own temporary file: save_file would write a temporary of its
        # own (.tmpXXXXXX) beside it, which a kill mid-write leaves behind under no writer's name.
        from safetensors.torch import save

        tmp.write_bytes(_canonical(save(tensors, metadata=meta)))


def _canonical(data: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted.

    safetensors writes the metadata map in hash order, which differs from one write to the next,
    so the same state got other bytes (another file digest) about every second time once the
    metadata has two keys. The header stays padded with spaces to 8 bytes, as safetensors does.
    """
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


def load_state(path: str | Path) -> Any:
    """Load what :func:`save_state` wrote."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    return _decode(json.loads(read_metadata(path)[_SKELETON_KEY]), tensors)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file, without reading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if loaded_instance(value, "torch", "Tensor"):
        name = key or "root"
        if name in tensors:  # e.g. {"a/b": x, "a": {"b": y}}: refuse rather than overwrite
            raise ValueError(f"two tensors would be stored under the name {name!r}")
        # safetensors refuses shared or non-contiguous storage; a private copy is always safe.
        tensors[name] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__map__": {k: _encode(v, f"{key}/{k}", tensors) for k, v in value.items()}}
        return {"__items__": [[k, _encode(v, f"{key}/{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {key!r} without pickling")


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        return tensors[node["__tensor__"]]
    if "__map__" in node:
        return {k: _decode(v, tensors) for k, v in node["__map__"].items()}
    if "__items__" in node:
        return {k: _decode(v, tensors) for k, v in node["__items__"]}
    if "__tuple__" in node:
        return tuple(_decode(v, tensors) for v in node["__tuple__"])
    raise ValueError(f"unknown state node {sorted(node)}")
