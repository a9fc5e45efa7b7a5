"""Data processing nodes on the real tiny corpus, and the schemas that guard their outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.errors
import pytest
import soundfile as sf
import torch

from speech_repro.asr.audio import AudioPolicy
from speech_repro.asr.text import CharVocabulary, TextNormalization
from speech_repro.pipelines.data_processing import nodes as dp
from speech_repro.repro.hashing import bytes_digest
from speech_repro.repro.shards import ShardedTensors, write_shards
from speech_repro.schemas import (
    CorpusValidationError,
    FeatureStats,
    LeakageError,
    Manifest,
    SplitLock,
    validate_manifest,
)


def test_manifest_describes_the_real_audio(prepared):
    manifest = Manifest.validate(prepared["manifest"])
    assert len(manifest) == 4 * 4 * 4
    assert set(manifest["sample_rate"]) == {16000}
    assert (
        manifest["transcript"]
        .str.fullmatch(r"(zero|oh|one|two|three|four|five|six|seven|eight|nine)( \w+)*")
        .all()
    )


def test_manifest_validation_reports_every_problem_at_once(prepared, params):
    bad = prepared["manifest"].copy()
    bad.loc[1, "utt_id"] = bad.loc[0, "utt_id"]
    bad.loc[2, "transcript"] = "!!"
    bad.loc[3, "channels"] = 2
    bad.loc[4, "transcript"] = "seven 7"
    policy = AudioPolicy(**{**params["audio"], "downmix": "error"})
    text = params["text"]
    with pytest.raises(CorpusValidationError) as error:
        validate_manifest(
            bad,
            policy,
            CharVocabulary(text["vocabulary"]),
            TextNormalization(**text["normalization"]),
        )
    message = str(error.value)
    assert "5 utterance(s)" in message  # both rows of the duplicate id are named
    for index, problem in [
        (0, "utt_id"),
        (2, "empty after normalisation"),
        (3, "channels"),
        (4, "vocabulary"),
    ]:
        assert f"{bad.loc[index, 'utt_id']} ({bad.loc[index, 'audio_path']}): " in message
        assert problem in message


def test_split_lock_is_speaker_disjoint_and_complete(prepared):
    lock = SplitLock.validate(prepared["split_lock"])
    assert set(lock["utt_id"]) == set(prepared["manifest"]["utt_id"])
    assert lock.groupby("speaker")["split"].nunique().max() == 1
    assert set(lock["split"]) == {"train", "dev", "test"}


def test_adding_speakers_never_moves_existing_ones(prepared, params):
    manifest = prepared["manifest"]
    newcomers = manifest.head(3).assign(
        speaker=["new-a", "new-b", "new-c"],
        utt_id=["new-a-0", "new-b-0", "new-c-0"],
        digest=[bytes_digest(name.encode()) for name in "abc"],
    )
    before = dp.assign_splits(manifest, params["split"]).set_index("utt_id")["split"]
    after = dp.assign_splits(pd.concat([manifest, newcomers]), params["split"]).set_index("utt_id")[
        "split"
    ]
    pd.testing.assert_series_equal(after.loc[before.index], before)


def test_split_fractions_must_sum_to_one(prepared, params):
    with pytest.raises(ValueError, match="sum to 1"):
        dp.assign_splits(
            prepared["manifest"],
            {**params["split"], "fractions": {"train": 0.5, "dev": 0.2, "test": 0.2}},
        )


def test_given_splits_with_a_shared_speaker_and_shared_audio_are_refused(prepared):
    manifest = prepared["manifest"].copy()
    manifest["given_split"] = (
        prepared["split_lock"].set_index("utt_id").loc[manifest["utt_id"], "split"].to_numpy()
    )
    speaker_rows = manifest.index[manifest["speaker"] == manifest.loc[0, "speaker"]]
    other = "test" if manifest.loc[speaker_rows[0], "given_split"] != "test" else "dev"
    manifest.loc[speaker_rows[0], "given_split"] = other  # one utterance of the speaker moves
    donor = manifest.index[
        (manifest["given_split"] == "train") & (manifest["speaker"] != manifest.loc[0, "speaker"])
    ][0]
    receiver = manifest.index[
        (manifest["given_split"] == "dev") & (manifest["speaker"] != manifest.loc[0, "speaker"])
    ][0]
    # The same audio in train and dev.
    manifest.loc[receiver, "digest"] = manifest.loc[donor, "digest"]
    with pytest.raises(LeakageError) as error:
        dp.assign_splits(manifest, {"method": "given"})
    message = str(error.value)
    assert f"speaker {manifest.loc[0, 'speaker']} is in several splits" in message
    assert "identical audio" in message
    assert manifest.loc[donor, "utt_id"] in message and manifest.loc[receiver, "utt_id"] in message


def test_features_match_the_declared_settings(prepared, params):
    features = prepared["features"]
    assert list(features) == prepared["manifest"]["utt_id"].tolist()
    stats = FeatureStats.validate(prepared["feature_stats"])
    assert (stats["num_frames"] == stats["expected_frames"]).all()
    assert {features[u].shape[1] for u in features} == {params["features"]["n_mels"]}
    assert len(list(features.shards())) == -(
        -len(features) // params["sharding"]["utterances_per_shard"]
    )


def test_feature_shards_are_the_same_bits_with_and_without_the_process_pool(prepared, params):
    manifest, raw = prepared["manifest"].head(10), prepared["raw_corpus"]
    sharding = {"utterances_per_shard": 4, "workers": 2, "min_utterances_for_pool": 1}
    pooled = list(dp.compute_features(manifest, raw, params["features"], params["audio"], sharding))
    alone = list(
        dp.compute_features(
            manifest, raw, params["features"], params["audio"], {**sharding, "workers": 1}
        )
    )
    assert [list(s) for s in pooled] == [list(s) for s in alone]
    for a, b in zip(pooled, alone, strict=True):
        assert all(torch.equal(a[u], b[u]) for u in a)
        assert all(torch.equal(a[u], prepared["features"][u]) for u in a)


def test_non_finite_features_are_refused_naming_the_utterances(tmp_path, params):
    wave = np.full(8000, 0.1, dtype=np.float32)
    wave[100] = np.nan
    rows = []
    for name in ["bad-1", "bad-2"]:
        sf.write(tmp_path / f"{name}.wav", wave, 16000, subtype="FLOAT")
        rows.append((name, str(tmp_path / f"{name}.wav"), 0.0, float("nan")))
    with pytest.raises(ValueError, match="bad-1, bad-2"):
        dp.features_of_shard((rows, params["features"], params["audio"]))


def test_feature_stats_schema_rejects_non_finite_counts(prepared):
    stats = prepared["feature_stats"].copy()
    stats.loc[3, "non_finite"] = 2
    with pytest.raises(pandera.errors.SchemaError, match="non_finite"):
        FeatureStats.validate(stats)


def test_normalization_uses_the_train_split_only(prepared, params, tmp_path):
    lock = prepared["split_lock"]
    dev_utt = lock.loc[lock["split"] == "dev", "utt_id"].iloc[0]
    shifted = [
        {u: m + 100.0 if u == dev_utt else m for u, m in shard.items()}
        for shard in prepared["features"].shards()
    ]
    write_shards(tmp_path, shifted)
    changed, _ = dp.fit_normalization(
        ShardedTensors(tmp_path), lock, prepared["feature_stats"], params["drift"]
    )
    assert torch.equal(changed["mean"], prepared["norm_stats"]["mean"])
    assert prepared["norm_stats"]["num_utterances"] == int((lock["split"] == "train").sum())


def test_drift_report_flags_a_shifted_split(prepared, params):
    report = prepared["drift_report"]
    assert set(report["splits"]) == {"dev", "test"} and report["flagged"] == []
    stats = prepared["feature_stats"].copy()
    lock = prepared["split_lock"]
    for split in ("dev", "test"):  # e.g. a louder recording chain
        stats.loc[stats["utt_id"].isin(lock.query(f"split == '{split}'")["utt_id"]), "mean"] += 5.0
    shifted = dp.drift_report(stats, lock, params["drift"])
    assert shifted["splits"]["dev"]["mean"]["ks"] == shifted["splits"]["test"]["mean"]["ks"] == 1.0
    # dev has enough utterances for the shift to be significant; the 4 test utterances do not.
    assert shifted["flagged"] == ["dev"]
    assert shifted["splits"]["test"]["ks_critical"] > 1.0
    with pytest.raises(ValueError, match="drift"):
        dp.drift_report(stats, prepared["split_lock"], {**params["drift"], "fail": True})
