"""Training on the real tiny corpus: determinism, seed sensitivity, bit-exact resume, no RNG leaks."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from speech_repro.pipelines.training.nodes import train_model
from speech_repro.repro.checkpoints import CheckpointStore
from speech_repro.repro.determinism import seed_globals
from speech_repro.repro.hashing import tensors_digest


class Crash(Exception):
    """Stands in for the process dying right after a checkpoint was written."""


class CrashingStore(CheckpointStore):
    def save(self, step, state):
        path = super().save(step, state)
        raise Crash(path)


def _train(prepared, params, store, **training):
    return train_model(
        prepared["features"],
        prepared["split_lock"],
        prepared["manifest"],
        prepared["norm_stats"],
        {**params["training"], **training},
        params["model"],
        params["text"],
        store,
    )


def test_same_seed_same_bits_other_seed_other_bits(prepared, params, tmp_path):
    first, log_a = _train(prepared, params, CheckpointStore(tmp_path / "a"))
    second, log_b = _train(prepared, params, CheckpointStore(tmp_path / "b"))
    other, _ = _train(
        prepared, params, CheckpointStore(tmp_path / "c"), seed=params["training"]["seed"] + 1
    )
    assert tensors_digest(first["weights"]) == tensors_digest(second["weights"])
    assert log_a.equals(log_b)
    assert tensors_digest(first["weights"]) != tensors_digest(other["weights"])


def test_resume_after_a_crash_is_bit_exact(prepared, params, tmp_path):
    uninterrupted, full_log = _train(prepared, params, CheckpointStore(tmp_path / "straight"))
    with pytest.raises(Crash):
        _train(prepared, params, CrashingStore(tmp_path / "crashed"))
    assert CheckpointStore(tmp_path / "crashed").steps() == [
        len(full_log) // params["training"]["epochs"]
    ]
    resumed, resumed_log = _train(prepared, params, CheckpointStore(tmp_path / "crashed"))
    assert tensors_digest(resumed["weights"]) == tensors_digest(uninterrupted["weights"])
    assert resumed_log.equals(full_log)


def test_each_epoch_leaves_a_full_checkpoint(prepared, params, tmp_path):
    store = CheckpointStore(tmp_path)
    _, log = _train(prepared, params, store)
    assert len(store.steps()) == params["training"]["epochs"]
    step, state = store.latest()
    assert step == len(log)
    assert {"step", "model", "optimizer", "scheduler", "rng", "log"} <= set(state)
    assert state["scheduler"]["last_epoch"] == len(log)
    assert set(state["rng"]) >= {"python", "numpy", "torch"}


def _draws() -> tuple:
    return random.random(), float(np.random.random()), torch.rand(3).tolist()


def test_training_does_not_disturb_the_global_rngs(prepared, params, tmp_path):
    seed_globals(7)
    expected = _draws()
    seed_globals(7)
    _train(prepared, params, CheckpointStore(tmp_path))
    assert _draws() == expected


def test_a_cuda_run_on_a_too_old_driver_stops_before_training(
    prepared, params, tmp_path, monkeypatch
):
    """The driver check runs whether or not this machine has a GPU: nvidia-smi is stubbed."""
    from speech_repro.repro import environment

    monkeypatch.setattr(environment, "_nvidia_driver_version", lambda: "535.54.03")
    store = CheckpointStore(tmp_path / "ckpt")
    with pytest.raises(RuntimeError, match=r"NVIDIA driver 535\.54\.03 is older than 580"):
        _train(prepared, params, store, device="cuda")
    assert store.latest() is None
