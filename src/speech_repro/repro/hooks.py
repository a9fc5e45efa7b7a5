"""Kedro hooks that apply the reproducibility machinery around every run."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from speech_repro.repro.determinism import DeterminismPolicy, apply_policy

logger = logging.getLogger(__name__)


class DeterminismHook:
    """Applies the ``determinism`` parameters before the first node runs."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        params = catalog.load("parameters") if "parameters" in catalog else {}
        policy = DeterminismPolicy(**params.get("determinism", {}))
        apply_policy(policy)
        logger.info("Determinism policy for run %s: %s", run_params.get("run_id"), policy)
