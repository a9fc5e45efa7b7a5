"""Hooks that act on a run's parameters: the check before the first node, the determinism
policy, and the typed sections each node receives."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from pydantic import BaseModel

from kedro_repro.params import (
    ParameterSources,
    as_type,
    check_parameters,
    is_model_schema,
    parameter_sources,
    section_type,
)

logger = logging.getLogger(__name__)


def _parameters(catalog: Any) -> dict[str, Any]:
    return catalog.load("parameters") if "parameters" in catalog else {}


class ParameterCheckHook:
    """Stops a run before its first node when its parameters hold a key nothing declares (or,
    with a pydantic model schema, a value of the wrong type), naming each key and where it was
    set: which conf/ file, or ``--params``.

    A model schema is checked once, when the session creates its context: Kedro itself then
    builds the catalog, validating every ``params:`` input that a node annotates with a model
    into that model, and its errors would name neither the key nor where it was set. Kedro
    also puts those models into the catalog's ``parameters``; this hook puts the raw
    parameters back, so what a run records (and digests) stays the configuration as written.
    """

    def __init__(self, schema: Any):
        self.schema = schema
        self.validated: BaseModel | None = None
        """The run's parameters as the schema's model (a pydantic model schema only)."""
        self._loader: Any = None
        self._project: Path | None = None
        self._raw: dict[str, Any] | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._loader = context.config_loader
        self._project = Path(context.project_path)
        if is_model_schema(self.schema):
            self._raw = configured_parameters(self._loader)
            environment = self._loader.env or getattr(self._loader, "default_run_env", None)
            self.validated = check_parameters(
                self._raw,
                self.schema,
                self._sources(environment, getattr(self._loader, "runtime_params", None)),
            )

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        if self._raw is not None and "parameters" in catalog:
            # The raw values, not Kedro's validated models (by the dataset: no "saving" log line).
            catalog.get("parameters").save(self._raw)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        if self.validated is None:  # the older mapping schema (a model was checked already)
            sources = self._sources(run_params.get("env"), run_params.get("runtime_params"))
            self.validated = check_parameters(_parameters(catalog), self.schema, sources)

    def _sources(
        self, environment: str | None, runtime_params: dict[str, Any] | None
    ) -> ParameterSources | None:
        """Where the parameters come from, as the config loader reads them (None: cannot tell)."""
        loader = self._loader
        patterns = getattr(loader, "config_patterns", {}).get("parameters")
        if loader is None or not patterns or not hasattr(loader, "base_env"):
            return None
        return parameter_sources(
            loader.conf_source,
            [loader.base_env, environment or loader.env or loader.default_run_env],
            list(patterns),
            runtime_params,
            shown_relative_to=self._project,
        )


def configured_parameters(loader: Any) -> dict[str, Any]:
    """The parameters as the config loader merges them (runtime ones included), as Kedro reads
    them before it validates any; none when the project has no parameter files."""
    from kedro.config import MissingConfigException

    try:
        return dict(loader["parameters"])
    except MissingConfigException:
        return dict(getattr(loader, "runtime_params", None) or {})


class DeterminismHook:
    """Applies the parameter section ``section`` as a determinism policy before the first node.

    Without that section nothing is changed (and torch, which the policy drives, is not imported).
    """

    def __init__(self, section: str = "determinism"):
        self.section = section

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        params = _parameters(catalog)
        if self.section not in params:
            return
        from kedro_repro.determinism import DeterminismPolicy, apply_policy

        policy = as_type(DeterminismPolicy, params[self.section])  # a mapping, or Kedro's model
        apply_policy(policy)
        logger.info("Determinism policy for run %s: %s", run_params.get("run_id"), policy)


class TypedParametersHook:
    """Hands every node its ``params:<section>`` inputs (``params:<section>.<sub>`` too) as that
    section's type in the schema (a pydantic model of all sections), not as a dict.

    Kedro lets ``before_node_run`` return replacements for a node's inputs; nothing else
    changes: the catalog, and so what the run record keeps, still holds the raw parameters. An
    input that the schema types as nothing (a free-form value) or that already is its type
    (e.g. an earlier node's output) is left alone.
    """

    def __init__(self, schema: type[BaseModel]):
        self.schema = schema

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> dict[str, Any] | None:
        typed = {}
        for name, value in inputs.items():
            if not name.startswith("params:"):
                continue
            kind = section_type(self.schema, name.removeprefix("params:"))
            if kind is not None and not isinstance(value, kind):
                typed[name] = as_type(kind, value)
        return typed or None
