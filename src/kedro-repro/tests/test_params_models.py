"""A pydantic model as the parameter schema: unknown keys and mistyped values are named with where
they were set, and nodes receive each ``params:<section>`` as its model."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.pipeline import node
from omegaconf import OmegaConf
from pydantic import Field

from kedro_repro.config import ReproConfig
from kedro_repro.parameter_hooks import TypedParametersHook
from kedro_repro.params import (
    InvalidParameterError,
    ParameterSection,
    UnknownParameterError,
    check_parameters,
    parameter_sources,
    section_type,
)
from kedro_repro.plugin import ReproHooks


class Bounds(ParameterSection):
    low: int = 0
    high: int = 10


class Selection(ParameterSection):
    seed: int
    fraction: float = 0.5
    bounds: Bounds = Field(default_factory=Bounds)


class Schema(ParameterSection):
    selection: Selection
    label: str = "run"
    flag: object = None  # free-form


def _sources(tmp_path: Path, base: str, local: str = "", runtime: dict | None = None):
    for env, text in (("base", base), ("local", local)):
        (tmp_path / "conf" / env).mkdir(parents=True, exist_ok=True)
        if text:
            (tmp_path / "conf" / env / "parameters.yml").write_text(text)
    params = OmegaConf.to_container(
        OmegaConf.merge(
            *(OmegaConf.load(p) for p in sorted((tmp_path / "conf").glob("*/parameters.yml"))),
            runtime or {},
        )
    )
    sources = parameter_sources(
        tmp_path / "conf", ["base", "local"], ["parameters*"], runtime, shown_relative_to=tmp_path
    )
    return params, sources


def _cli_params(*items: str) -> dict:
    """``--params`` as Kedro's CLI parses it: a dot list, values read as YAML."""
    return OmegaConf.to_container(OmegaConf.from_dotlist(list(items)))


def test_a_valid_configuration_is_returned_typed(tmp_path):
    params, sources = _sources(tmp_path, "selection:\n  seed: 3\n")
    validated = check_parameters(params, Schema, sources)
    assert isinstance(validated.selection, Selection)
    assert validated.selection.seed == 3 and validated.selection.bounds.high == 10


def test_an_unknown_key_names_its_file_and_the_accepted_keys(tmp_path):
    params, sources = _sources(tmp_path, "selection:\n  seed: 3\n  bounds: {low: 1, hihg: 4}\n")
    with pytest.raises(UnknownParameterError) as error:
        check_parameters(params, Schema, sources)
    message = str(error.value)
    assert "1 unknown parameter key(s); nothing was run" in message
    assert (
        "selection.bounds.hihg (did you mean selection.bounds.high?), set in "
        "conf/base/parameters.yml; section selection.bounds accepts: high, low"
    ) in message


def test_a_mistyped_runtime_value_names_key_type_value_and_params(tmp_path):
    runtime = _cli_params("selection.seed=ten")
    params, sources = _sources(tmp_path, "selection:\n  seed: 3\n", runtime=runtime)
    with pytest.raises(InvalidParameterError) as error:
        check_parameters(params, Schema, sources)
    assert not isinstance(error.value, UnknownParameterError)
    message = str(error.value)
    assert (
        "selection.seed: expected int, got 'ten' (str), set in --params (runtime parameters): "
        "Input should be a valid integer"
    ) in message


def test_a_mistyped_value_in_a_file_names_the_file_that_set_it_last(tmp_path):
    params, sources = _sources(
        tmp_path, "selection:\n  seed: 3\n", local="selection:\n  fraction: half\n"
    )
    with pytest.raises(InvalidParameterError, match="nothing was run") as error:
        check_parameters(params, Schema, sources)
    assert (
        "selection.fraction: expected float, got 'half' (str), set in conf/local/parameters.yml"
    ) in str(error.value)


def test_every_problem_is_named_at_once_and_a_missing_key_too(tmp_path):
    params, sources = _sources(tmp_path, "selection:\n  fraction: 2\n  sede: 1\nlabel: [1]\n")
    with pytest.raises(InvalidParameterError) as error:
        check_parameters(params, Schema, sources)
    message = str(error.value)
    assert "1 unknown parameter key(s) and 2 invalid parameter value(s)" in message
    assert "selection.sede (did you mean selection.seed?)" in message
    assert "selection.seed: missing, expected int" in message
    assert "label: expected str, got [1] (list)" in message


def test_runtime_values_parsed_from_the_command_line_are_accepted(tmp_path):
    runtime = _cli_params("selection.seed=7", "flag=anything")
    params, sources = _sources(tmp_path, "selection:\n  seed: 3\n", runtime=runtime)
    validated = check_parameters(params, Schema, sources)
    assert validated.selection.seed == 7 and validated.flag == "anything"


def test_section_types_are_found_by_dotted_name():
    assert section_type(Schema, "selection") is Selection
    assert section_type(Schema, "selection.bounds") is Bounds
    assert section_type(Schema, "label") is None  # a plain value
    assert section_type(Schema, "flag") is None  # free-form
    assert section_type(Schema, "unknown") is None


def _select(selection: Selection, bounds: Bounds, words: list, label: str) -> list:
    return words[bounds.low : bounds.high : selection.seed]


NODE = node(
    _select,
    ["params:selection", "params:selection.bounds", "words", "params:label"],
    "kept",
    name="select",
)
RAW_INPUTS = {
    "params:selection": {"seed": 2, "bounds": {"low": 1}},
    "params:selection.bounds": {"low": 1},
    "words": ["a", "b", "c", "d"],
    "params:label": "run",
}


def test_the_hook_hands_a_node_its_sections_as_models():
    replaced = TypedParametersHook(Schema).before_node_run(NODE, dict(RAW_INPUTS))
    assert set(replaced) == {"params:selection", "params:selection.bounds"}
    assert replaced["params:selection"] == Selection(seed=2, bounds=Bounds(low=1))
    assert replaced["params:selection.bounds"] == Bounds(low=1)
    assert NODE.run({**RAW_INPUTS, **replaced}) == {"kept": ["b", "d"]}


def test_a_section_that_already_is_its_model_is_left_alone():
    typed = {**RAW_INPUTS, "params:selection": Selection(seed=2), "params:selection.bounds": {}}
    replaced = TypedParametersHook(Schema).before_node_run(NODE, typed)
    assert set(replaced) == {"params:selection.bounds"}


def test_the_plugin_returns_the_typed_inputs_to_kedro():
    hooks = ReproHooks()
    hooks.configure(ReproConfig(parameter_schema=Schema, determinism_section=None, record=False))
    replaced = hooks.before_node_run(node=NODE, inputs=dict(RAW_INPUTS))
    assert isinstance(replaced["params:selection"], Selection)
    # A mapping schema (the older form) checks keys only: nodes keep their dicts.
    hooks.configure(ReproConfig(parameter_schema={"selection": None}, record=False))
    assert hooks.before_node_run(node=NODE, inputs=dict(RAW_INPUTS)) is None


def test_a_section_digests_as_its_mapping():
    from kedro_repro.ledger import content_digest

    section = Selection(seed=2)
    assert content_digest(section) == content_digest(
        {"seed": 2, "fraction": 0.5, "bounds": {"low": 0, "high": 10}}
    )
