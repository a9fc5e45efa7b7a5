"""Content digests of whatever a node produces, independent of how it is stored.

Tensors are hashed by name, dtype, shape and bytes in a fixed order; tables by column names,
dtypes and cell values; JSON-like values canonically. Two runs that produce the same values get
the same digests even if a file format adds timestamps or orders its bytes differently.

Digests do not depend on where a project lives: text that starts with the project folder is
hashed relative to it, so a replay in another folder can match bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from speech_repro.repro.hashing import bytes_digest, combined_digest, json_digest, tensors_digest
from speech_repro.repro.state import flatten_state


def content_digest(value: Any, root: str | Path | None = None) -> str:
    """A digest of ``value``'s content, with paths under ``root`` made relative to it."""
    if root is not None:
        value = _relative(value, f"{Path(root).resolve()}/")
    if hasattr(value, "content_digest"):
        return value.content_digest()
    if isinstance(value, torch.Tensor):
        return tensors_digest({"tensor": value})
    if isinstance(value, pd.DataFrame):
        cells = pd.util.hash_pandas_object(value, index=False).to_numpy().tobytes()
        header = json_digest([[str(c), str(t)] for c, t in value.dtypes.items()])
        return combined_digest([header, bytes_digest(cells)])
    if isinstance(value, Mapping | list | tuple):
        tensors, skeleton = flatten_state(value)
        if not tensors:
            return json_digest(skeleton)
        return combined_digest([tensors_digest(tensors), json_digest(skeleton)])
    return json_digest(value)


def _relative(value: Any, prefix: str) -> Any:
    if isinstance(value, pd.DataFrame):
        text = [
            c
            for c in value.columns
            if value[c].dtype == object or pd.api.types.is_string_dtype(value[c])
        ]
        if not text:
            return value
        return value.assign(
            **{c: value[c].astype(str).str.replace(prefix, "", regex=False) for c in text}
        )
    if isinstance(value, str):
        return value.replace(prefix, "")
    if isinstance(value, Mapping):
        return {k: _relative(v, prefix) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_relative(v, prefix) for v in value)
    return value
