"""Data processing: corpus plan -> manifest -> locked speaker-disjoint splits -> log-mel features."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from speech_repro.asr.features import FeatureConfig, LogMel, pack_features, unpack_features
from speech_repro.corpora.digits import plan_digit_corpus


def plan_corpus(corpus: dict[str, Any]) -> pd.DataFrame:
    """The embedded digits corpus plan; the ``raw_corpus`` dataset renders it to audio."""
    return plan_digit_corpus(corpus)


def build_manifest(raw_corpus: pd.DataFrame) -> pd.DataFrame:
    """One row per utterance with the audio's real properties, read from each file's header."""
    infos = [sf.info(path) for path in raw_corpus["audio_path"]]
    return pd.DataFrame(
        {
            "utt_id": raw_corpus["utt_id"],
            "speaker": raw_corpus["speaker"],
            "audio_path": raw_corpus["audio_path"],
            "sample_rate": [i.samplerate for i in infos],
            "channels": [i.channels for i in infos],
            "num_samples": [i.frames for i in infos],
            "duration": [i.frames / i.samplerate for i in infos],
            "transcript": raw_corpus["transcript"],
            "digest": raw_corpus["digest"],
        }
    )


def speaker_bucket(speaker: str, salt: str) -> float:
    """A stable number in [0, 1) for a speaker, from a hash: independent of who else is in the corpus."""
    digest = hashlib.sha256(f"{salt}:{speaker}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(manifest: pd.DataFrame, split: dict[str, Any]) -> pd.DataFrame:
    """Speaker-disjoint train/dev/test assignment by hashed speaker id: the split lock.

    Adding speakers never moves existing ones, because each speaker's bucket depends only on
    its own id and the salt.
    """
    edges = np.cumsum([split["fractions"][name] for name in split["names"]])
    if not np.isclose(edges[-1], 1.0):
        raise ValueError(f"split fractions must sum to 1, got {edges[-1]}")
    bucket = {s: speaker_bucket(s, split["salt"]) for s in manifest["speaker"].unique()}
    names = [
        split["names"][int(np.searchsorted(edges, bucket[s], side="right"))]
        for s in manifest["speaker"]
    ]
    lock = manifest[["utt_id", "speaker", "digest"]].copy()
    lock.insert(2, "split", names)
    return lock.sort_values("utt_id").reset_index(drop=True)


def compute_features(manifest: pd.DataFrame, features: dict[str, Any]) -> dict:
    """Log-mel features for every utterance, packed into one tensor (see ``pack_features``)."""
    config = FeatureConfig(**features)
    logmel = LogMel(config)
    out = {}
    for row in manifest.itertuples():
        wave, rate = sf.read(row.audio_path, dtype="float32", always_2d=False)
        if rate != config.sample_rate:
            raise ValueError(
                f"{row.audio_path}: {rate} Hz, features expect {config.sample_rate} Hz"
            )
        out[row.utt_id] = logmel(torch.from_numpy(wave))
    return pack_features(out)


def summarize_features(
    features: dict, manifest: pd.DataFrame, features_config: dict[str, Any]
) -> pd.DataFrame:
    """Per-utterance feature statistics, checked by the ``FeatureStats`` schema."""
    config = FeatureConfig(**features_config)
    expected = dict(
        zip(manifest["utt_id"], manifest["num_samples"].map(config.expected_frames), strict=True)
    )
    rows = []
    for utt_id, matrix in unpack_features(features).items():
        finite = torch.isfinite(matrix)
        values = matrix[finite]
        rows.append(
            {
                "utt_id": utt_id,
                "num_frames": matrix.shape[0],
                "expected_frames": expected[utt_id],
                "non_finite": int((~finite).sum()),
                "mean": float(values.mean()) if values.numel() else float("nan"),
                "std": float(values.std()) if values.numel() > 1 else 0.0,
                "min": float(values.min()) if values.numel() else float("nan"),
                "max": float(values.max()) if values.numel() else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def compute_normalization(
    features: dict, split_lock: pd.DataFrame, feature_stats: pd.DataFrame
) -> dict:
    """Per-bin mean and standard deviation over the train split only (float64 accumulation).

    Also keeps the train split's distribution of per-utterance means and deviations as the
    reference that later data is compared with. Taking the schema-checked ``feature_stats`` as
    input makes the sanity checks run before anything is trained.
    """
    train = set(split_lock.loc[split_lock["split"] == "train", "utt_id"])
    reference = feature_stats[feature_stats["utt_id"].isin(train)]
    quantiles = torch.tensor([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99], dtype=torch.float64)
    matrices = [m for u, m in unpack_features(features).items() if u in train]
    if not matrices:
        raise ValueError("the train split is empty")
    frames = torch.cat(matrices).double()
    return {
        "mean": frames.mean(0).float(),
        "std": frames.std(0).clamp_min(1e-5).float(),
        "num_frames": int(frames.shape[0]),
        "num_utterances": len(matrices),
        "reference_quantiles": quantiles.float(),
        "reference_utterance_mean": torch.quantile(
            torch.tensor(reference["mean"].to_numpy()), quantiles
        ).float(),
        "reference_utterance_std": torch.quantile(
            torch.tensor(reference["std"].to_numpy()), quantiles
        ).float(),
    }
