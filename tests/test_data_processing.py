"""Data processing nodes on the real tiny corpus, and the schemas that guard their outputs."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.errors
import pytest
import soundfile as sf
import torch
from kedro.config import OmegaConfigLoader

import speech_repro
from kedro_repro.hashing import bytes_digest
from kedro_repro.parameter_hooks import TypedParametersHook
from kedro_repro.params import check_parameters
from kedro_repro.shards import ShardedTensors, write_shards
from speech_repro.asr.audio import AudioPolicy
from speech_repro.asr.features import FeatureConfig
from speech_repro.asr.text import CharVocabulary, TextNormalization
from speech_repro.parameters import (
    PARAMETER_SCHEMA,
    CorpusParams,
    DriftParams,
    ProjectParameters,
    ShardingParams,
    SplitParams,
)
from speech_repro.pipelines.data_processing import nodes as dp
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
        assert f"{bad.loc[index, 'audio_path']} '{bad.loc[index, 'utt_id']}': " in message
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
    before = dp.assign_splits(manifest, SplitParams(**params["split"])).set_index("utt_id")["split"]
    after = dp.assign_splits(
        pd.concat([manifest, newcomers]), SplitParams(**params["split"])
    ).set_index("utt_id")["split"]
    pd.testing.assert_series_equal(after.loc[before.index], before)


def test_split_fractions_must_sum_to_one(prepared, params):
    with pytest.raises(ValueError, match="sum to 1"):
        dp.assign_splits(
            prepared["manifest"],
            SplitParams(
                **{**params["split"], "fractions": {"train": 0.5, "dev": 0.2, "test": 0.2}}
            ),
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
        dp.assign_splits(manifest, SplitParams(method="given"))
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
    sharding = ShardingParams(utterances_per_shard=4, workers=2, min_utterances_for_pool=1)
    features, audio = FeatureConfig(**params["features"]), AudioPolicy(**params["audio"])
    pooled = list(dp.compute_features(manifest, raw, features, audio, sharding))
    alone = list(
        dp.compute_features(
            manifest, raw, features, audio, sharding.model_copy(update={"workers": 1})
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
        dp.features_of_shard(
            (rows, FeatureConfig(**params["features"]), AudioPolicy(**params["audio"]))
        )


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
        ShardedTensors(tmp_path), lock, prepared["feature_stats"], DriftParams(**params["drift"])
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
    shifted = dp.drift_report(stats, lock, DriftParams(**params["drift"]))
    assert shifted["splits"]["dev"]["mean"]["ks"] == shifted["splits"]["test"]["mean"]["ks"] == 1.0
    # dev has enough utterances for the shift to be significant; the 4 test utterances do not.
    assert shifted["flagged"] == ["dev"]
    assert shifted["splits"]["test"]["ks_critical"] > 1.0
    with pytest.raises(ValueError, match="drift"):
        dp.drift_report(
            stats, prepared["split_lock"], DriftParams(**{**params["drift"], "fail": True})
        )


@pytest.mark.parametrize(
    ("train", "dev", "expected"),
    [
        # worked by hand: the largest gap between the two empirical CDFs
        ([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0], 0.5),  # ties at 3 and 4
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], 0.25),  # unequal sizes, all but one tied
        ([1.0, 2.0], [10.0, 20.0, 30.0], 1.0),  # disjoint
        ([5.0, 1.0, 3.0], [3.0, 1.0, 5.0], 0.0),  # same sample, other order
    ],
)
def test_drift_ks_is_the_two_sample_kolmogorov_smirnov_statistic(train, dev, expected, params):
    ids = [f"t{i}" for i in range(len(train))] + [f"d{i}" for i in range(len(dev))]
    stats = pd.DataFrame({"utt_id": ids, "mean": train + dev, "std": [1.0] * len(ids)})
    lock = pd.DataFrame({"utt_id": ids, "split": ["train"] * len(train) + ["dev"] * len(dev)})
    report = dp.drift_report(stats, lock, DriftParams(**params["drift"]))
    assert report["splits"]["dev"]["mean"]["ks"] == expected
    assert report["splits"]["dev"]["std"]["ks"] == 0.0
    assert type(report["splits"]["dev"]["mean"]["ks"]) is float  # JSON-native, not numpy


# --- splits: never silently empty, explicit assignment, look-alike speaker ids ---------------

# sha256 of the sorted "speaker<TAB>split" lines of the plan's speakers, before ids were
# normalised: NFKC of an ASCII id is the id itself, so no speaker of the default runs moved.
DEFAULT_ASSIGNMENT = {
    "local": "d0f091fe9abeefa210377d4e69c951dda8c34b5704406163b239fcddf650a1d2",
    "test": "af13d2bd384b2e8c9e5adfc2f32b80d801bd200f80fa544710b7798c9749b81f",
}


def _fullwidth(identifier: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in identifier)


def _plan_lock(env: str) -> pd.DataFrame:
    from kedro.config import OmegaConfigLoader

    from .conftest import PROJECT_ROOT

    params = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy={"parameters": "soft"},
    )["parameters"]
    plan = dp.plan_corpus(CorpusParams(**params["corpus"]))
    manifest = plan[["utt_id", "speaker"]].assign(
        digest=[bytes_digest(u.encode()) for u in plan["utt_id"]]
    )
    return dp.assign_splits(manifest, SplitParams(**params["split"]))


@pytest.mark.parametrize("env", ["local", "test"])
def test_the_default_split_assignment_is_unchanged(env):
    import hashlib

    lock = _plan_lock(env)
    lines = "\n".join(
        f"{s}\t{x}" for s, x in sorted(set(zip(lock.speaker, lock.split, strict=True)))
    )
    assert hashlib.sha256(lines.encode()).hexdigest() == DEFAULT_ASSIGNMENT[env]


def _six_speakers_all_hashed_into_train(prepared, params) -> pd.DataFrame:
    manifest = prepared["manifest"]
    edge = params["split"]["fractions"]["train"]
    train = [s for s in sorted(manifest["speaker"].unique())
             if dp.speaker_bucket(s, params["split"]["salt"]) < edge][:6]  # fmt: skip
    return manifest[manifest["speaker"].isin(train)].reset_index(drop=True)


def test_a_named_split_that_the_hash_leaves_empty_is_an_error(prepared, params):
    manifest = _six_speakers_all_hashed_into_train(prepared, params)
    with pytest.raises(dp.SplitAssignmentError) as error:
        dp.assign_splits(manifest, SplitParams(**params["split"]))
    message = str(error.value)
    assert "split 'dev' is empty: 6 speakers, all hashed into train" in message
    assert "split 'test' is empty" in message
    assert "use split.method: assigned with explicit speaker lists" in message


def test_a_split_with_fraction_zero_may_be_empty(prepared, params):
    manifest = _six_speakers_all_hashed_into_train(prepared, params)
    split = {
        **params["split"],
        "names": ["train", "test"],
        "fractions": {"train": 1.0, "test": 0.0},
    }
    assert set(dp.assign_splits(manifest, SplitParams(**split))["split"]) == {"train"}


def test_assigned_speakers_go_where_they_are_listed_and_the_rest_to_train(prepared, params):
    manifest = prepared["manifest"]
    speakers = sorted(manifest["speaker"].unique())
    split = {**params["split"], "method": "assigned",
             "assigned": {"dev": speakers[:2], "test": [speakers[2]]}}  # fmt: skip
    lock = dp.assign_splits(manifest, SplitParams(**split))
    by_speaker = lock.groupby("speaker")["split"].first()
    assert by_speaker[speakers[:2]].eq("dev").all() and by_speaker[speakers[2]] == "test"
    assert by_speaker[speakers[3:]].eq("train").all()


def test_assigned_lists_are_validated_all_at_once(prepared, params):
    speakers = sorted(prepared["manifest"]["speaker"].unique())
    split = {**params["split"], "method": "assigned",
             "assigned": {"dev": [speakers[0], "nobody"], "test": [speakers[0]],
                          "eval": [speakers[1]]}}  # fmt: skip
    with pytest.raises(dp.SplitAssignmentError) as error:
        dp.assign_splits(prepared["manifest"], SplitParams(**split))
    message = str(error.value)
    assert "unknown speaker 'nobody' in split.assigned.dev" in message
    assert f"speaker '{speakers[0]}' is listed in several splits (dev, test)" in message
    assert "split.assigned.eval: 'eval' is not in split.names ['train', 'dev', 'test']" in message


def test_an_assigned_split_without_speakers_is_an_error(prepared, params):
    speakers = sorted(prepared["manifest"]["speaker"].unique())
    split = {**params["split"], "method": "assigned", "assigned": {"dev": speakers, "test": []}}
    with pytest.raises(dp.SplitAssignmentError) as error:
        dp.assign_splits(prepared["manifest"], SplitParams(**split))
    message = str(error.value)
    assert "split 'test' is empty: split.assigned.test lists no speaker" in message
    assert f"split 'train' is empty: all {len(speakers)} speakers are listed" in message


def test_an_assigned_list_matches_look_alike_spellings_of_a_speaker(prepared, params):
    manifest = prepared["manifest"].copy()
    speaker, other = sorted(manifest["speaker"].unique())[::15]
    rows = manifest.index[manifest["speaker"] == speaker]
    manifest.loc[rows[:2], "speaker"] = _fullwidth(speaker)
    split = {**params["split"], "method": "assigned",
             "assigned": {"dev": [speaker + "\u200b"], "test": [other]}}  # fmt: skip
    lock = dp.assign_splits(manifest, SplitParams(**split))
    assert set(lock.loc[lock["utt_id"].isin(manifest.loc[rows, "utt_id"]), "split"]) == {"dev"}


@pytest.mark.parametrize(
    "spelling", [_fullwidth, lambda s: s + "\u200b"], ids=["fullwidth", "zwsp"]
)
def test_look_alike_speaker_ids_in_two_given_splits_are_a_leak(prepared, spelling):
    manifest = prepared["manifest"].copy()
    manifest["given_split"] = (
        prepared["split_lock"].set_index("utt_id").loc[manifest["utt_id"], "split"].to_numpy()
    )
    speaker = manifest.loc[manifest["given_split"] == "train", "speaker"].iloc[0]
    moved = manifest.index[manifest["speaker"] == speaker][:2]
    manifest.loc[moved, "speaker"] = spelling(speaker)
    manifest.loc[moved, "given_split"] = "test"
    with pytest.raises(LeakageError) as error:
        dp.assign_splits(manifest, SplitParams(method="given"))
    message = str(error.value)
    assert f"speaker {speaker} is in several splits" in message
    assert ascii(spelling(speaker)) in message  # the invisible difference made visible
    lock = manifest[["utt_id", "speaker", "given_split", "digest"]].rename(
        columns={"given_split": "split"}
    )
    with pytest.raises(pandera.errors.SchemaError):
        SplitLock.validate(lock)


def test_the_hash_puts_look_alike_spellings_of_a_speaker_together(prepared, params):
    manifest = prepared["manifest"].copy()
    for speaker in manifest["speaker"].unique()[:4]:
        rows = manifest.index[manifest["speaker"] == speaker]
        manifest.loc[rows[:2], "speaker"] = _fullwidth(speaker)
    lock = dp.assign_splits(manifest, SplitParams(**params["split"]))  # no LeakageError
    reference = prepared["split_lock"].set_index("utt_id")["split"]
    assert lock.set_index("utt_id")["split"].equals(reference.loc[lock["utt_id"]])


def test_assigned_lists_without_the_assigned_method_are_refused(prepared, params):
    speaker = prepared["manifest"]["speaker"].iloc[0]
    with pytest.raises(dp.SplitAssignmentError, match=r"split\.method is 'speaker_hash'"):
        dp.assign_splits(
            prepared["manifest"],
            SplitParams(**{**params["split"], "assigned": {"dev": [speaker]}}),
        )


@pytest.mark.parametrize("env", ["test", "jsonl", "kaldi", "librispeech", "common_voice"])
def test_every_environment_fits_the_parameter_schema(env):
    loader = OmegaConfigLoader(
        conf_source=str(Path(speech_repro.__file__).parents[2] / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy={"parameters": "soft"},
    )
    validated = check_parameters(loader["parameters"], PARAMETER_SCHEMA)
    assert isinstance(validated, ProjectParameters)
    # The typed sections hold what the configuration says, defaults only where it says nothing.
    assert validated.training.model_dump() == loader["parameters"]["training"]


def _project_nodes() -> list:
    from speech_repro.pipelines import (
        data_processing,
        embedded_corpus,
        evaluation,
        reporting,
        seeds,
        training,
    )

    pipelines = [
        embedded_corpus.create_pipeline(),
        data_processing.create_pipeline(),
        training.create_pipeline(),
        evaluation.create_pipeline(),
        reporting.create_pipeline(),
        seeds.create_pipeline(seeds=[1234, 1235]),
    ]
    return [n for p in pipelines for n in p.nodes]


def test_every_node_receives_each_parameter_section_as_the_type_it_declares(params):
    """The hook's types (from the schema) are the nodes' annotations, for every node that takes
    parameters, so a node reads attributes of the object it declares."""
    hook = TypedParametersHook(PARAMETER_SCHEMA)
    checked = 0
    for node in _project_nodes():
        names = list(inspect.signature(node.func).parameters)
        hints = typing.get_type_hints(inspect.unwrap(node.func))
        inputs = {
            name: params[name.removeprefix("params:")] if name.startswith("params:") else None
            for name in node.inputs
        }
        replaced = hook.before_node_run(node, inputs) or {}
        for position, name in enumerate(node.inputs):
            if not name.startswith("params:"):
                continue
            declared = hints[names[position]]
            assert isinstance(replaced[name], declared), (node.name, name, declared)
            checked += 1
    assert checked >= 20


def test_a_node_run_with_the_hook_gets_the_model(prepared, params):
    """Kedro's runner hands the hook's replacements to the node: the split node gets SplitParams."""
    node = next(n for n in _project_nodes() if n.name == "assign_splits")
    inputs = {"manifest": prepared["manifest"], "params:split": params["split"]}
    replaced = TypedParametersHook(PARAMETER_SCHEMA).before_node_run(node, inputs)
    assert isinstance(replaced["params:split"], SplitParams)
    lock = node.run({**inputs, **replaced})["split_lock"]
    assert lock.equals(prepared["split_lock"])


def test_the_data_nodes_also_take_a_section_as_its_raw_mapping(prepared, params):
    """Outside a Kedro run (the session fixtures, scripts) a node may be handed the raw section:
    it is validated into the same model, with the same result."""
    typed = dp.assign_splits(prepared["manifest"], SplitParams(**params["split"]))
    assert typed.equals(dp.assign_splits(prepared["manifest"], params["split"]))
    with pytest.raises(ValueError, match="saltt"):
        dp.assign_splits(prepared["manifest"], {**params["split"], "saltt": "x"})
