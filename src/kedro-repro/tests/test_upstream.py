"""Choosing the upstream versions of a partial run from run records (kedro_repro.upstream)."""

from __future__ import annotations

import pytest
from kedro.pipeline import Pipeline, node

from kedro_repro.record import LedgerEntry, ParametersSection, RunRecord
from kedro_repro.upstream import (
    WHOLE,
    UpstreamMismatchError,
    choose_upstream,
    comparable_parameters,
    first_difference,
    upstream_parameters,
)

DIGEST = "blake3:" + "0" * 64


def _identity(*values):
    return values[0]


PIPELINES = [
    Pipeline([node(_identity, "params:corpus", "raw", name="plan")]),
    Pipeline(
        [
            node(_identity, ["raw", "params:audio.rate"], "table", name="table"),
            node(_identity, ["table", "params:features"], "features", name="features"),
            node(_identity, ["table", "parameters"], "report", name="report"),
            node(_identity, ["features", "params:training"], "model", name="train"),
        ]
    ),
]
NODES = [n for pipeline in PIPELINES for n in pipeline.nodes]


def _record(run_id: str, env: str | None, params: dict, saved: list[str]) -> RunRecord:
    """A record holding only what choosing reads: env, parameters, ledger."""
    return RunRecord.model_construct(
        run_id=run_id,
        env=env,
        parameters=ParametersSection.model_construct(
            design={k: v for k, v in params.items() if k == "corpus"},
            tunable={k: v for k, v in params.items() if k != "corpus"},
        ),
        ledger={
            name: LedgerEntry.model_construct(node=name, version=run_id, digest=DIGEST)
            for name in saved
        },
    )


PARAMS = {
    "corpus": {"seed": 1, "speakers": ["a", "b"]},
    "audio": {"rate": 16000, "mono": True},
    "features": {"bins": 40},
    "training": {"epochs": 2},
}
OTHER_CORPUS = {**PARAMS, "corpus": {"seed": 7, "speakers": ["a", "b"]}}


def test_upstream_parameters_walk_every_producer_and_ancestor_across_pipelines():
    assert upstream_parameters(NODES, "features") == {"corpus", "audio.rate", "features"}
    assert upstream_parameters(NODES, "model") == {"corpus", "audio.rate", "features", "training"}
    assert upstream_parameters(NODES, "report") == {"corpus", "audio.rate", WHOLE}
    assert upstream_parameters(NODES, "raw") == {"corpus"}
    assert upstream_parameters(NODES, "nobody_makes_this") == set()


def test_comparable_parameters_are_plain_json_with_secrets_redacted():
    params = {"section": {"pair": (1, 2), "api_token": "s3cr3t-value"}}
    comparable = comparable_parameters(params)
    assert comparable["section"]["pair"] == [1, 2]
    assert comparable["section"]["api_token"] != "s3cr3t-value"


def test_first_difference_names_the_environment_first_then_the_leaf_parameter():
    record = _record("2026-01-01T00.00.00.000Z", "test", OTHER_CORPUS, ["features"])
    refs = upstream_parameters(NODES, "features")
    assert first_difference(record, None, PARAMS, refs).startswith("environment 'test'")
    difference = first_difference(record, "test", PARAMS, refs)
    assert difference == "parameter corpus.seed = 7 (this run: 1)"
    # a parameter nothing upstream reads does not matter
    other_training = {**PARAMS, "training": {"epochs": 99}}
    same_corpus = _record("2026-01-01T00.00.00.000Z", "test", other_training, ["features"])
    assert first_difference(same_corpus, "test", PARAMS, refs) is None
    # only the read key of a section counts: audio.mono is not read upstream of features
    mono = _record("x", "test", {**PARAMS, "audio": {"rate": 16000, "mono": False}}, [])
    assert first_difference(mono, "test", PARAMS, refs) is None
    # the whole parameters input reads everything
    assert "training.epochs" in first_difference(same_corpus, "test", PARAMS, {WHOLE})


def test_a_key_present_on_one_side_only_is_a_difference():
    record = _record("x", "test", {**PARAMS, "features": {"bins": 40, "hop": 10}}, [])
    assert first_difference(record, "test", PARAMS, {"features"}) == (
        "parameter features.hop = 10 (this run: (absent))"
    )


def test_the_newest_run_of_this_configuration_is_chosen_over_newer_others():
    records = [
        _record("2026-01-01T00.00.00.000Z", "test", PARAMS, ["features", "model"]),
        _record("2026-01-02T00.00.00.000Z", "test", PARAMS, ["model"]),
        _record("2026-01-03T00.00.00.000Z", "test", OTHER_CORPUS, ["features", "model"]),
        _record("2026-01-04T00.00.00.000Z", None, PARAMS, ["features", "model"]),
    ]
    inputs = {name: upstream_parameters(NODES, name) for name in ("features", "model")}
    chosen = choose_upstream(records, inputs, "test", PARAMS)
    assert {name: c.run_id for name, c in chosen.items()} == {
        "features": "2026-01-01T00.00.00.000Z",
        "model": "2026-01-02T00.00.00.000Z",
    }
    other = choose_upstream(records, inputs, "test", OTHER_CORPUS)
    assert {c.run_id for c in other.values()} == {"2026-01-03T00.00.00.000Z"}


def test_a_version_no_longer_stored_is_passed_over():
    records = [
        _record("2026-01-01T00.00.00.000Z", "test", PARAMS, ["features"]),
        _record("2026-01-02T00.00.00.000Z", "test", PARAMS, ["features"]),
    ]
    inputs = {"features": upstream_parameters(NODES, "features")}
    chosen = choose_upstream(
        records, inputs, "test", PARAMS, exists=lambda _, version: version.startswith("2026-01-01")
    )
    assert chosen["features"].version == "2026-01-01T00.00.00.000Z"


def test_only_another_configurations_data_stops_naming_dataset_run_and_parameter():
    records = [
        _record("2026-01-01T00.00.00.000Z", "test", OTHER_CORPUS, ["features"]),
        _record("2026-01-02T00.00.00.000Z", "test", {**OTHER_CORPUS, "features": {}}, ["raw"]),
    ]
    inputs = {"features": upstream_parameters(NODES, "features")}
    with pytest.raises(UpstreamMismatchError) as raised:
        choose_upstream(records, inputs, "test", PARAMS)
    message = str(raised.value)
    assert "input 'features'" in message
    assert "run 2026-01-01T00.00.00.000Z" in message
    assert "parameter corpus.seed = 7 (this run: 1)" in message


def test_an_input_no_run_recorded_is_left_to_kedro():
    records = [_record("2026-01-01T00.00.00.000Z", "test", PARAMS, ["model"])]
    inputs = {"features": upstream_parameters(NODES, "features")}
    assert choose_upstream(records, inputs, "test", PARAMS) == {}
    assert choose_upstream([], inputs, "test", PARAMS) == {}
