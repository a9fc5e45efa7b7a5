"""The hooks ``pip install kedro-repro`` adds to every Kedro project (entry point ``kedro.hooks``).

Kedro registers :data:`hooks` for each session. When the context exists it reads the project's
``REPRO`` setting (:func:`~kedro_repro.config.project_config`; the defaults without one) and
builds the hooks it asks for. One object calls them in a fixed order, because pluggy's own
order between entry points is the order it happens to load them: parameters are checked
first, then the determinism policy is applied, then the record is opened. Before each node, a
model parameter schema turns the node's ``params:<section>`` inputs into the section's types.

A project turns the plugin off with ``DISABLE_HOOKS_FOR_PLUGINS = ("kedro-repro",)``.
"""

from __future__ import annotations

import inspect
from typing import Any

from kedro.framework.hooks import hook_impl

from kedro_repro.config import ReproConfig, project_config
from kedro_repro.hooks import RunRecordHook
from kedro_repro.parameter_hooks import DeterminismHook, ParameterCheckHook, TypedParametersHook
from kedro_repro.params import is_model_schema


class ReproHooks:
    """Parameter check, determinism policy and run record, configured from ``settings.REPRO``."""

    def __init__(self) -> None:
        self.config: ReproConfig | None = None
        self.parts: list[Any] = []

    def configure(self, config: ReproConfig) -> None:
        """Build the hooks ``config`` asks for, in the order they must run."""
        self.config = config
        schema = config.parameter_schema
        self.parts = [
            *([ParameterCheckHook(schema)] if schema else []),
            # A model schema also types what nodes get: each params:<section> as its model.
            *([TypedParametersHook(schema)] if is_model_schema(schema) else []),
            *([DeterminismHook(config.determinism_section)] if config.determinism_section else []),
            *([RunRecordHook(config)] if config.record else []),
        ]

    @property
    def run_record(self) -> RunRecordHook | None:
        """The record hook of this session, when records are written."""
        return next((p for p in self.parts if isinstance(p, RunRecordHook)), None)

    def _call(self, hook: str, **arguments: Any) -> list[Any]:
        """Call ``hook`` on every part that has it, in order; their results."""
        results = []
        for part in self.parts:
            method = getattr(part, hook, None)
            if method is not None:
                wanted = inspect.signature(method).parameters  # as pluggy: only what it takes
                results.append(method(**{name: arguments[name] for name in wanted}))
        return results

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self.configure(project_config())
        self._call("after_context_created", context=context)

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._call("after_catalog_created", catalog=catalog)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._call("before_pipeline_run", run_params=run_params, pipeline=pipeline, catalog=catalog)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Any) -> None:
        self._call("after_dataset_loaded", dataset_name=dataset_name, data=data, node=node)

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """The parts' replacements for the node's inputs (typed parameters), merged."""
        replaced: dict[str, Any] = {}
        for result in self._call("before_node_run", node=node, inputs=inputs):
            replaced.update(result or {})
        return replaced or None

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        self._call("after_dataset_saved", dataset_name=dataset_name, data=data, node=node)

    @hook_impl
    def after_node_run(self, node: Any, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        self._call("after_node_run", node=node, inputs=inputs, outputs=outputs)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._call("after_pipeline_run", run_params=run_params)

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any]) -> None:
        self._call("on_pipeline_error", error=error, run_params=run_params)


hooks = ReproHooks()
"""The object the ``kedro.hooks`` entry point names."""
