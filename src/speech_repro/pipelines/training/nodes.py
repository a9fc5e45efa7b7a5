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
    restored afterwards, so the node leaves no trace on the process. If ``checkpoints`` already holds a checkpoint of this
    run, training continues from it bit-exactly.
    """
    seed = int(training["seed"])
    train_ids = split_lock.loc[split_lock["split"] == "train", "utt_id"].tolist()
    augment = SpecAugmentConfig(**training["specaugment"]) if training["specaugment"] else None
    dataset = utterance_dataset(features, norm_stats, manifest, train_ids, text, augment, seed)
    lengths = dataset.lengths()
    config = ModelConfig(
        n_mels=norm_stats["mean"].shape[0],
        vocab_size=len(CharVocabulary(text["vocabulary"])),
        **model,
    )

    with preserved_rng_state():
        seed_globals(derive_seed(seed, "init"))
        net = CTCModel(config)
        optimizer = torch.optim.AdamW(
            net.parameters(), lr=training["learning_rate"], weight_decay=training["weight_decay"]
        )
        steps_per_epoch = -(-len(dataset) // training["batch_size"])
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=training["learning_rate"],
            total_steps=training["epochs"] * steps_per_epoch,
            pct_start=training["warmup_fraction"],
        )
        ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
        log: list[dict[str, Any]] = []
        start_epoch = 0
        if resumed := checkpoints.latest():
            step, state = resumed
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            restore_rng_state(state["rng"])
            log, start_epoch = state["log"], state["epoch"] + 1
            logger.info("Resumed from checkpoint at step %d (epoch %d)", step, state["epoch"])

        progress = tqdm(
            mininterval=1.0,
            total=training["epochs"] * steps_per_epoch,
            initial=len(log),
            desc="train",
            unit="step",
        )
        for epoch in range(start_epoch, training["epochs"]):
            net.train()
            dataset.epoch = epoch
            seed_globals(derive_seed(seed, "dropout", epoch))
            loader = DataLoader(
                dataset,
                batch_sampler=epoch_batches(lengths, training["batch_size"], seed, epoch),
                collate_fn=collate,
                num_workers=training["num_workers"],
                worker_init_fn=seed_worker,
                generator=make_generator(seed, "workers", epoch),
            )
            for batch in loader:
                log_probs, out_lengths = net(batch["features"], batch["lengths"])
                loss = ctc(
                    log_probs.transpose(0, 1),
                    batch["targets"],
                    out_lengths,
                    batch["target_lengths"],
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), training["grad_clip"])
                optimizer.step()
                scheduler.step()
                log.append(
                    {
                        "epoch": epoch,
                        "step": len(log) + 1,
                        "loss": loss.item(),
                        "grad_norm": float(grad_norm),
                        "learning_rate": scheduler.get_last_lr()[0],
                        "batch_size": len(batch["utt_ids"]),
                    }
                )
                progress.update()
                progress.set_postfix(epoch=epoch, loss=f"{log[-1]['loss']:.3f}")
            checkpoints.save(
                len(log),
                {
                    "epoch": epoch,
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
        "weights": net.state_dict(),
    }
    return bundle, pd.DataFrame(log)
