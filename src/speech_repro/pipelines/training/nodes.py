"""Training: a seeded, deterministic CTC training loop with full-state checkpoints."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from speech_repro.asr.augment import SpecAugmentConfig
from speech_repro.asr.batching import UtteranceDataset, collate, epoch_batches
from speech_repro.asr.model import CTCModel, ModelConfig
from speech_repro.asr.text import CharVocabulary, TextNormalization
from speech_repro.repro.checkpoints import CheckpointStore
from speech_repro.repro.determinism import (
    capture_rng_state,
    derive_seed,
    make_generator,
    preserved_rng_state,
    restore_rng_state,
    seed_globals,
    seed_worker,
)
from speech_repro.repro.shards import ShardedTensors

logger = logging.getLogger(__name__)


def utterance_dataset(
    features: ShardedTensors,
    norm_stats: dict,
    manifest: pd.DataFrame,
    utt_ids: list[str],
    text: dict[str, Any],
    augment: SpecAugmentConfig | None = None,
    seed: int = 0,
) -> UtteranceDataset:
    """Lazily normalised features and encoded transcripts of ``utt_ids`` (in that order)."""
    normalize = TextNormalization(**text["normalization"])
    vocabulary = CharVocabulary(text["vocabulary"])
    transcripts = dict(zip(manifest["utt_id"], manifest["transcript"], strict=True))
    targets = [vocabulary.encode(normalize(transcripts[u])) for u in utt_ids]
    return UtteranceDataset(
        features, utt_ids, targets, norm_stats["mean"], norm_stats["std"], augment, seed
    )


def train_model(
    features: ShardedTensors,
    split_lock: pd.DataFrame,
    manifest: pd.DataFrame,
    norm_stats: dict,
    training: dict[str, Any],
    model: dict[str, Any],
    text: dict[str, Any],
    checkpoints: CheckpointStore,
) -> tuple[dict, pd.DataFrame]:
    """Train the CTC model on the train split; returns the model bundle and the per-step log.

    Every random stream is keyed on ``training.seed``; the global RNGs (random, NumPy, torch) are
    restored afterwards, so the node leaves no trace on the process. A checkpoint is written
    every ``checkpoint_every_steps`` steps and at the end of each epoch; if ``checkpoints`` holds
    one (this run's, or a run it continues), training continues from it bit-exactly, mid-epoch
    included.
    """
    seed = int(training["seed"])
    device = torch.device(training.get("device", "cpu"))
    train_ids = split_lock.loc[split_lock["split"] == "train", "utt_id"].tolist()
    augment = SpecAugmentConfig(**training["specaugment"]) if training["specaugment"] else None
    dataset = utterance_dataset(features, norm_stats, manifest, train_ids, text, augment, seed)
    lengths = dataset.lengths()
    config = ModelConfig(
        n_mels=norm_stats["mean"].shape[0],
        vocab_size=len(CharVocabulary(text["vocabulary"])),
        **model,
    )
    steps_per_epoch = len(epoch_batches(lengths, training["batch_size"], seed, 0))
    every = int(training.get("checkpoint_every_steps") or steps_per_epoch)

    with preserved_rng_state():
        seed_globals(derive_seed(seed, "init"))
        net = CTCModel(config).to(device)
        optimizer = torch.optim.AdamW(
            net.parameters(), lr=training["learning_rate"], weight_decay=training["weight_decay"]
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=training["learning_rate"],
            total_steps=training["epochs"] * steps_per_epoch,
            pct_start=training["warmup_fraction"],
        )
        log: list[dict[str, Any]] = []
        if resumed := checkpoints.latest():
            step, state = resumed
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            restore_rng_state(state["rng"])
            log = state["log"]
            logger.info("Continuing from the checkpoint at step %d", step)

        progress = tqdm(
            mininterval=1.0,
            total=training["epochs"] * steps_per_epoch,
            initial=len(log),
            desc="train",
            unit="step",
        )
        for epoch in range(len(log) // steps_per_epoch, training["epochs"]):
            net.train()
            dataset.epoch = epoch
            done = len(log) - epoch * steps_per_epoch  # batches of this epoch already trained on
            if done == 0:  # a fresh epoch; mid-epoch, the restored RNG state continues instead
                seed_globals(derive_seed(seed, "dropout", epoch))
            loader = DataLoader(
                dataset,
                batch_sampler=epoch_batches(lengths, training["batch_size"], seed, epoch)[done:],
                collate_fn=collate,
                num_workers=training["num_workers"],
                worker_init_fn=seed_worker,
                generator=make_generator(seed, "workers", epoch),
            )
            for batch in loader:
                loss, grad_norm = _train_step(net, optimizer, batch, device, training["grad_clip"])
                scheduler.step()
                log.append(
                    {
                        "epoch": epoch,
                        "step": len(log) + 1,
                        "loss": loss,
                        "grad_norm": grad_norm,
                        "learning_rate": scheduler.get_last_lr()[0],
                        "batch_size": len(batch["utt_ids"]),
                    }
                )
                progress.update()
                progress.set_postfix(epoch=epoch, loss=f"{loss:.3f}")
                if len(log) % every == 0 or len(log) == (epoch + 1) * steps_per_epoch:
                    checkpoints.save(
                        len(log),
                        {
                            "step": len(log),
                            "model": net.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "rng": capture_rng_state(),
                            "log": log,
                        },
                    )
        progress.close()

    bundle = {
        "config": config.to_dict(),
        "vocabulary": text["vocabulary"],
        "weights": net.cpu().state_dict(),
    }
    return bundle, pd.DataFrame(log)


def _train_step(
    net: CTCModel,
    optimizer: torch.optim.Optimizer,
    batch: dict,
    device: torch.device,
    grad_clip: float,
) -> tuple[float, float]:
    """One optimizer step; returns the loss and the gradient norm before clipping.

    CUDA's ``ctc_loss`` backward has no deterministic implementation, so with deterministic
    algorithms in force (strict mode) on a GPU the loss is computed on the CPU, where it is
    deterministic; the gradient flows back to the GPU through the copy.
    """
    log_probs, out_lengths = net(batch["features"].to(device), batch["lengths"].to(device))
    log_probs = log_probs.transpose(0, 1)
    strict = (
        torch.are_deterministic_algorithms_enabled()
        and not torch.is_deterministic_algorithms_warn_only_enabled()
    )
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
