"""Content digests of whatever a node produces, independent of how it is stored.

Tensors are hashed by name, dtype, shape and bytes in a fixed order; tables by column names,
dtypes and cell values; JSON-like values canonically. Two runs that produce the same values get
the same digests even if a file format adds timestamps or orders its bytes differently.

The rules, in order (see :func:`content_digest`):

- an object with a ``content_digest()`` method: its own digest;
- a matplotlib ``Figure``: what it shows, rendered with Agg at :data:`FIGURE_DPI` (width, height
  and RGBA pixels);
- a ``torch.Tensor``; a numpy array (dtype, shape, bytes; object arrays are refused);
- a ``pandas.DataFrame``;
- dicts, lists and tuples: tensors by content, the rest as JSON, where figures (``dict`` or
  ``list`` of them is what ``MatplotlibDataset`` saves), numpy arrays and tables inside are
  replaced by ``{"__figure__" | "__ndarray__" | "__table__": <their digest>}``;
- a :class:`~kedro_repro.checkpoints.CheckpointStore`: the checkpoint it resumes from
  (step and state), not where it lies;
- ``None``, bools, numbers and text: canonical JSON; paths, dates and times, numpy scalars
  (at the top or inside containers): the JSON of :func:`~kedro_repro.hashing.json_native`.

Anything else is a ``TypeError`` naming its type: hashing ``str(value)`` instead gives constant
digests ("Figure(700x400)") or ones holding a memory address, so a changed value goes unseen.

Digests do not depend on where a project lives: text that starts with the project folder is
hashed relative to it, so a replay in another folder can match bit for bit.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from blake3 import blake3

from kedro_repro.hashing import (
    ALGORITHM,
    bytes_digest,
    combined_digest,
    json_digest,
    json_native,
    tensors_digest,
)
from kedro_repro.state import flatten_state, loaded_instance

FIGURE_DPI = 100  # fixed, so a figure's digest follows what it shows, not its display dpi
_JSON_SCALARS = (type(None), bool, int, float, str)


def content_digest(value: Any, root: str | Path | None = None) -> str:
    """A digest of ``value``'s content, with paths under ``root`` made relative to it.

    Raises ``TypeError`` naming the type of a value (or of a value inside a container) that no
    rule covers; see the module docstring for the rules.
    """
    if root is not None:
        value = _relative(value, f"{Path(root).resolve()}/")
    if hasattr(value, "content_digest"):
        return value.content_digest()
    if _is_figure(value):
        return figure_digest(value)
    if loaded_instance(value, "torch", "Tensor"):
        return tensors_digest({"tensor": value})
    if loaded_instance(value, "numpy", "ndarray"):
        return _array_digest(value)
    if loaded_instance(value, "pandas", "DataFrame"):
        import pandas as pd

        cells = pd.util.hash_pandas_object(value, index=False).to_numpy().tobytes()
        header = json_digest([[str(c), str(t)] for c, t in value.dtypes.items()])
        return combined_digest([header, bytes_digest(cells)])
    if isinstance(value, Mapping | list | tuple):
        tensors, skeleton = flatten_state(_hashable(value))
        if not tensors:
            return json_digest(skeleton)
        return combined_digest([tensors_digest(tensors), json_digest(skeleton)])
    if loaded_instance(value, "kedro_repro.checkpoints", "CheckpointStore"):
        from kedro_repro.checkpoints import CheckpointStore

        # A copy, so the store a node is handed keeps its own record of what latest() skipped.
        latest = CheckpointStore(value.directory, resume_from=value.resume_from).latest()
        step, state = latest if latest is not None else (None, None)
        return json_digest({"checkpoint_step": step, "state": content_digest(state)})
    return json_digest(value)  # JSON scalars, and json_native's rules; TypeError for the rest


def figure_digest(figure: Any) -> str:
    """Digest of what a matplotlib figure shows: Agg rendering at :data:`FIGURE_DPI`.

    Hashes the pixel width, height and RGBA buffer. The figure's dpi and canvas are restored
    afterwards, so a later ``savefig`` (e.g. by ``MatplotlibDataset``) writes the same bytes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # only when there is a figure

    dpi, canvas = figure.dpi, figure.canvas
    try:
        agg = FigureCanvasAgg(figure)  # attaches itself to the figure: undone below
        figure.dpi = FIGURE_DPI
        agg.draw()
        width, height = agg.get_width_height(physical=True)
        pixels = agg.buffer_rgba()
        hasher = blake3(f"figure|{width}x{height}|rgba8|".encode())
        hasher.update(pixels)
    finally:
        figure.dpi = dpi
        figure.set_canvas(canvas)
    return f"{ALGORITHM}:{hasher.hexdigest()}"


def _is_figure(value: Any) -> bool:
    # A Figure can only exist once matplotlib.figure is imported: readers of records that hold
    # no figures never import matplotlib.
    module = sys.modules.get("matplotlib.figure")
    return module is not None and isinstance(value, module.Figure)


def _hashable(value: Any) -> Any:
    """``value`` with each member that has no tensor or JSON form replaced by the one hashed.

    Figures, numpy arrays and tables become ``{"__figure__" | "__ndarray__" | "__table__":
    <their content digest>}``; paths, dates and numpy scalars the JSON of
    :func:`~kedro_repro.hashing.json_native`, which raises ``TypeError`` for the rest.
    Returns ``value`` itself when nothing was replaced, so such containers hash as they did.
    """
    if _is_figure(value):
        return {"__figure__": figure_digest(value)}
    if loaded_instance(value, "numpy", "ndarray"):
        return {"__ndarray__": _array_digest(value)}
    if loaded_instance(value, "pandas", "DataFrame"):
        return {"__table__": content_digest(value)}
    if isinstance(value, Mapping):
        items = {k: _hashable(v) for k, v in value.items()}
        return items if any(items[k] is not v for k, v in value.items()) else value
    if isinstance(value, list | tuple):
        members = [_hashable(v) for v in value]
        changed = any(m is not v for m, v in zip(members, value, strict=True))
        return type(value)(members) if changed else value
    if isinstance(value, _JSON_SCALARS) or loaded_instance(value, "torch", "Tensor"):
        return value
    return json_native(value)


def _array_digest(array: Any) -> str:
    """Digest of a numpy array by dtype, shape and C-order bytes (memory layout does not count)."""
    if array.dtype.hasobject:  # the bytes would be pointers, not content
        raise TypeError(f"no content digest rule for a numpy array of dtype {array.dtype}")
    hasher = blake3(f"ndarray|{array.dtype.str}|{array.shape}|".encode())
    import numpy as np  # an array exists, so numpy is installed

    hasher.update(np.ascontiguousarray(array).tobytes())
    return f"{ALGORITHM}:{hasher.hexdigest()}"


def _relative(value: Any, prefix: str) -> Any:
    if loaded_instance(value, "pandas", "DataFrame"):
        import pandas as pd

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
    if isinstance(value, PurePath):  # hashed as its text (see json_native), so made relative too
        value = value.as_posix()
    if isinstance(value, str):
        return value.replace(prefix, "")
    if isinstance(value, Mapping):
        return {k: _relative(v, prefix) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_relative(v, prefix) for v in value)
    return value
