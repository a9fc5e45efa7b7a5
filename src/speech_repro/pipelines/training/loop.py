"""The training loop: a seeded, deterministic CTC training loop with full-state checkpoints.

One loop (:func:`fit`) serves a plain single process and every rank of a data-parallel run on
torch.distributed (:mod:`speech_repro.pipelines.training.distributed`); what differs between the
two is carried by :class:`World`. A single process is the world of size 1, which uses no process
group, no collectives and the same seeds and checkpoint layout as before data parallelism
existed, so single-process results keep their bits.

What the loop reads comes in as a :class:`TrainingInputs`, and the determinism settings it
depends on as a :class:`~kedro_repro.determinism.DeterminismPolicy` argument: the loop
reads neither from global state (the DeterminismHook still applies the policy to the process).
This module imports neither the Kedro node nor the torchrun launcher, which both import it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jiwer
import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from kedro_repro.bisect import StepProbe
from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.determinism import (
    DeterminismPolicy,
    capture_rng_state,
    derive_seed,
    make_generator,
    preserved_rng_state,
    restore_rng_state,
    seed_globals,
    seed_worker,
)
from kedro_repro.environment import require_cuda_driver
from kedro_repro.shards import ShardedTensors
from speech_repro.asr.augment import SpecAugmentConfig
from speech_repro.asr.batching import collate, epoch_batches, rank_batches
from speech_repro.asr.dataset import utterance_dataset
from speech_repro.asr.decoding import greedy_transcripts
from speech_repro.asr.model import CTCModel, ModelConfig
from speech_repro.asr.text import CharVocabulary
from speech_repro.parameters import ModelParams, TextParams, TrainingParams
from speech_repro.pipelines.training.selection import Selector

logger = logging.getLogger(__name__)


# eq=False: the frames have no single truth value, so instances compare by identity.
@dataclass(frozen=True, eq=False)
class TrainingInputs:
    """Everything one training run reads: the prepared data, its parameters, its checkpoints.

    ``training``, ``model`` and ``text`` are the parameter sections of those names (``training``
    may be a seed sweep's copy with its own seed); ``checkpoints`` is the run's checkpoint store,
    possibly continuing another run's.
    """

    features: ShardedTensors
    split_lock: pd.DataFrame
    manifest: pd.DataFrame
    norm_stats: dict
    training: TrainingParams
    model: ModelParams
    text: TextParams
    checkpoints: CheckpointStore

    @property
    def world_size(self) -> int:
        """How many training processes ``training.distributed.world_size`` asks for (default 1)."""
        return self.training.distributed.world_size

    @property
    def device(self) -> str:
        """``training.device`` (default ``cpu``)."""
        return self.training.device


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run: ``rank`` of ``size`` processes.

    Everything the training loop does differently under torch.distributed goes through here:
    which batches a rank trains on, the extra key of its random streams, wrapping the model in
    DDP, and the collectives (averaging the logged loss, gathering RNG states for checkpoints,
    broadcasting the checkpoint to resume from). For ``size`` 1 each is the identity and no
    process group is needed. With ``size`` > 1 the default process group must be initialised.
    """

    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writer(self) -> bool:
        """Whether this process writes checkpoints and outputs (rank 0 alone does)."""
        return self.rank == 0

    def keys(self) -> tuple[object, ...]:
        """Extra derive_seed keys that give each rank its own dropout and worker streams.

        Empty for a single process, so its seeds stay what they were before DDP existed.
        """
        return ("rank", self.rank) if self.distributed else ()

    def batches(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's share of one epoch's batches (:func:`rank_batches`)."""
        return rank_batches(batches, self.rank, self.size)

    def wrap(self, net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``net`` as the module to train: wrapped in DDP (gradients averaged) when distributed."""
        if not self.distributed:
            return net
        devices = [device.index or 0] if device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=devices)

    def average_loss(self, loss: float, batch_size: int) -> tuple[float, int]:
        """The step's loss averaged over ranks (as DDP averages gradients) and its global batch.

        In float64, and the all-reduce adds in an order fixed by the ranks, so it reproduces.
        """
        if not self.distributed:
            return loss, batch_size
        totals = torch.tensor([loss, batch_size], dtype=torch.float64)
        dist.all_reduce(totals)
        return float(totals[0]) / self.size, int(totals[1])

    def gather(self, value: Any) -> Any:
        """Every rank's ``value`` as a list ordered by rank; a single process's value unchanged."""
        if not self.distributed:
            return value
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def own(self, gathered: Any) -> Any:
        """This rank's entry of what :meth:`gather` returned."""
        return gathered[self.rank] if self.distributed else gathered

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``, on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


SINGLE_PROCESS = World()


def fit(
    inputs: TrainingInputs,
    policy: DeterminismPolicy,
    world: World = SINGLE_PROCESS,
    probe: StepProbe | None = None,
    stop_after: int | None = None,
) -> tuple[dict, list[dict[str, Any]], dict[str, Any]]:
    """The training loop of one process of ``world``; returns the model bundle, the log rows and
    the selection record (which step's weights the bundle holds, and why).

    Every random stream is keyed on ``training.seed``; the global RNGs (random, NumPy, torch) are
    restored afterwards, so the loop leaves no trace on the process. A checkpoint is written
    every ``checkpoint_every_steps`` steps and at the end of each epoch; if ``checkpoints`` holds
    one (this run's, or a run it continues), training continues from it bit-exactly, mid-epoch
    included.

    ``policy`` is the determinism policy in force in this process (the caller applied it); the
    loop takes from it what changes its computation, e.g. whether strict deterministic kernels
    rule out CUDA's CTC backward.

    ``training.selection`` declares the rest: the dev split is greedy-decoded every
    ``eval_every_steps`` steps (its WER is the log's ``dev_wer``, NaN at other steps), the bundle
    holds the last step's or the best evaluated step's weights, and training may stop once
    ``patience`` evaluations in a row did not improve (:mod:`.selection`). The evaluation draws
    no random numbers and puts the model back in train mode, so the weights of every step are
    what they are without it; its state is in every checkpoint.

    Every rank returns the same bundle and log (DDP keeps the replicas equal, logged values are
    averaged over ranks); only rank 0 reads and writes ``checkpoints``, and only rank 0 decodes
    the dev split (its WER is broadcast, so every rank selects and stops alike).

    ``probe`` (``kedro repro verify --bisect`` only) watches each optimizer step of the model
    through read-only hooks and may stop the loop after a step; None in every training run.
    ``stop_after`` (segment verification, :mod:`.segment`) ends the loop after the checkpoint
    of that step is written; everything before it is computed exactly as without it.
    """
    training, model, text = inputs.training, inputs.model, inputs.text
    norm_stats, checkpoints = inputs.norm_stats, inputs.checkpoints
    seed = training.seed
    device = torch.device(inputs.device)
    # Strict: an operation without a deterministic implementation would fail the run.
    strict = policy.deterministic_algorithms and policy.mode == "strict"
    if device.type == "cuda":  # an old driver fails later and opaquely inside torch
        require_cuda_driver(cpu_option="training.device: cpu")
    split_lock = inputs.split_lock
    train_ids = split_lock.loc[split_lock["split"] == "train", "utt_id"].tolist()
    augment: SpecAugmentConfig | None = training.specaugment
    # SpecAugment stays keyed on (seed, epoch, utterance) with no rank: each utterance is trained
    # on by one rank per epoch, so its masks do not depend on which rank that is.
    dataset = utterance_dataset(
        inputs.features, norm_stats, inputs.manifest, train_ids, text.model_dump(), augment, seed
    )
    lengths = dataset.lengths()
    config = ModelConfig(
        n_mels=norm_stats["mean"].shape[0],
        vocab_size=len(CharVocabulary(text.vocabulary)),
        **model.model_dump(),
    )
    steps_per_epoch = len(world.batches(epoch_batches(lengths, training.batch_size, seed, 0)))
    if steps_per_epoch == 0:
        raise ValueError(
            f"the train split makes fewer batches than the {world.size} training processes"
        )
    every = training.checkpoint_every_steps or steps_per_epoch

    def stops_here(steps_done: int) -> bool:
        """A replay's end (verify --bisect's probe, --segments' stop step); never in a run."""
        if probe is not None and probe.finished(steps_done):
            return True
        return stop_after is not None and steps_done >= stop_after

    selector = Selector.start(training.selection, steps_per_epoch, training.epochs)
    dev_wer = _dev_evaluator(inputs, selector, device)

    with preserved_rng_state():
        # The same initial weights on every rank (DDP would broadcast rank 0's anyway).
        seed_globals(derive_seed(seed, "init"))
        net = CTCModel(config).to(device)
        optimizer = torch.optim.AdamW(
            net.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=training.learning_rate,
            total_steps=training.epochs * steps_per_epoch,
            pct_start=training.warmup_fraction,
        )
        log: list[dict[str, Any]] = []
        # Rank 0 alone reads the store, so other ranks need neither its directory nor a shared
        # file system to resume.
        if resumed := world.broadcast(checkpoints.latest() if world.writer else None):
            step, state = resumed
            written_by = state.get("world_size", 1)  # checkpoints from before DDP: one process
            if written_by != world.size:
                raise ValueError(
                    f"the checkpoint at step {step} was written by {written_by} training "
                    f"process(es) and cannot continue bit-exactly with {world.size}; resume it "
                    f"with training.distributed.world_size: {written_by}"
                )
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            restore_rng_state(world.own(state["rng"]))
            log = state["log"]
            selector.load_state_dict(state.get("selection"))  # absent: written before selection
            logger.info("Continuing from the checkpoint at step %d", step)
        replica = world.wrap(net, device)

        progress = tqdm(
            mininterval=1.0,
            total=training.epochs * steps_per_epoch,
            initial=len(log),
            desc="train",
            unit="step",
            disable=not world.writer,
        )
        # A run that stopped early resumes from its last checkpoint at the stop: nothing to train.
        first_epoch = training.epochs if selector.stopped else len(log) // steps_per_epoch
        for epoch in range(first_epoch, training.epochs):
            replica.train()
            dataset.epoch = epoch
            done = len(log) - epoch * steps_per_epoch  # batches of this epoch already trained on
            if done == 0:  # a fresh epoch; mid-epoch, the restored RNG state continues instead
                seed_globals(derive_seed(seed, "dropout", epoch, *world.keys()))
            batches = world.batches(epoch_batches(lengths, training.batch_size, seed, epoch))
            loader = DataLoader(
                dataset,
                batch_sampler=batches[done:],
                collate_fn=collate,
                num_workers=training.num_workers,
                worker_init_fn=seed_worker,
                generator=make_generator(seed, "workers", epoch, *world.keys()),
            )
            for batch in loader:
                with probe.step(len(log) + 1, net) if probe else contextlib.nullcontext():
                    loss, grad_norm = _train_step(
                        replica, optimizer, batch, device, training.grad_clip, strict
                    )
                scheduler.step()
                loss, batch_size = world.average_loss(loss, len(batch["utt_ids"]))
                log.append(
                    {
                        "epoch": epoch,
                        "step": len(log) + 1,
                        "loss": loss,
                        "grad_norm": grad_norm,
                        "learning_rate": scheduler.get_last_lr()[0],
                        "batch_size": batch_size,
                        "dev_wer": math.nan,
                    }
                )
                progress.update()
                progress.set_postfix(epoch=epoch, loss=f"{loss:.3f}")
                if selector.due(len(log)):
                    # Rank 0 decodes; every rank takes its WER and so selects and stops alike.
                    wer = world.broadcast(dev_wer(net) if world.writer else None)
                    log[-1]["dev_wer"] = wer
                    selector.observe(len(log), epoch, wer, net)
                    progress.set_postfix(epoch=epoch, loss=f"{loss:.3f}", dev_wer=f"{wer:.3f}")
                ends_epoch = len(log) == (epoch + 1) * steps_per_epoch
                if len(log) % every == 0 or ends_epoch or selector.stopped:
                    # Every rank's RNG state, so that each continues exactly after a resume.
                    rng = world.gather(capture_rng_state())
                    if world.writer:
                        checkpoints.save(
                            len(log),
                            {
                                "step": len(log),
                                "world_size": world.size,
                                "model": net.state_dict(),
                                "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(),
                                "rng": rng,
                                "log": log,
                                "selection": selector.state_dict(),
                            },
                            epoch=epoch if ends_epoch else None,
                        )
                if selector.stopped or stops_here(len(log)):
                    break
            if stops_here(len(log)):
                break
            if selector.stopped:
                logger.info(
                    "Stopped early at step %d: %d %s evaluations without improvement",
                    selector.stopped_at,
                    selector.since_best,
                    training.selection.split,
                )
                break
        progress.close()

    # The bundle keeps its three keys: which step was selected is the separate record, so a
    # model trained with the default selection (last) stays the same content, digest included.
    bundle = {
        "config": config.to_dict(),
        "vocabulary": text.vocabulary,
        "weights": selector.weights(net),
    }
    return bundle, log, selector.record(len(log))


def _dev_evaluator(
    inputs: TrainingInputs, selector: Selector, device: torch.device
) -> Callable[[torch.nn.Module], float]:
    """The function giving a model's raw greedy WER on ``training.selection.split``.

    Decoded as evaluation decodes (:func:`~speech_repro.asr.decoding.greedy_transcripts`, the
    declared normalisation on both sides), without augmentation. A split without utterances
    turns the evaluations off when nothing depends on them, and is an error otherwise.
    """
    selection, text = inputs.training.selection, inputs.text
    lock = inputs.split_lock
    dev_ids = lock.loc[lock["split"] == selection.split, "utt_id"].tolist()
    if not dev_ids and selector.every > 0:
        if selection.criterion != "last" or selection.patience is not None:
            raise ValueError(
                f"training.selection evaluates the {selection.split!r} split, which has no "
                f"utterances (splits: {sorted(lock['split'].unique())})"
            )
        logger.warning("No %r utterances: training evaluates no dev WER", selection.split)
        selector.every = 0
    dataset = utterance_dataset(
        inputs.features, inputs.norm_stats, inputs.manifest, dev_ids, text.model_dump()
    )
    vocabulary = CharVocabulary(text.vocabulary)
    normalize = text.normalization
    transcripts = dict(zip(inputs.manifest["utt_id"], inputs.manifest["transcript"], strict=True))
    references = [normalize(transcripts[u]) for u in dev_ids]

    def evaluate(net: torch.nn.Module) -> float:
        # Nothing here should draw random numbers; preserving the state makes it certain.
        with preserved_rng_state():
            decoded = greedy_transcripts(net, dataset, vocabulary, selection.batch_size, device)
        hypotheses = [normalize(decoded[u]) for u in dev_ids]
        return float(jiwer.process_words(references, hypotheses).wer)

    return evaluate


def _train_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict,
    device: torch.device,
    grad_clip: float,
    strict: bool,
) -> tuple[float, float]:
    """One optimizer step; returns the loss and the gradient norm before clipping.

    ``net`` may be DDP-wrapped: its backward pass then averages the gradients over the ranks, so
    the norm, the clipping and the step are the same on every rank.

    CUDA's ``ctc_loss`` backward has no deterministic implementation, so with ``strict``
    deterministic algorithms (the policy's strict mode) on a GPU the loss is computed on the
    CPU, where it is deterministic; the gradient flows back to the GPU through the copy.
    """
    log_probs, out_lengths = net(batch["features"].to(device), batch["lengths"].to(device))
    log_probs = log_probs.transpose(0, 1)
    if device.type == "cuda" and strict:
        log_probs, out_lengths = log_probs.cpu(), out_lengths.cpu()
    targets, target_lengths = (
        batch["targets"].to(log_probs.device),
        batch["target_lengths"].to(log_probs.device),
    )
    loss = torch.nn.functional.ctc_loss(
        log_probs, targets, out_lengths, target_lengths, blank=0, zero_infinity=True
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimizer.step()
    return loss.item(), float(grad_norm)
