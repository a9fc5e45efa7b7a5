"""Data-parallel training with 2 processes (torchrun, gloo on CPU) on the real tiny corpus.

A DDP run completes, is bitwise reproducible run to run, and continues bit-exactly from a
mid-epoch checkpoint; world size 2 differs from 1 only as it should. torchrun and two ranks cost
seconds to start, so one uninterrupted run is shared by the tests of this module (3 launches).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.determinism import DeterminismPolicy
from kedro_repro.hashing import tensors_digest
from kedro_repro.ledger import content_digest
from speech_repro.asr.batching import epoch_batches, rank_batches
from speech_repro.parameters import DistributedParams, ModelParams, TextParams, TrainingParams
from speech_repro.pipelines.training.distributed import _failure, resolve_backend
from speech_repro.pipelines.training.nodes import train_model

WORLD = 2


def _train(prepared, params, store, world_size=WORLD, **training):
    distributed = {"world_size": world_size, "backend": "auto"}
    return train_model(
        prepared["features"],
        prepared["split_lock"],
        prepared["manifest"],
        prepared["norm_stats"],
        TrainingParams(
            **{**params["training"], "checkpoint_every_steps": 1, "distributed": distributed}
            | training
        ),
        ModelParams(**params["model"]),
        TextParams(**params["text"]),
        store,
        DeterminismPolicy(**params["determinism"]),
    )


@pytest.fixture(scope="module")
def reference(prepared, params, tmp_path_factory):
    """One uninterrupted 2-process run with a checkpoint after every step: (bundle, log, store)."""
    store = CheckpointStore(tmp_path_factory.mktemp("ddp-reference"))
    bundle, log, _ = _train(prepared, params, store)
    return bundle, log, store


@pytest.fixture(scope="module")
def train_lengths(prepared):
    """Frames per train utterance, in split-lock order (what training batches)."""
    split_lock = prepared["split_lock"]
    train = split_lock.loc[split_lock["split"] == "train", "utt_id"]
    return [prepared["features"].rows(u) for u in train]


def test_a_ddp_run_completes_and_reproduces_bit_for_bit(reference, prepared, params, tmp_path):
    bundle, log, store = reference
    again, again_log, _ = _train(prepared, params, CheckpointStore(tmp_path))
    assert tensors_digest(again["weights"]) == tensors_digest(bundle["weights"])
    assert again_log.equals(log)
    # Every intermediate state too, RNG states of both ranks included.
    assert CheckpointStore(tmp_path).steps() == store.steps() == list(range(1, len(log) + 1))
    for step in store.steps():
        assert content_digest(CheckpointStore(tmp_path).load(step)) == content_digest(
            store.load(step)
        )
    state = store.load(store.steps()[-1])
    assert state["world_size"] == WORLD
    assert len(state["rng"]) == WORLD  # one RNG state per rank, in rank order
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # per-rank seeds


# What gloo's worker threads sometimes do while a finished rank's interpreter shuts down
# ("terminate called without an active exception", SIGABRT), every time: ranks only (torchrun
# sets RANK), at interpreter exit.
ABORT_AT_EXIT = "import atexit, os\nif 'RANK' in os.environ:\n    atexit.register(os.abort)\n"


def test_a_rank_that_finished_is_not_failed_by_its_interpreter_shutdown(
    reference, prepared, params, tmp_path, monkeypatch
):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(ABORT_AT_EXIT)
    monkeypatch.setenv("PYTHONPATH", str(site))
    again, _, _ = _train(prepared, params, CheckpointStore(tmp_path / "checkpoints"))
    assert tensors_digest(again["weights"]) == tensors_digest(reference[0]["weights"])


def test_a_failure_after_every_rank_finished_says_so(tmp_path):
    for rank in (0, 1):
        place = {"rank": rank, "node_rank": rank, "host": "box", "pid": 100 + rank}
        (tmp_path / f"rank-{rank}.json").write_text(json.dumps(place))
        (tmp_path / f"rank-{rank}.done").touch()
    distributed = DistributedParams(
        world_size=2, nnodes=2, rendezvous="127.0.0.1:1", workdir=str(tmp_path)
    )
    message = _failure(tmp_path, 1, distributed)
    assert "every rank (0, 1) finished training" in message
    assert "exiting" in message and "kedro repro resume" in message


def test_ddp_resume_from_a_mid_epoch_checkpoint_is_bit_exact(reference, prepared, params, tmp_path):
    bundle, log, store = reference
    steps_per_epoch = len(log) // params["training"]["epochs"]
    killed_at = 1
    assert killed_at % steps_per_epoch != 0, "the test needs a checkpoint inside an epoch"
    # A run killed right after writing the step-1 checkpoint leaves exactly that file (each is
    # written atomically and never touched again); resume it the way `kedro repro resume` does:
    # a new store of its own that continues from the killed run's newest checkpoint.
    killed = tmp_path / "killed"
    killed.mkdir()
    name = store.directory / f"step-{killed_at:09d}.safetensors"
    shutil.copy2(name, killed / name.name)
    resumed_store = CheckpointStore(tmp_path / "resumed", resume_from=killed)
    resumed, resumed_log, _ = _train(prepared, params, resumed_store)
    assert tensors_digest(resumed["weights"]) == tensors_digest(bundle["weights"])
    assert resumed_log.equals(log)
    assert resumed_store.steps() == list(range(killed_at + 1, len(log) + 1))


def test_world_size_2_differs_from_1_only_as_expected(
    reference, prepared, params, train_lengths, tmp_path, record_property
):
    bundle, log, _ = reference
    single, single_log, _ = _train(
        prepared, params, CheckpointStore(tmp_path / "one"), world_size=1
    )
    plain, plain_log, _ = _train(
        prepared, params, CheckpointStore(tmp_path / "plain"), distributed={}
    )
    # World size 1 is the plain single-process run, bit for bit.
    assert tensors_digest(single["weights"]) == tensors_digest(plain["weights"])
    assert single_log.equals(plain_log)
    # World size 2: each step trains on one batch per rank (a global batch twice as large), so an
    # epoch has half the steps; the batches left over when they do not split evenly are skipped.
    seed, batch_size = params["training"]["seed"], params["training"]["batch_size"]
    for epoch in range(params["training"]["epochs"]):
        batches = epoch_batches(train_lengths, batch_size, seed, epoch)
        shares = [rank_batches(batches, rank, WORLD) for rank in range(WORLD)]
        expected = [sum(len(share[i]) for share in shares) for i in range(len(shares[0]))]
        assert log.loc[log["epoch"] == epoch, "batch_size"].tolist() == expected
        assert single_log.loc[single_log["epoch"] == epoch, "batch_size"].tolist() == [
            len(b) for b in batches
        ]
    # Same architecture and initial weights, a different optimisation path: other bits.
    assert bundle["config"] == single["config"]
    assert bundle["weights"].keys() == single["weights"].keys()
    difference = max(
        float((bundle["weights"][k] - single["weights"][k]).abs().max()) for k in bundle["weights"]
    )
    record_property("max_abs_weight_difference_world_2_vs_1", difference)
    final_losses = [float(log["loss"].iat[-1]), float(single_log["loss"].iat[-1])]
    record_property("final_loss_world_2_vs_1", final_losses)  # plain floats: xdist sends them
    assert difference > 0
    assert np.isfinite(log["loss"]).all()


def test_a_checkpoint_continues_only_at_the_world_size_that_wrote_it(
    reference, prepared, params, tmp_path
):
    _, _, store = reference
    other = CheckpointStore(tmp_path, resume_from=store.directory)
    with pytest.raises(ValueError, match="world_size: 2"):
        _train(prepared, params, other, world_size=1)


def test_ranks_share_each_epoch_evenly_and_disjointly():
    batches = [[i] for i in range(7)]
    shares = [rank_batches(batches, rank, 3) for rank in range(3)]
    assert [len(s) for s in shares] == [2, 2, 2]  # one batch left over this epoch
    trained = sorted(b[0] for s in shares for b in s)
    assert len(set(trained)) == len(trained) == 6
    assert rank_batches(batches, 0, 1) == batches


def test_the_backend_follows_the_device_and_is_checked_before_launch():
    assert resolve_backend("cpu", "auto", WORLD) == "gloo"
    assert resolve_backend("cpu", "gloo", WORLD) == "gloo"
    with pytest.raises(ValueError, match=r"needs training\.device: cuda"):
        resolve_backend("cpu", "nccl", WORLD)
    with pytest.raises(ValueError, match="must be one of"):
        resolve_backend("cpu", "mpi", WORLD)
    with pytest.raises(ValueError, match="needs 64 GPUs"):
        resolve_backend("cuda", "auto", 64)
