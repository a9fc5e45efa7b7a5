"""Data processing nodes on the real tiny corpus, and the schemas that guard their outputs."""

from __future__ import annotations

import pandas as pd
import pandera.errors
import pytest
import torch

from speech_repro.asr.features import unpack_features
from speech_repro.pipelines.data_processing import nodes as dp
from speech_repro.schemas import FeatureStats, Manifest, SplitLock


def test_manifest_describes_the_real_audio(prepared):
    manifest = Manifest.validate(prepared["manifest"])
    assert len(manifest) == 4 * 4 * 4
    assert set(manifest["sample_rate"]) == {16000}
    assert (
        manifest["transcript"]
        .str.fullmatch(r"(zero|oh|one|two|three|four|five|six|seven|eight|nine)( \w+)*")
        .all()
    )


def test_manifest_schema_reports_every_problem_at_once(prepared):
    bad = prepared["manifest"].copy()
    bad.loc[1, "utt_id"] = bad.loc[0, "utt_id"]
    bad.loc[2, "transcript"] = ""
    bad.loc[3, "channels"] = 2
    with pytest.raises(pandera.errors.SchemaErrors) as error:
        Manifest.validate(bad, lazy=True)
    failed = set(error.value.failure_cases["column"].dropna())
    assert {"utt_id", "transcript", "channels"} <= failed


def test_split_lock_is_speaker_disjoint_and_complete(prepared):
    lock = SplitLock.validate(prepared["split_lock"])
    assert set(lock["utt_id"]) == set(prepared["manifest"]["utt_id"])
    assert lock.groupby("speaker")["split"].nunique().max() == 1
    assert set(lock["split"]) == {"train", "dev", "test"}


def test_adding_speakers_never_moves_existing_ones(prepared, params):
    manifest = prepared["manifest"]
    newcomers = manifest.head(3).assign(
        speaker=["new-a", "new-b", "new-c"], utt_id=["new-a-0", "new-b-0", "new-c-0"]
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


def test_speaker_disjointness_check_catches_a_leak(prepared):
    leaky = prepared["split_lock"].copy()
    speaker = leaky["speaker"].iloc[0]
    leaky.loc[(leaky["speaker"] == speaker).idxmax(), "split"] = (
        "test" if leaky["split"].iloc[0] != "test" else "dev"
    )
    with pytest.raises(pandera.errors.SchemaError, match="speakers_are_disjoint"):
        SplitLock.validate(leaky)


def test_features_match_the_declared_settings(prepared, params):
    matrices = unpack_features(prepared["features"])
    assert list(matrices) == prepared["manifest"]["utt_id"].tolist()
    stats = FeatureStats.validate(prepared["feature_stats"])
    assert (stats["num_frames"] == stats["expected_frames"]).all()
    assert {m.shape[1] for m in matrices.values()} == {params["features"]["n_mels"]}


def test_feature_checks_reject_non_finite_values(prepared, params):
    features = {**prepared["features"], "frames": prepared["features"]["frames"].clone()}
    features["frames"][5, 3] = float("nan")
    stats = dp.summarize_features(features, prepared["manifest"], params["features"])
    with pytest.raises(pandera.errors.SchemaError, match="non_finite"):
        FeatureStats.validate(stats)


def test_normalization_uses_the_train_split_only(prepared):
    lock = prepared["split_lock"]
    dev_utt = lock.loc[lock["split"] == "dev", "utt_id"].iloc[0]
    offsets = prepared["features"]["offsets"]
    index = prepared["features"]["utt_ids"].index(dev_utt)
    frames = prepared["features"]["frames"].clone()
    frames[offsets[index] : offsets[index + 1]] += 100.0
    changed = dp.compute_normalization(
        {**prepared["features"], "frames": frames}, lock, prepared["feature_stats"]
    )
    assert torch.equal(changed["mean"], prepared["norm_stats"]["mean"])
    assert prepared["norm_stats"]["num_utterances"] == int((lock["split"] == "train").sum())
