"""Data processing: corpus index -> validated manifest -> locked splits -> sharded log-mel features.

Every check that can fail on user data runs here, before training, and reports every offending
utterance at once.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import ks_2samp
from tqdm.auto import tqdm

from kedro_repro.determinism import torch_threads
from kedro_repro.params import as_type
from kedro_repro.shards import ShardedTensors
from speech_repro.asr.audio import AudioPolicy, inspect_audio, load_audio
from speech_repro.asr.features import FeatureConfig, LogMel
from speech_repro.asr.text import CharVocabulary
from speech_repro.corpora.digits import plan_digit_corpus
from speech_repro.corpora.identifiers import normalize_id
from speech_repro.corpora.paths import audio_files, corpus_root
from speech_repro.corpora.problems import PROBLEMS
from speech_repro.parameters import (
    CorpusParams,
    DriftParams,
    ShardingParams,
    SplitParams,
    TextParams,
)
from speech_repro.schemas import validate_manifest, validate_split_lock

# The nodes of this module also accept a section's raw mapping (``as_type``/``.of``): the test
# fixtures and scripts call them outside a Kedro run, where no hook has typed the parameters.


def plan_corpus(corpus: CorpusParams) -> pd.DataFrame:
    """The embedded digits corpus plan; the ``raw_corpus`` dataset renders it to audio."""
    return plan_digit_corpus(CorpusParams.of(corpus).model_dump())


def build_manifest(raw_corpus: pd.DataFrame, audio: AudioPolicy, text: TextParams) -> pd.DataFrame:
    """One row per utterance with the audio's real properties, found by decoding it once.

    ``audio_path`` stays as the corpus index stores it, relative to the corpus root (the audio is
    read under the root the corpus dataset attached), so the manifest does not depend on where
    the corpus lies. Raises ``CorpusValidationError`` naming every utterance that is unreadable,
    truncated, empty, non-finite, at a rate or channel count the audio policy rejects, out of the
    duration bounds, with an empty transcript or characters outside the vocabulary, or with a
    duplicate id. The problems the corpus dataset found while indexing (``attrs``, key
    ``corpora.problems.PROBLEMS``: malformed lines, missing files, colliding ids) are in the same
    error, grouped by kind. A span outside the duration bounds is refused from its header,
    without decoding it.
    """
    policy, text = as_type(AudioPolicy, audio), TextParams.of(text)
    root = corpus_root(raw_corpus)
    starts = (
        raw_corpus["start"].astype(float)
        if "start" in raw_corpus
        else pd.Series(0.0, index=raw_corpus.index)
    )
    ends = (
        raw_corpus["end"].astype(float)
        if "end" in raw_corpus
        else pd.Series(math.nan, index=raw_corpus.index)
    )
    files = audio_files(root, raw_corpus["audio_path"])
    infos = [
        inspect_audio(p, s, e, policy.min_seconds, policy.max_seconds)
        for p, s, e in zip(files, starts, ends, strict=True)
    ]
    manifest = pd.DataFrame(
        {
            "utt_id": raw_corpus["utt_id"].astype(str),
            "speaker": raw_corpus["speaker"].astype(str),
            "audio_path": raw_corpus["audio_path"].astype(str),
            "start": starts.to_numpy(),
            "end": ends.to_numpy(),
            "sample_rate": [i.sample_rate for i in infos],
            "channels": [i.channels for i in infos],
            "num_samples": [i.num_samples for i in infos],
            "duration": [i.num_samples / i.sample_rate if i.sample_rate else 0.0 for i in infos],
            "transcript": raw_corpus["transcript"].astype(str),
            "digest": raw_corpus["digest"].astype(str),
            "audio_error": [i.error for i in infos],
        }
    )
    if "split" in raw_corpus:
        manifest["given_split"] = raw_corpus["split"].astype(str).to_numpy()
    return validate_manifest(
        manifest,
        policy,
        CharVocabulary(text.vocabulary),
        text.normalization,
        audio_root=root,
        found=raw_corpus.attrs.get(PROBLEMS, ()),
    )


def speaker_bucket(speaker: str, salt: str) -> float:
    """A stable number in [0, 1) for a speaker, from a hash: independent of who else is in the corpus.

    The hash reads the normalised id (``normalize_id``), so look-alike spellings of one speaker
    (fullwidth letters, a zero-width space) land in the same split; an ASCII id is its own
    normalised form, so no existing assignment moves.
    """
    digest = hashlib.sha256(f"{salt}:{normalize_id(speaker)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SplitAssignmentError(ValueError):
    """The split parameters cannot be applied to this corpus; the message names every problem."""


def checked_split(split: SplitParams) -> SplitParams:
    """The split parameters, refusing an unknown method and lists it would ignore before
    anything is read."""
    config = SplitParams.of(split)
    if config.method not in SPLIT_METHODS:
        raise SplitAssignmentError(
            f"split.method must be one of {', '.join(SPLIT_METHODS)}, not {config.method!r}"
        )
    if config.assigned and config.method != "assigned":  # lists that would be ignored
        raise SplitAssignmentError(
            f"split.assigned lists speakers but split.method is {config.method!r}: "
            "set split.method: assigned to use them, or remove split.assigned"
        )
    return config


SPLIT_METHODS = ("speaker_hash", "assigned", "given")
UNLISTED_SPLIT = "train"  # where split.method: assigned puts the speakers no list names


def assign_splits(manifest: pd.DataFrame, split: SplitParams) -> pd.DataFrame:
    """Train/dev/test membership of every utterance, with its audio digest: the split lock.

    ``method: speaker_hash`` puts each speaker by a salted hash of its id, so adding speakers
    never moves existing ones. ``method: assigned`` puts the speakers listed under
    ``split.assigned.<split>`` there and every other speaker in train. ``method: given`` keeps
    the corpus's own split column. A split that ``split.names`` names but that receives no
    speaker raises :class:`SplitAssignmentError` (nothing is written, nothing trained), and the
    lock is checked for leakage: no speaker (compared after Unicode normalisation) and no audio
    digest in two splits.
    """
    config = checked_split(split)
    if config.method == "given":
        if "given_split" not in manifest:
            raise SplitAssignmentError(
                "split.method is 'given' but the corpus declares no split column"
            )
        names = manifest["given_split"].tolist()
        _refuse_empty_splits(
            names,
            config.names,
            lambda name: "the corpus's split column gives it no utterance",
            "fix the corpus's split column, or list only its splits in split.names",
        )
    elif config.method == "speaker_hash":
        names = _hashed_splits(manifest["speaker"], config)
    else:
        names = _assigned_splits(manifest["speaker"], config)
    lock = manifest[["utt_id", "speaker", "digest"]].copy()
    lock.insert(2, "split", names)
    lock = lock.sort_values("utt_id").reset_index(drop=True)
    return validate_split_lock(lock)


def _hashed_splits(speakers: pd.Series, config: SplitParams) -> list[str]:
    edges = np.cumsum([config.fractions[name] for name in config.names])
    if not np.isclose(edges[-1], 1.0):
        raise SplitAssignmentError(f"split fractions must sum to 1, got {edges[-1]}")
    bucket = {s: speaker_bucket(s, config.salt) for s in speakers.unique()}
    split_of = {
        s: config.names[min(int(np.searchsorted(edges, b, side="right")), len(edges) - 1)]
        for s, b in bucket.items()
    }
    voices = pd.Series({normalize_id(s): name for s, name in split_of.items()})
    hashed = voices.value_counts().reindex(config.names, fill_value=0)
    if len(hashed[hashed > 0]) == 1:
        where = f"all hashed into {hashed.idxmax()}"
    else:
        where = "hashed into " + ", ".join(f"{n} {c}" for n, c in hashed.items())
    _refuse_empty_splits(
        [split_of[s] for s in speakers],
        [name for name in config.names if config.fractions[name] > 0],
        lambda name: f"{len(voices)} speakers, {where}",
        "use split.method: assigned with explicit speaker lists, or change split.salt/fractions",
    )
    return [split_of[s] for s in speakers]


def _assigned_splits(speakers: pd.Series, config: SplitParams) -> list[str]:
    """Each speaker's split from the explicit lists; every list problem is named at once."""
    known = {normalize_id(s) for s in speakers.unique()}
    problems, listed_in = [], defaultdict(list)
    for name, listed in config.assigned.items():
        if name not in config.names:
            problems.append(
                f"split.assigned.{name}: {name!r} is not in split.names {list(config.names)}"
            )
        for speaker in listed or []:
            if normalize_id(str(speaker)) not in known:
                problems.append(f"unknown speaker {str(speaker)!r} in split.assigned.{name}")
            elif name not in listed_in[normalize_id(str(speaker))]:
                listed_in[normalize_id(str(speaker))].append(name)
    for speaker, names in listed_in.items():
        if len(names) > 1:
            problems.append(f"speaker {speaker!r} is listed in several splits ({', '.join(names)})")
    if problems:
        raise SplitAssignmentError(
            f"split.assigned does not fit the corpus ({len(known)} speakers):\n  "
            + "\n  ".join(problems)
        )
    split_of = [listed_in.get(normalize_id(s), [UNLISTED_SPLIT])[0] for s in speakers]

    def why(name: str) -> str:
        if name == UNLISTED_SPLIT and name not in config.assigned:
            return f"all {len(known)} speakers are listed in other splits"
        if not config.assigned.get(name):
            return f"split.assigned.{name} lists no speaker"
        return f"no speaker of split.assigned.{name} is in the corpus"

    _refuse_empty_splits(
        split_of,
        config.names,
        why,
        "list speakers for it in split.assigned, or drop it from split.names",
    )
    return split_of


def _refuse_empty_splits(
    assigned: Sequence[str], required: Sequence[str], why: Callable[[str], str], fix: str
) -> None:
    """Raise naming every required split that no utterance was assigned to, why, and the fix."""
    present = set(assigned)
    empty = [name for name in required if name not in present]
    if empty:
        raise SplitAssignmentError(
            "; ".join(f"split {name!r} is empty: {why(name)}" for name in empty)
            + f"; {fix}. Nothing was trained."
        )


def compute_features(
    manifest: pd.DataFrame,
    raw_corpus: pd.DataFrame,
    features: FeatureConfig,
    audio: AudioPolicy,
    sharding: ShardingParams,
) -> Iterator[dict[str, torch.Tensor]]:
    """Log-mel features, one shard of ``utterances_per_shard`` utterances at a time.

    The manifest's audio paths are relative to the corpus root, which ``raw_corpus`` (the corpus
    as it is now) knows. Every manifest utterance must still be in the corpus with the same path
    and digest, so features are never computed from audio the manifest did not check (a manifest
    loaded from an older version, a corpus changed since): otherwise this raises, naming them.

    Shards are computed by a pool of ``workers`` processes (in order, so the output does not depend
    on the worker count) and written as they come, so memory holds a few shards, not the corpus.
    Every computation uses one torch thread, so results are the same bits in and out of the pool.
    Spawning workers that import torch costs seconds, so corpora smaller than
    ``min_utterances_for_pool`` are computed in this process.
    """
    features, audio = as_type(FeatureConfig, features), as_type(AudioPolicy, audio)
    sharding = ShardingParams.of(sharding)
    size = sharding.utterances_per_shard
    _check_manifest_matches_corpus(manifest, raw_corpus)
    rows = list(
        zip(
            manifest["utt_id"],
            audio_files(corpus_root(raw_corpus), manifest["audio_path"]),
            manifest["start"],
            manifest["end"],
            strict=True,
        )
    )
    jobs = [(rows[i : i + size], features, audio) for i in range(0, len(rows), size)]
    # A generator object, not a generator function: Kedro hands it to the dataset as one stream.
    workers = sharding.workers if len(rows) >= sharding.min_utterances_for_pool else 1
    return _computed_shards(jobs, min(workers, len(jobs)))


def _check_manifest_matches_corpus(manifest: pd.DataFrame, raw_corpus: pd.DataFrame) -> None:
    """Raise naming every manifest utterance that is gone from the corpus or whose audio changed."""
    corpus = dict(
        zip(
            raw_corpus["utt_id"],
            zip(raw_corpus["audio_path"], raw_corpus["digest"], strict=True),
            strict=True,
        )
    )
    stale = [
        utt_id
        for utt_id, path, digest in zip(
            manifest["utt_id"], manifest["audio_path"], manifest["digest"], strict=True
        )
        if corpus.get(utt_id) != (path, digest)
    ]
    if stale:
        raise ValueError(
            f"the manifest no longer matches raw_corpus: {len(stale)} utterance(s) were removed "
            f"or their audio changed since it was built: {', '.join(stale)}. Rebuild it "
            "(run the build_manifest node) before computing features."
        )


def _computed_shards(jobs: list, workers: int) -> Iterator[dict[str, torch.Tensor]]:
    # As training's bar: on a terminal only (disable=None), quiet in logs and pipes.
    total = sum(len(rows) for rows, *_ in jobs)
    with tqdm(total=total, desc="features", unit="utt", mininterval=1.0, disable=None) as progress:
        for shard in _shards(jobs, workers):
            progress.update(len(shard))
            yield shard


def _shards(jobs: list, workers: int) -> Iterator[dict[str, torch.Tensor]]:
    if workers <= 1:
        yield from map(features_of_shard, jobs)
        return
    # spawn, not fork: forking a process whose torch thread pools are running is unsafe.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(features_of_shard, jobs)


def features_of_shard(
    job: tuple[list[tuple], FeatureConfig, AudioPolicy],
) -> dict[str, torch.Tensor]:
    """Features of one shard's utterances; raises naming every utterance with non-finite values."""
    rows, features, audio = job
    config, policy = as_type(FeatureConfig, features), as_type(AudioPolicy, audio)
    if config.sample_rate != policy.sample_rate:
        raise ValueError(
            f"features.sample_rate {config.sample_rate} != audio.sample_rate {policy.sample_rate}"
        )
    logmel = LogMel(config)
    out = {}
    with torch_threads(1):
        for utt_id, path, start, end in rows:
            out[utt_id] = logmel(load_audio(path, policy, start, end))
    bad = [u for u, m in out.items() if not torch.isfinite(m).all()]
    if bad:
        raise ValueError(
            f"non-finite features (NaN or inf) for {len(bad)} utterance(s): {', '.join(bad)}"
        )
    return out


def summarize_features(
    features: ShardedTensors, manifest: pd.DataFrame, features_config: FeatureConfig
) -> pd.DataFrame:
    """Per-utterance feature statistics, checked by the ``FeatureStats`` schema."""
    config = as_type(FeatureConfig, features_config)
    rows = []
    for row in manifest.itertuples():
        matrix = features[row.utt_id].double()
        target_samples = math.ceil(row.num_samples * config.sample_rate / row.sample_rate)
        rows.append(
            {
                "utt_id": row.utt_id,
                "num_frames": matrix.shape[0],
                "expected_frames": config.expected_frames(target_samples),
                "non_finite": int((~torch.isfinite(matrix)).sum()),
                "mean": float(matrix.mean()),
                "std": float(matrix.std()) if matrix.numel() > 1 else 0.0,
                "min": float(matrix.min()),
                "max": float(matrix.max()),
            }
        )
    return pd.DataFrame(rows)


def fit_normalization(
    features: ShardedTensors,
    split_lock: pd.DataFrame,
    feature_stats: pd.DataFrame,
    drift: DriftParams,
) -> tuple[dict, dict]:
    """Per-bin mean/std over the train split only, and a drift report of the other splits.

    The drift report compares each split's per-utterance feature means and deviations with the
    train split's (two-sample Kolmogorov-Smirnov statistic and the shift of the median in units
    of the train spread). Splits beyond ``drift.max_ks`` are flagged; with ``drift.fail: true``
    they stop the run before training. Taking the schema-checked ``feature_stats`` as input makes
    every data check run before anything is trained.
    """
    train = set(split_lock.loc[split_lock["split"] == "train", "utt_id"])
    if not train:
        raise ValueError("the train split is empty")
    total = count = 0
    for shard in features.shards():  # streaming: one shard in memory at a time
        for utt_id, matrix in shard.items():
            if utt_id in train:
                m = matrix.double()
                total = total + torch.stack([m.sum(0), (m * m).sum(0)])
                count += m.shape[0]
    mean = total[0] / count
    std = (total[1] / count - mean**2).clamp_min(0).mul(count / max(count - 1, 1)).sqrt()
    norm_stats = {
        "mean": mean.float(),
        "std": std.clamp_min(1e-5).float(),
        "num_frames": count,
        "num_utterances": len(train),
    }
    return norm_stats, drift_report(feature_stats, split_lock, drift)


def drift_report(feature_stats: pd.DataFrame, split_lock: pd.DataFrame, drift: DriftParams) -> dict:
    """Distribution shift of per-utterance feature statistics between train and every other split.

    A split is flagged when the two-sample Kolmogorov-Smirnov statistic of its per-utterance means
    or deviations exceeds ``drift.max_ks`` *and* the critical value at significance
    ``drift.alpha`` for the two sample sizes, so a handful of utterances cannot raise an alarm.
    """
    drift = DriftParams.of(drift)
    stats = feature_stats.merge(split_lock[["utt_id", "split"]], on="utt_id")
    reference = stats[stats["split"] == "train"]
    report: dict[str, Any] = {
        "reference": "train",
        **drift.model_dump(),
        "splits": {},
        "flagged": [],
    }
    for name, group in stats[stats["split"] != "train"].groupby("split"):
        n, m = len(reference), len(group)
        critical = math.sqrt(-0.5 * math.log(drift.alpha / 2)) * math.sqrt((n + m) / (n * m))
        entry: dict[str, Any] = {"utterances": m, "ks_critical": critical}
        for column in ("mean", "std"):
            spread = (
                float(reference[column].quantile(0.75) - reference[column].quantile(0.25)) or 1.0
            )
            entry[column] = {
                # the statistic only: the report's own critical value decides (see above)
                "ks": float(
                    ks_2samp(reference[column].to_numpy(), group[column].to_numpy()).statistic
                ),
                "median_shift_iqr": float(group[column].median() - reference[column].median())
                / spread,
            }
        report["splits"][name] = entry
        worst = max(entry["mean"]["ks"], entry["std"]["ks"])
        if worst > drift.max_ks and worst > critical:
            report["flagged"].append(name)
    if report["flagged"] and drift.fail:
        raise ValueError(f"feature distribution drift in {report['flagged']}: {report['splits']}")
    return report
