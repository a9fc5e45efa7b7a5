"""Hooks that act on a run's parameters before its first node: the key check and the determinism policy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from kedro_repro.params import ParameterSources, check_parameters, parameter_sources

logger = logging.getLogger(__name__)


def _parameters(catalog: Any) -> dict[str, Any]:
    return catalog.load("parameters") if "parameters" in catalog else {}


class ParameterCheckHook:
    """Stops a run before its first node when its parameters hold a key nothing declares,
    naming each key and where it was set: which conf/ file, or ``--params``."""

    def __init__(self, schema: Any):
        self.schema = schema
        self._loader: Any = None
        self._project: Path | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._loader = context.config_loader
        self._project = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        check_parameters(_parameters(catalog), self.schema, self._sources(run_params))

    def _sources(self, run_params: dict[str, Any]) -> ParameterSources | None:
        """Where the parameters come from, as the config loader reads them (None: cannot tell)."""
        loader = self._loader
        patterns = getattr(loader, "config_patterns", {}).get("parameters")
        if loader is None or not patterns or not hasattr(loader, "base_env"):
            return None
        environment = run_params.get("env") or loader.env or loader.default_run_env
        return parameter_sources(
            loader.conf_source,
            [loader.base_env, environment],
            list(patterns),
            run_params.get("runtime_params"),
            shown_relative_to=self._project,
        )


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

        policy = DeterminismPolicy(**params[self.section])
        apply_policy(policy)
        logger.info("Determinism policy for run %s: %s", run_params.get("run_id"), policy)
