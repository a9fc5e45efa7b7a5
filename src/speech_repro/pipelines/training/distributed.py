"""Data-parallel training on torch.distributed: the node's launcher and the per-rank entry point.

Kedro runs ``train_model`` in one process, and a node stays a function of its inputs. With
``training.distributed.world_size`` > 1 the node therefore writes its inputs to a temporary
working directory, runs

    python -m torch.distributed.run --standalone --nproc-per-node=N \\
        -m speech_repro.pipelines.training.distributed <workdir>

and waits. Every rank reads the inputs back, applies the determinism policy with its share of
the threads, joins the process group (gloo on CPU, NCCL on CUDA) and runs the same training loop
as a single process (:func:`speech_repro.pipelines.training.loop.fit`) on its share of the
seeded batches. Rank 0 alone writes checkpoints (into the run's checkpoint store, holding every
rank's RNG state) and the final model and log (into the working directory), which the node
reads back and returns exactly as the single-process path does.

The working directory holds:

- ``spec.json``: world size, backend, the per-rank determinism policy, the ``training``,
  ``model`` and ``text`` parameters, the feature store's directory and the checkpoint store's
  directories;
- ``manifest.parquet``, ``split_lock.parquet``, ``norm_stats.safetensors``: the other inputs;
- ``result.safetensors``: the model bundle and log, written by rank 0 at the end;
- ``rank-<r>.error``: the traceback of a rank that failed.

On a cluster, the same module is what each node's ``torchrun --nnodes ...`` starts (see
docs/scaling.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist

import speech_repro
from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.determinism import DeterminismPolicy, apply_policy
from kedro_repro.shards import ShardedTensors
from kedro_repro.state import load_state, save_state
from speech_repro.parameters import ModelParams, TextParams, TrainingParams
from speech_repro.pipelines.training.loop import TrainingInputs, World, fit

logger = logging.getLogger(__name__)

WORKER_MODULE = "speech_repro.pipelines.training.distributed"
SPEC_FILE = "spec.json"
MANIFEST_FILE = "manifest.parquet"
SPLIT_LOCK_FILE = "split_lock.parquet"
NORM_STATS_FILE = "norm_stats.safetensors"
RESULT_FILE = "result.safetensors"
BACKENDS = ("auto", "gloo", "nccl")

_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
_LIBC = (
    ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if sys.platform.startswith("linux")
    else None
)


def resolve_backend(device: str, backend: str, world_size: int) -> str:
    """The process-group backend to use; raises before anything starts if it cannot work.

    ``auto`` is NCCL for a CUDA device and gloo for the CPU. NCCL needs one GPU per rank.
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"training.distributed.backend must be one of {', '.join(BACKENDS)}, not {backend!r}"
        )
    cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    if backend == "nccl":
        if not cuda:
            raise ValueError("training.distributed.backend nccl needs training.device: cuda")
        if not dist.is_nccl_available() or torch.cuda.device_count() < world_size:
            raise ValueError(
                f"NCCL with {world_size} processes needs {world_size} GPUs; this machine has "
                f"{torch.cuda.device_count()} (NCCL available: {dist.is_nccl_available()})"
            )
    elif not dist.is_gloo_available():
        raise ValueError("this torch build has no gloo backend")
    return backend


def rank_policy(policy: DeterminismPolicy, world_size: int) -> DeterminismPolicy:
    """``policy`` as each of ``world_size`` ranks applies it: its threads shared among them.

    The DeterminismHook applied ``policy`` to the Kedro process; the ranks are new processes, so
    the node hands it on. Each rank gets ``threads // world_size`` threads (at least one), so N
    ranks do not oversubscribe the cores one process was given; the count is a function of the
    recorded ``determinism.threads`` and world size, and it matters for the bits (CPU reductions
    split work by thread count).
    """
    return replace(policy, threads=max(1, policy.threads // world_size))


def launch(
    inputs: TrainingInputs, policy: DeterminismPolicy
) -> tuple[dict, list[dict[str, Any]], dict[str, Any]]:
    """Train with ``training.distributed.world_size`` processes on this machine (torchrun).

    ``policy`` is the determinism policy of this process; each rank applies its share
    (:func:`rank_policy`). Returns what :func:`~speech_repro.pipelines.training.loop.fit`
    returns on rank 0.
    """
    world_size, device = inputs.world_size, inputs.device
    backend = resolve_backend(device, inputs.training.distributed.backend, world_size)
    policy = rank_policy(policy, world_size)
    logger.info(
        "Training with %d processes (torch.distributed, %s backend), %d thread(s) each",
        world_size,
        backend,
        policy.threads,
    )
    with tempfile.TemporaryDirectory(prefix="speech-repro-ddp-") as tmp:
        workdir = Path(tmp)
        write_workdir(workdir, inputs, world_size=world_size, backend=backend, policy=policy)
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",  # one machine; a free rendezvous port, so concurrent runs coexist
            f"--nproc-per-node={world_size}",
            "-m",
            WORKER_MODULE,
            str(workdir),
        ]
        # Output is not captured: rank 0's progress bar and logs show in the run's console.
        result = subprocess.run(
            command,
            env=_rank_environment(policy, device),
            stdin=subprocess.DEVNULL,
            check=False,
            # If the Kedro process dies (e.g. killed to be resumed later), torchrun gets SIGTERM
            # and stops its ranks instead of training on unobserved.
            preexec_fn=lambda: _die_with_parent(signal.SIGTERM),
        )
        if result.returncode != 0:
            raise RuntimeError(_failure(workdir, result.returncode))
        output = load_state(workdir / RESULT_FILE)
    return output["model"], output["log"], output["selection"]


def write_workdir(
    workdir: Path,
    inputs: TrainingInputs,
    *,
    world_size: int,
    backend: str,
    policy: DeterminismPolicy,
) -> None:
    """Write everything the ranks need into ``workdir`` (see the module docstring).

    Features are not copied: the shard store is read by path, one utterance at a time, by every
    rank.
    """
    inputs.manifest.to_parquet(workdir / MANIFEST_FILE, index=False)
    inputs.split_lock.to_parquet(workdir / SPLIT_LOCK_FILE, index=False)
    save_state(workdir / NORM_STATS_FILE, inputs.norm_stats)
    checkpoints = inputs.checkpoints
    spec = {
        "world_size": world_size,
        "backend": backend,
        "policy": asdict(policy),
        "training": inputs.training.model_dump(mode="json"),
        "model": inputs.model.model_dump(mode="json"),
        "text": inputs.text.model_dump(mode="json"),
        "features": str(inputs.features.directory.absolute()),
        "checkpoints": {
            "directory": str(checkpoints.directory.absolute()),
            "resume_from": str(checkpoints.resume_from.absolute())
            if checkpoints.resume_from
            else None,
            "keep": checkpoints.keep,
        },
    }
    (workdir / SPEC_FILE).write_text(json.dumps(spec, indent=2))


def read_workdir(workdir: Path) -> tuple[dict[str, Any], TrainingInputs]:
    """The spec and the training inputs that :func:`write_workdir` stored."""
    spec = json.loads((workdir / SPEC_FILE).read_text())
    inputs = TrainingInputs(
        features=ShardedTensors(spec["features"]),
        split_lock=pd.read_parquet(workdir / SPLIT_LOCK_FILE),
        manifest=pd.read_parquet(workdir / MANIFEST_FILE),
        norm_stats=load_state(workdir / NORM_STATS_FILE),
        training=TrainingParams.model_validate(spec["training"]),
        model=ModelParams.model_validate(spec["model"]),
        text=TextParams.model_validate(spec["text"]),
        checkpoints=CheckpointStore(**spec["checkpoints"]),
    )
    return spec, inputs


def main(argv: list[str] | None = None) -> None:
    """Entry point of one rank, as started by torchrun: ``... distributed <workdir>``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit(f"usage: torchrun ... -m {WORKER_MODULE} <workdir>")
    workdir = Path(args[0])
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    _die_with_parent(signal.SIGKILL)  # no orphaned rank if torchrun itself is killed
    try:
        spec, inputs = read_workdir(workdir)
        if size != spec["world_size"]:
            raise RuntimeError(
                f"started with {size} processes, but the run asks for {spec['world_size']} "
                "(training.distributed.world_size)"
            )
        if torch.device(inputs.device).type == "cuda":
            _use_local_gpu(int(os.environ["LOCAL_RANK"]))
        policy = DeterminismPolicy(**spec["policy"])
        apply_policy(policy)
        if rank == 0:  # rank 0 speaks for the run (e.g. "Continuing from the checkpoint ...")
            _log_to_console()
        dist.init_process_group(backend=spec["backend"])
        try:
            bundle, log, selection = fit(inputs, policy, World(rank, size))
            if rank == 0:
                result = {"model": bundle, "log": log, "selection": selection}
                save_state(workdir / RESULT_FILE, result)
        finally:
            dist.destroy_process_group()
    except BaseException:
        (workdir / f"rank-{rank}.error").write_text(traceback.format_exc())
        raise


def _rank_environment(policy: DeterminismPolicy, device: str) -> dict[str, str]:
    """The ranks' environment: this process's, plus what makes them run the same code alike."""
    env = dict(os.environ)
    # The code this process imported, even when it is a project copy's src/ put on sys.path by
    # Kedro (e.g. a `kedro repro verify` replay) rather than the installed package.
    source = str(Path(speech_repro.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    # torchrun would otherwise set 1 and warn; OpenMP reads it before torch.set_num_threads runs.
    env["OMP_NUM_THREADS"] = str(policy.threads)
    if torch.device(device).type != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""  # CPU ranks never touch (or hold memory on) a GPU
    return env


def _use_local_gpu(local_rank: int) -> None:
    """Let this rank see only its own GPU, before CUDA starts.

    Checkpoints capture the CUDA RNG state of every visible device; with all GPUs visible each
    rank would create a context on every GPU. Seeing one, the rank's device is ``cuda:0``.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = (
        visible.split(",")[local_rank] if visible else str(local_rank)
    )


def _log_to_console() -> None:
    """Show this project's INFO messages on stderr (torch's own stay at their defaults)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    project = logging.getLogger(speech_repro.__name__)
    project.addHandler(handler)
    project.setLevel(logging.INFO)


def _die_with_parent(sig: int) -> None:
    """Have Linux send ``sig`` to this process when its parent exits (elsewhere: nothing)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, sig)


def _failure(workdir: Path, returncode: int) -> str:
    """What to tell the user when torchrun failed: the first failing rank's traceback."""
    errors = sorted(workdir.glob("rank-*.error"))
    if not errors:
        return f"distributed training failed: torchrun exited with {returncode} (output above)"
    return (
        f"distributed training failed: torchrun exited with {returncode}; "
        f"{errors[0].stem} raised:\n{errors[0].read_text()}"
    )


if __name__ == "__main__":
    main()
