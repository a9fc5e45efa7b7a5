"""Kedro hooks that apply the reproducibility machinery around every run."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from speech_repro.repro.determinism import DeterminismPolicy, apply_policy
from speech_repro.repro.params import check_parameters

logger = logging.getLogger(__name__)


def _parameters(catalog: Any) -> dict[str, Any]:
    return catalog.load("parameters") if "parameters" in catalog else {}


class ParameterCheckHook:
    """Stops a run before its first node when conf/ holds a parameter key nothing declares."""

    def __init__(self, schema: Any):
        self.schema = schema

    @hook_impl
    def before_pipeline_run(self, catalog: Any) -> None:
        check_parameters(_parameters(catalog), self.schema)


class DeterminismHook:
    """Applies the ``determinism`` parameters before the first node runs."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        policy = DeterminismPolicy(**_parameters(catalog).get("determinism", {}))
        apply_policy(policy)
        logger.info("Determinism policy for run %s: %s", run_params.get("run_id"), policy)
