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

- ``rank-<r>.json``: which machine (node rank, host) and process rank *r* is, written when it
  starts; ``rank-<r>.done`` when it finished. A rank with neither that file nor an error is
  one that was killed or whose machine was lost, and the failure names its machine;
- ``node-<n>.worker.json``: machine *n*'s environment (:mod:`kedro_repro.workers`), written by
  its first rank; the node adds every machine's to the run record's ``workers``.

With ``training.distributed.nnodes`` > 1 the working directory is ``training.distributed.workdir``
(shared by every machine), this machine's torchrun hosts the c10d rendezvous at
``training.distributed.rendezvous``, and each other machine starts :func:`join_command` (the
node logs it). See docs/scaling.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import shlex
import signal
import socket
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
from kedro_repro import workers
from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.determinism import DeterminismPolicy, apply_policy
from kedro_repro.shards import ShardedTensors
from kedro_repro.state import load_state, save_state
from speech_repro.parameters import DistributedParams, ModelParams, TextParams, TrainingParams
from speech_repro.pipelines.training.loop import TrainingInputs, World, fit

logger = logging.getLogger(__name__)

WORKER_MODULE = "speech_repro.pipelines.training.distributed"
SPEC_FILE = "spec.json"
MANIFEST_FILE = "manifest.parquet"
SPLIT_LOCK_FILE = "split_lock.parquet"
NORM_STATS_FILE = "norm_stats.safetensors"
RESULT_FILE = "result.safetensors"
BACKENDS = ("auto", "gloo", "nccl")
RENDEZVOUS_ID = "speech-repro-training"
"""The c10d rendezvous id: one training per endpoint at a time, so a fixed id is enough."""

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
    """Train with ``training.distributed.world_size`` processes on ``nnodes`` machines (torchrun).

    ``policy`` is the determinism policy of this process; each rank applies its share
    (:func:`rank_policy`). With one machine the working directory is a temporary one; with more
    it is ``training.distributed.workdir``, and this call waits (``join_timeout_s``) for the
    other machines to start :func:`join_command`. Every machine's environment goes to the run
    record (:func:`kedro_repro.workers.report`), also when training failed. Returns what
    :func:`~speech_repro.pipelines.training.loop.fit` returns on rank 0.
    """
    distributed, device = inputs.training.distributed, inputs.device
    per_node = distributed.nproc_per_node
    backend = resolve_backend(device, distributed.backend, per_node)
    policy = rank_policy(policy, per_node)
    logger.info(
        "Training with %d processes on %d machine(s) (torch.distributed, %s backend), "
        "%d thread(s) each",
        distributed.world_size,
        distributed.nnodes,
        backend,
        policy.threads,
    )
    if distributed.nnodes == 1:
        with tempfile.TemporaryDirectory(prefix="speech-repro-ddp-") as tmp:
            return _train(Path(tmp), inputs, backend, policy)
    workdir = Path(distributed.workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    clear_workdir(workdir)  # an earlier run's files must not pass for this one's
    trained = _train(workdir, inputs, backend, policy)
    clear_workdir(workdir)
    return trained


def _train(
    workdir: Path, inputs: TrainingInputs, backend: str, policy: DeterminismPolicy
) -> tuple[dict, list[dict[str, Any]], dict[str, Any]]:
    """Write ``workdir``, run this machine's torchrun in it, and read rank 0's result back."""
    distributed = inputs.training.distributed
    write_workdir(
        workdir, inputs, world_size=distributed.world_size, backend=backend, policy=policy
    )
    if distributed.nnodes > 1:
        logger.info(
            "Waiting up to %d s for %d more machine(s) to join the rendezvous at %s; on each, "
            "run (same code and uv.lock, %s readable and writable there):\n  %s",
            distributed.join_timeout_s,
            distributed.nnodes - 1,
            distributed.rendezvous,
            workdir,
            shlex.join(join_command(distributed, workdir, policy.threads, python="python")),
        )
    # Output is not captured: rank 0's progress bar and logs show in the run's console.
    result = subprocess.run(
        torchrun_command(distributed, workdir, host=True),
        env=_rank_environment(policy, inputs.device),
        stdin=subprocess.DEVNULL,
        check=False,
        # If the Kedro process dies (e.g. killed to be resumed later), torchrun gets SIGTERM
        # and stops its ranks instead of training on unobserved.
        preexec_fn=lambda: _die_with_parent(signal.SIGTERM),
    )
    workers.report(workers.read_workers(workdir))  # failed or not: which machines ran it
    if result.returncode != 0:
        raise RuntimeError(_failure(workdir, result.returncode, distributed))
    output = load_state(workdir / RESULT_FILE)
    return output["model"], output["log"], output["selection"]


def torchrun_command(
    distributed: DistributedParams, workdir: Path, *, host: bool, python: str = sys.executable
) -> list[str]:
    """The torchrun command of one machine: ``host`` for the Kedro machine (it hosts the
    rendezvous), otherwise a machine that joins it."""
    command = [python, "-m", "torch.distributed.run"]
    per_node = f"--nproc-per-node={distributed.nproc_per_node}"
    if distributed.nnodes == 1:
        # One machine; a free rendezvous port, so concurrent runs coexist.
        command += ["--standalone", per_node]
    else:
        timeout = distributed.join_timeout_s
        command += [
            f"--nnodes={distributed.nnodes}",
            per_node,
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={distributed.rendezvous}",
            f"--rdzv-id={RENDEZVOUS_ID}",
            # The Kedro machine hosts the store; a joining machine waits for it to appear.
            f"--rdzv-conf=join_timeout={timeout},read_timeout={timeout},is_host={int(host)}",
            "--max-restarts=0",  # a lost machine fails the run; `kedro repro resume` continues it
        ]
    return [*command, "-m", WORKER_MODULE, str(workdir)]


def join_command(
    distributed: DistributedParams, workdir: Path, threads: int, *, python: str = sys.executable
) -> list[str]:
    """What every other machine runs to join a ``nnodes`` > 1 training: ``threads`` is the
    per-rank thread count (OpenMP reads it before torch sets it)."""
    return [
        "env",
        f"OMP_NUM_THREADS={threads}",
        *torchrun_command(distributed, workdir, host=False, python=python),
    ]


def clear_workdir(workdir: Path) -> None:
    """Remove the files :func:`write_workdir` and the ranks write from ``workdir`` (nothing else)."""
    fixed = (SPEC_FILE, MANIFEST_FILE, SPLIT_LOCK_FILE, NORM_STATS_FILE, RESULT_FILE)
    patterns = ("rank-*.json", "rank-*.done", "rank-*.error", f"*{workers.WORKER_SUFFIX}")
    for path in [
        *(workdir / name for name in fixed),
        *(p for g in patterns for p in workdir.glob(g)),
    ]:
        path.unlink(missing_ok=True)


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
        "nnodes": inputs.training.distributed.nnodes,
        "rendezvous": inputs.training.distributed.rendezvous,
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
    place = _place(rank)
    (workdir / f"rank-{rank}.json").write_text(json.dumps(place))
    try:
        spec, inputs = read_workdir(workdir)
        if size != spec["world_size"] or place["local_world_size"] * spec["nnodes"] != size:
            raise RuntimeError(
                f"started as {size} processes, {place['local_world_size']} on this machine, but "
                f"the run asks for {spec['world_size']} on {spec['nnodes']} machine(s) "
                "(training.distributed.world_size, nnodes)"
            )
        if torch.device(inputs.device).type == "cuda":
            _use_local_gpu(int(os.environ["LOCAL_RANK"]))
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a joining machine's ranks, too
        policy = DeterminismPolicy(**spec["policy"])
        apply_policy(policy)
        # One record of each machine's environment, and what must be the same on all of them.
        code = _record_machine(workdir, place, spec, policy) if place["local_rank"] == 0 else None
        if rank == 0:  # rank 0 speaks for the run (e.g. "Continuing from the checkpoint ...")
            _log_to_console()
        dist.init_process_group(backend=spec["backend"])
        try:
            machines: list[Any] = [None] * size
            dist.all_gather_object(machines, (place["node_rank"], place["host"], code))
            require_same_code([m for m in machines if m[2] is not None])  # on every rank alike
            bundle, log, selection = fit(inputs, policy, World(rank, size))
            if rank == 0:
                result = {"model": bundle, "log": log, "selection": selection}
                save_state(workdir / RESULT_FILE, result)
        finally:
            dist.destroy_process_group()
    except BaseException:
        (workdir / f"rank-{rank}.error").write_text(traceback.format_exc())
        raise
    (workdir / f"rank-{rank}.done").touch()


def _place(rank: int) -> dict[str, Any]:
    """Where this rank runs: its machine's rank among the machines, host, pid, local rank."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return {
        "rank": rank,
        "node_rank": int(os.environ.get("GROUP_RANK", "0")),
        "local_rank": local_rank,
        "local_world_size": local_world_size,
        "ranks": list(range(rank - local_rank, rank - local_rank + local_world_size)),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def _record_machine(
    workdir: Path, place: dict[str, Any], spec: dict[str, Any], policy: DeterminismPolicy
) -> dict[str, Any]:
    """Write this machine's environment for the run record (``node-<n>.worker.json``); returns
    what :func:`require_same_code` compares: commit, uncommitted changes, lock files, torch."""
    from speech_repro.project_config import REPRO  # the project's variables and lock files

    details = {
        "node_rank": place["node_rank"],
        "nnodes": spec["nnodes"],
        "ranks": place["ranks"],
        "nproc_per_node": place["local_world_size"],
        "world_size": spec["world_size"],
        "rendezvous": spec["rendezvous"] or "standalone",
        "rendezvous_id": os.environ.get("TORCHELASTIC_RUN_ID"),
        "backend": spec["backend"],
        "threads": policy.threads,
    }
    # The checkout whose code this rank imported: its commit and lock files are recorded.
    project = Path(speech_repro.__file__).resolve().parents[2]
    name = f"node-{place['node_rank']}"
    path = workers.write_worker(workdir, name, details, project, REPRO.environment)
    environment = json.loads(path.read_text())["environment"]
    git = environment["git"] or {}
    return {
        "commit": git.get("commit"),
        "uncommitted changes": git.get("diff_digest"),
        "lock files": environment["lock_files"],
        "torch": (environment["torch"] or {}).get("version"),
    }


def require_same_code(machines: list[tuple[int, str, dict[str, Any]]]) -> None:
    """Refuse to train unless every machine runs the same code on the same locked environment.

    ``machines``: ``(node rank, host, what _record_machine returned)``. Another commit, other
    uncommitted changes, other lock files or another torch would compute other bits, and the
    run record could not say which code a result came from.
    """
    (first_node, first_host, expected), *others = sorted(machines, key=lambda m: m[0])
    for node, host, found in others:
        if differ := [key for key in expected if found.get(key) != expected[key]]:
            values = "; ".join(f"{key} {found.get(key)} != {expected[key]}" for key in differ)
            raise RuntimeError(
                f"node {node} ({host}) runs other code than node {first_node} ({first_host}): "
                f"{values}. Every machine needs the same commit, uv.lock and flake.lock "
                "(docs/scaling.md)"
            )


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


def _failure(workdir: Path, returncode: int, distributed: DistributedParams) -> str:
    """What to tell the user when torchrun failed, naming the machine at fault.

    A rank that started but wrote neither an error nor its ``done`` file was killed, or its
    machine was lost; the errors of the other ranks (a closed connection) follow from that.
    """
    nnodes = distributed.nnodes
    places = {
        int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in workdir.glob("rank-*.json")
    }
    errors = {int(p.stem.split("-")[1]): p.read_text() for p in workdir.glob("rank-*.error")}
    done = {int(p.stem.split("-")[1]) for p in workdir.glob("rank-*.done")}

    def where(rank: int) -> str:
        place = places.get(rank)
        if place is None:
            return f"rank {rank}"
        return f"rank {rank} on node {place['node_rank']} ({place['host']}, pid {place['pid']})"

    head = f"distributed training failed: torchrun exited with {returncode}"
    if not places and nnodes > 1:  # torchrun never started a rank: the rendezvous did not fill
        return (
            f"{head}; no training process started: not all {nnodes} machines joined the "
            f"rendezvous at {distributed.rendezvous} within {distributed.join_timeout_s} s "
            "(training.distributed.join_timeout_s; torchrun's output above says more)"
        )
    causes = []
    missing = sorted(set(range(nnodes)) - {p["node_rank"] for p in places.values()})
    if missing:
        causes.append(
            f"node(s) {', '.join(map(str, missing))} of {nnodes} never started training (not "
            "joined within training.distributed.join_timeout_s, or failed before)"
        )
    lost = sorted(set(places) - set(errors) - done)
    causes += [
        f"{where(r)} stopped without reporting an error (killed, or its machine lost)" for r in lost
    ]
    if causes:
        then = [f"{where(r)} then raised: {_last_line(errors[r])}" for r in sorted(errors)]
        return f"{head}; " + "; ".join(causes + then)
    if errors:
        first = min(errors)
        return f"{head}; {where(first)} raised:\n{errors[first]}"
    if places and done >= set(places):
        ranks = ", ".join(map(str, sorted(done)))
        return (
            f"{head}; every rank ({ranks}) finished training, then a process ended abnormally "
            "while exiting (torchrun's output above names it); "
            "`kedro repro resume` continues the run from its last checkpoint"
        )
    return f"{head} (output above)"


def _last_line(text: str) -> str:
    """The last non-empty line of a traceback: the exception itself."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


if __name__ == "__main__":
    main()
    # Everything a rank produces is on disk by now (result, done file). Interpreter shutdown can
    # abort in gloo's C++ threads ("terminate called without an active exception", SIGABRT),
    # which would fail a finished training; end the process without it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
