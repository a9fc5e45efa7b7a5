"""A Kedro session whose run id is claimed atomically, so concurrent runs never share one.

Kedro's run id is a millisecond timestamp; two runs started together can draw the same one and
then collide on every versioned path. Before running, this session creates the run's bundle
directory with ``mkdir`` (atomic on POSIX file systems); if another run already holds that id,
it takes the next millisecond.

It also pins every versioned dataset the run produces to the run's own version (Kedro's public
``load_versions``), so a run loads what it saved itself, never a concurrent run's newer "latest";
and every versioned input another node of the project produces to the newest recorded run of the
same environment and upstream parameters (:mod:`kedro_repro.upstream`), so a partial run
(``--pipelines``, ``--from-nodes``) never reads another configuration's data.

:class:`~kedro_repro.context.ChosenRunContext` is the other side: outside a run (``kedro ipython``, notebooks,
kedro-viz previews, ``context.catalog``), ``KEDRO_REPRO_RUN=<run>`` makes the catalog load the
versions that run saved or read instead of the newest. A run is never steered by it: with the
variable set, :class:`ClaimedRunSession` refuses to run (a run's inputs are pinned explicitly,
``kedro repro run --from-run`` or ``--load-versions``, never half by a variable).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from kedro.config import MissingConfigException
from kedro.framework.session import KedroSession
from kedro.io import CatalogConfigResolver

from kedro_repro.record import RUNS_DIR

__all__ = [
    "RUNS_DIR",
    "RUN_VARIABLE",
    "ClaimedRunSession",
    "claim_run_id",
    "versioned_entries",
]

_LOGGER = logging.getLogger(__name__)
_FORMAT = "%Y-%m-%dT%H.%M.%S.%f"
RUN_VARIABLE = "KEDRO_REPRO_RUN"
"""Names the run (id, ``latest``, tag, prefix) whose versions the catalog loads outside runs."""


class ChosenRunConflict(click.ClickException):
    """A run started while :data:`RUN_VARIABLE` chooses what the catalog shows."""


def claim_run_id(runs_dir: Path, run_id: str) -> str:
    """Create ``runs_dir/<id>`` for ``run_id`` or the next free millisecond; returns the id."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    moment = datetime.strptime(run_id.removesuffix("Z"), _FORMAT)
    while True:
        candidate = moment.strftime(_FORMAT)[:-3] + "Z"
        try:
            (runs_dir / candidate).mkdir()
            return candidate
        except FileExistsError:
            moment += timedelta(milliseconds=1)


def versioned_entries(
    catalog: dict[str, Any], credentials: dict[str, Any], names: Iterable[str]
) -> set[str]:
    """Which of ``names`` the catalog configuration makes versioned datasets (factories too)."""
    resolver = CatalogConfigResolver(catalog, credentials)
    return {
        name
        for name in names
        if (name in resolver.config or resolver.match_dataset_pattern(name))
        and resolver.resolve_pattern(name).get("versioned")
    }


_RUN_SIGNATURE = inspect.signature(KedroSession.run)
# KedroSession.run's node filters, as Pipeline.filter names them.
_FILTERS = {
    "tags": "tags",
    "from_nodes": "from_nodes",
    "to_nodes": "to_nodes",
    "node_names": "node_names",
    "from_inputs": "from_inputs",
    "to_outputs": "to_outputs",
    "namespaces": "node_namespaces",
}


class ClaimedRunSession(KedroSession):
    """:class:`KedroSession` that claims a unique run id under ``data/09_runs`` when it runs,
    loads the datasets the run saves at the run's own version, and the versioned inputs other
    nodes produce at the newest version recorded under the run's own configuration."""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        if chosen := os.environ.get(RUN_VARIABLE, "").strip():
            # Loading the chosen run's versions would pin some inputs by a variable and leave the
            # rest to the upstream choice: a run mixing two sources nobody asked for.
            raise ChosenRunConflict(
                f"{RUN_VARIABLE}={chosen} is set: it chooses what notebooks, kedro ipython and "
                "kedro-viz show, not what a run loads; unset it to run (to run on that run's "
                f"data: kedro repro run --from-run {chosen}, or kedro run --load-versions "
                f'"$(kedro repro load-versions {chosen})")'
            )
        run_id = claim_run_id(self._project_path / RUNS_DIR, self.session_id)
        self.session_id = run_id
        self._store["session_id"] = run_id
        call = _RUN_SIGNATURE.bind(self, *args, **kwargs)
        call.apply_defaults()
        arguments = dict(call.arguments)
        arguments.pop("self")
        pinned = dict(arguments["load_versions"] or {})
        pipeline = self._filtered_pipeline(arguments)
        context = self.load_context()
        catalog, credentials = catalog_and_credentials(context.config_loader)
        own = versioned_entries(catalog, credentials, pipeline.all_outputs()) - pinned.keys()
        # Pins to the run's own id are told apart from the user's by that id (no other run has it).
        upstream = self._upstream_versions(
            context, catalog, credentials, pipeline, exclude=pinned.keys() | own
        )
        arguments["load_versions"] = dict.fromkeys(sorted(own), run_id) | upstream | pinned
        return super().run(**arguments)

    def _filtered_pipeline(self, arguments: dict[str, Any]) -> Any:
        """The pipeline this run runs: the requested pipelines, filtered by the run's options."""
        from kedro.framework.project import pipelines

        from kedro_repro.rerun import compose_pipelines

        # As KedroSession.run does: only the requested pipelines are built.
        pipelines.set_requested(arguments["pipeline_names"] or None)
        return compose_pipelines(arguments["pipeline_names"] or ["__default__"]).filter(
            **{to: arguments[key] for key, to in _FILTERS.items()}
        )

    def _upstream_versions(
        self,
        context: Any,
        catalog: dict[str, Any],
        credentials: dict[str, Any],
        pipeline: Any,
        exclude: set[str],
    ) -> dict[str, str]:
        """Versions of the run's free versioned inputs that nodes of the project produce: each
        the newest recorded under this run's environment and upstream parameter values
        (:func:`kedro_repro.upstream.choose_upstream`; raises when only others' exist)."""
        # Imported here: every kedro command imports this module, only runs need these.
        from kedro_repro.parameter_hooks import configured_parameters
        from kedro_repro.record import list_records
        from kedro_repro.upstream import choose_upstream, comparable_parameters, upstream_parameters

        free = {
            name
            for name in pipeline.inputs()
            if name not in exclude and not name.startswith("params:") and name != "parameters"
        }
        candidates = versioned_entries(catalog, credentials, free)
        runs_dir = self._project_path / RUNS_DIR
        if not candidates or not runs_dir.is_dir():
            return {}  # a full run, or nothing recorded yet: nothing to choose
        nodes = _project_nodes()
        produced = {output for node in nodes for output in node.outputs}
        inputs = {name: upstream_parameters(nodes, name) for name in candidates & produced}
        if not inputs:
            return {}
        resolver = CatalogConfigResolver(catalog, credentials)

        def exists(dataset: str, version: str) -> bool:
            filepath = resolver.resolve_pattern(dataset).get("filepath")
            if not isinstance(filepath, str) or "://" in filepath:
                return True  # not a local path: Kedro reports a missing version itself
            return (self._project_path / filepath / version).exists()

        chosen = choose_upstream(
            list_records(runs_dir),
            inputs,
            context.env,
            # As configured, not context.params: Kedro turns sections typed by a model into models.
            comparable_parameters(configured_parameters(context.config_loader)),
            exists,
        )
        for choice in chosen.values():
            _LOGGER.info(
                "Input %s: version %s, saved by run %s under this run's configuration",
                choice.dataset,
                choice.version,
                choice.run_id,
            )
        return {name: choice.version for name, choice in chosen.items()}


def catalog_and_credentials(loader: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The catalog configuration and credentials (none when the project has no credentials)."""
    try:
        credentials = loader["credentials"]
    except MissingConfigException:
        credentials = {}
    return loader["catalog"], credentials


def _project_nodes() -> list[Any]:
    """Every node of every registered pipeline (by name, once): where each dataset comes from.

    The registry is read in full here; KedroSession.run narrows it to the requested pipelines
    again before it runs.
    """
    from kedro.framework.project import pipelines

    pipelines.set_requested(None)
    nodes = {node.name: node for pipeline in pipelines.values() for node in pipeline.nodes}
    return list(nodes.values())
