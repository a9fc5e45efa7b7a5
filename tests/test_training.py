"""Training on the real tiny corpus: determinism, seed sensitivity, bit-exact resume, no RNG leaks."""

from __future__ import annotations

import ast
import graphlib
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import speech_repro
from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.determinism import DeterminismPolicy, seed_globals
from kedro_repro.hashing import tensors_digest
from speech_repro.parameters import ModelParams, TextParams, TrainingParams
from speech_repro.pipelines import seeds
from speech_repro.pipelines.training import create_pipeline
from speech_repro.pipelines.training.nodes import train_model


class Crash(Exception):
    """Stands in for the process dying right after a checkpoint was written."""


class CrashingStore(CheckpointStore):
    def save(self, step, state, epoch=None):
        path = super().save(step, state, epoch=epoch)
        raise Crash(path)


def _train(prepared, params, store, determinism=None, **training):
    return train_model(
        prepared["features"],
        prepared["split_lock"],
        prepared["manifest"],
        prepared["norm_stats"],
        TrainingParams(**{**params["training"], **training}),
        ModelParams(**params["model"]),
        TextParams(**params["text"]),
        store,
        DeterminismPolicy(**(params["determinism"] if determinism is None else determinism)),
    )


def test_same_seed_same_bits_other_seed_other_bits(prepared, params, tmp_path):
    first, log_a, _ = _train(prepared, params, CheckpointStore(tmp_path / "a"))
    second, log_b, _ = _train(prepared, params, CheckpointStore(tmp_path / "b"))
    other, _, _ = _train(
        prepared, params, CheckpointStore(tmp_path / "c"), seed=params["training"]["seed"] + 1
    )
    assert tensors_digest(first["weights"]) == tensors_digest(second["weights"])
    assert log_a.equals(log_b)
    assert tensors_digest(first["weights"]) != tensors_digest(other["weights"])


def test_resume_after_a_crash_is_bit_exact(prepared, params, tmp_path):
    uninterrupted, full_log, _ = _train(prepared, params, CheckpointStore(tmp_path / "straight"))
    with pytest.raises(Crash):
        _train(prepared, params, CrashingStore(tmp_path / "crashed"))
    assert CheckpointStore(tmp_path / "crashed").steps() == [
        len(full_log) // params["training"]["epochs"]
    ]
    resumed, resumed_log, _ = _train(prepared, params, CheckpointStore(tmp_path / "crashed"))
    assert tensors_digest(resumed["weights"]) == tensors_digest(uninterrupted["weights"])
    assert resumed_log.equals(full_log)


def test_each_epoch_leaves_a_full_checkpoint(prepared, params, tmp_path):
    store = CheckpointStore(tmp_path)
    _, log, _ = _train(prepared, params, store)
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
    from kedro_repro import environment

    monkeypatch.setattr(environment, "_nvidia_driver_version", lambda: "535.54.03")
    store = CheckpointStore(tmp_path / "ckpt")
    with pytest.raises(RuntimeError, match=r"NVIDIA driver 535\.54\.03 is older than 580"):
        _train(prepared, params, store, device="cuda")
    assert store.latest() is None


SOURCE = Path(speech_repro.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    """Every speech_repro module ``path`` imports, at the top or inside a function."""
    module = ".".join(path.relative_to(SOURCE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name.removesuffix(".__init__") for name in found if name.startswith("speech_repro")}


def _import_graph() -> dict[str, set[str]]:
    """Which speech_repro modules each speech_repro module imports."""
    modules = {
        ".".join(p.relative_to(SOURCE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in SOURCE.rglob("*.py")
    }
    return {
        name: {t for t in _imported_modules(path) if t in modules and t != name}
        for name, path in modules.items()
    }


def test_no_module_imports_one_that_imports_it_back():
    graph = _import_graph()
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle
    # Evaluation reads features through asr/, not through the training node (and its torchrun).
    reached, todo = set(), ["speech_repro.pipelines.evaluation.nodes"]
    while todo:
        for target in graph[todo.pop()] - reached:
            reached.add(target)
            todo.append(target)
    assert not {m for m in reached if m.startswith("speech_repro.pipelines.training")}


def test_each_module_imports_alone_in_a_fresh_interpreter():
    modules = [
        "speech_repro.pipelines.training.loop",
        "speech_repro.pipelines.training.distributed",
        "speech_repro.pipelines.training.nodes",
        "speech_repro.pipelines.evaluation.nodes",
        "speech_repro.asr.dataset",
    ]
    # One interpreter per module, all at once (each spends seconds importing torch).
    started = {
        m: subprocess.Popen(
            [sys.executable, "-c", f"import {m}"], stderr=subprocess.PIPE, text=True
        )
        for m in modules
    }
    errors = {m: p.communicate()[1] for m, p in started.items()}
    failed = {m: errors[m] for m, p in started.items() if p.returncode != 0}
    assert failed == {}


def test_the_node_takes_the_determinism_parameters():
    (node,) = create_pipeline().nodes
    assert "params:determinism" in node.inputs
    # A seed sweep's namespaces share the one policy the hook applied to the process.
    sweep = seeds.create_pipeline(seeds=[1, 2])
    trainers = [n for n in sweep.nodes if n.name.endswith("train_model")]
    assert len(trainers) == 2
    assert all("params:determinism" in n.inputs for n in trainers)


def test_the_ranks_threads_come_from_the_policy_passed_in_not_from_the_process(
    prepared, params, tmp_path, monkeypatch
):
    """The Kedro process may hold any thread count (no hook ran here, or a library changed it):
    the ranks get ``determinism.threads // world_size`` of the parameters the node was given."""
    from speech_repro.pipelines.training import distributed

    class Launched(Exception):
        """Stops the launcher once it has written what the ranks would read."""

    def capture(*args, **kwargs):
        raise Launched(kwargs["policy"])

    monkeypatch.setattr(distributed, "write_workdir", capture)
    previous = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with pytest.raises(Launched) as launched:
            _train(
                prepared,
                params,
                CheckpointStore(tmp_path),
                determinism={**params["determinism"], "threads": 2},
                distributed={"world_size": 2, "backend": "gloo"},
            )
    finally:
        torch.set_num_threads(previous)
    (policy,) = launched.value.args
    assert policy.threads == 1
