"""Ledger digests: every value a node saves gets a digest of its content, never of its str()."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.ledger import content_digest


def _line_figure(ys: list[float], dpi: float = 100) -> Figure:
    """A figure drawn without pyplot, as the reporting nodes draw theirs."""
    figure = Figure(figsize=(4.0, 3.0), dpi=dpi)
    axes = figure.add_subplot()
    axes.plot(range(len(ys)), ys)
    axes.set(title="curve", xlabel="step")
    return figure


def test_different_figures_get_different_digests():
    a, b = _line_figure([1, 2, 3]), _line_figure([1, 2, 4])
    assert content_digest(a) != content_digest(b)
    assert content_digest(a) == content_digest(_line_figure([1, 2, 3]))  # same drawing, same digest


def test_figure_digest_does_not_depend_on_the_figure_dpi():
    # The digest renders at a fixed DPI, so it follows what is drawn, not a display setting.
    assert content_digest(_line_figure([1, 2, 3], dpi=72)) == content_digest(
        _line_figure([1, 2, 3], dpi=100)
    )


_DRAW = textwrap.dedent(
    """
    from matplotlib.figure import Figure
    from kedro_repro.ledger import content_digest
    figure = Figure(figsize=(4.0, 3.0))
    axes = figure.add_subplot()
    axes.plot([0, 1, 2, 3], [3.0, 1.0, 2.0, 0.5], label="loss")
    axes.set(title="Learning curves", yscale="log")
    axes.legend()
    figure.tight_layout()
    print(content_digest(figure))
    """
)


def test_same_figure_drawn_in_two_processes_gets_the_same_digest():
    digests = [
        subprocess.run(
            [sys.executable, "-c", _DRAW],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")  # different hash seeds: nothing may depend on set/dict hashing
    ]
    assert digests[0] == digests[1]
    assert digests[0].startswith("blake3:")


@pytest.mark.parametrize("dpi", [72, 100])
def test_digest_of_a_figure_does_not_change_what_matplotlib_dataset_saves(tmp_path, dpi):
    from kedro_datasets.matplotlib import MatplotlibDataset

    figure = _line_figure([3, 1, 2], dpi=dpi)
    canvas = figure.canvas
    default_dpi = MatplotlibDataset(filepath=str(tmp_path / "a.png"))  # savefig at figure dpi
    fixed_dpi = MatplotlibDataset(filepath=str(tmp_path / "b.png"), save_args={"dpi": 100})
    default_dpi.save(figure)
    fixed_dpi.save(figure)
    before = [(tmp_path / n).read_bytes() for n in ("a.png", "b.png")]

    content_digest(figure)

    assert figure.dpi == dpi
    assert figure.canvas is canvas
    default_dpi.save(figure)
    fixed_dpi.save(figure)
    assert [(tmp_path / n).read_bytes() for n in ("a.png", "b.png")] == before


def test_collections_of_figures_are_digested_by_their_figures():
    a, b, c = _line_figure([1, 2]), _line_figure([2, 1]), _line_figure([1, 1])
    assert content_digest({"a.png": a, "b.png": b}) == content_digest(
        {"a.png": _line_figure([1, 2]), "b.png": _line_figure([2, 1])}
    )
    assert content_digest({"a.png": a, "b.png": b}) != content_digest({"a.png": a, "b.png": c})
    assert content_digest({"a.png": a, "b.png": b}) != content_digest({"b.png": a, "a.png": b})
    assert content_digest([a, b]) != content_digest([b, a])
    assert content_digest([a, b], root="/somewhere") == content_digest([a, b])


class Opaque:
    """Something no digest rule knows."""

    def __str__(self) -> str:
        return "always the same text"


def test_a_value_without_digest_rule_is_an_error_naming_its_type():
    with pytest.raises(TypeError, match="Opaque"):
        content_digest(Opaque())
    with pytest.raises(TypeError, match="Opaque"):
        content_digest({"nested": [Opaque()]})


def test_numpy_arrays_are_digested_by_dtype_shape_and_bytes():
    a = np.arange(6, dtype=np.int64)
    assert content_digest(a) == content_digest(np.arange(6, dtype=np.int64))
    assert content_digest(a) != content_digest(a.astype(np.int32))
    assert content_digest(a) != content_digest(a.reshape(2, 3))
    assert content_digest(a.reshape(2, 3).T) == content_digest(
        np.ascontiguousarray(a.reshape(2, 3).T)
    )
    with pytest.raises(TypeError, match="object"):
        content_digest(np.array([Opaque()], dtype=object))


def test_checkpoint_store_is_digested_by_the_state_it_resumes_from(tmp_path):
    empty = content_digest(CheckpointStore(tmp_path / "a"))  # a store reads its folder lazily
    assert empty == content_digest(CheckpointStore(tmp_path / "b"))

    state = {"model": {"w": torch.ones(3)}, "step": 4}
    CheckpointStore(tmp_path / "a").save(4, state)
    CheckpointStore(tmp_path / "b").save(4, state)
    filled = content_digest(CheckpointStore(tmp_path / "a"))
    assert filled != empty
    assert filled == content_digest(CheckpointStore(tmp_path / "b"))  # not where, only what
    assert filled == content_digest(CheckpointStore(tmp_path / "new", resume_from=tmp_path / "b"))

    CheckpointStore(tmp_path / "b").save(4, {**state, "model": {"w": torch.zeros(3)}})
    assert content_digest(CheckpointStore(tmp_path / "b")) != filled


def test_values_inside_containers_follow_the_same_rules(tmp_path):
    from pathlib import Path

    import pandas as pd

    assert content_digest({"p": Path("a/b"), "n": np.int64(3)}) == content_digest(
        {"p": "a/b", "n": 3}
    )
    assert content_digest({"p": tmp_path / "x"}, root=tmp_path) == content_digest({"p": "x"})
    assert content_digest({"a": np.arange(3)}) != content_digest(
        {"a": np.arange(3, dtype=np.int32)}
    )
    assert content_digest({"t": pd.DataFrame({"x": [1]})}) != content_digest(
        {"t": pd.DataFrame({"x": [2]})}
    )
    # containers of JSON and tensors only hash exactly as before figures had a rule
    plain = {"w": torch.ones(2), "meta": {"step": 3, "tags": ["a", None, 1.5]}}
    assert content_digest(plain) == "blake3:" + _reference_digest(plain)


def _reference_digest(value: dict) -> str:
    """The digest the ledger gave dicts of tensors and JSON before this rule set existed."""
    from kedro_repro.hashing import combined_digest, json_digest, tensors_digest
    from kedro_repro.state import flatten_state

    tensors, skeleton = flatten_state(value)
    return combined_digest([tensors_digest(tensors), json_digest(skeleton)]).split(":", 1)[1]
