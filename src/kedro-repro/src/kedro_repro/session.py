"""A Kedro session whose run id is claimed atomically, so concurrent runs never share one.

Kedro's run id is a millisecond timestamp; two runs started together can draw the same one and
then collide on every versioned path. Before running, this session creates the run's bundle
directory with ``mkdir`` (atomic on POSIX file systems); if another run already holds that id,
it takes the next millisecond.

It also pins every versioned dataset the run produces to the run's own version (Kedro's public
``load_versions``), so a run loads what it saved itself, never a concurrent run's newer "latest".
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.session import KedroSession
from kedro.io import CatalogConfigResolver

from kedro_repro.record import RUNS_DIR

__all__ = ["RUNS_DIR", "ClaimedRunSession", "claim_run_id", "versioned_entries"]

_FORMAT = "%Y-%m-%dT%H.%M.%S.%f"


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
    """:class:`KedroSession` that claims a unique run id under ``data/09_runs`` when it runs and
    loads the datasets the run saves at the run's own version."""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        run_id = claim_run_id(self._project_path / RUNS_DIR, self.session_id)
        self.session_id = run_id
        self._store["session_id"] = run_id
        call = _RUN_SIGNATURE.bind(self, *args, **kwargs)
        call.apply_defaults()
        arguments = dict(call.arguments)
        arguments.pop("self")
        pinned = dict(arguments["load_versions"] or {})
        own = self._produced_versioned(arguments) - pinned.keys()
        # Pins to the run's own id are told apart from the user's by that id (no other run has it).
        arguments["load_versions"] = dict.fromkeys(sorted(own), run_id) | pinned
        return super().run(**arguments)

    def _produced_versioned(self, arguments: dict[str, Any]) -> set[str]:
        """The versioned datasets the filtered pipeline of this run saves."""
        from kedro.framework.project import pipelines

        from kedro_repro.rerun import compose_pipelines

        # As KedroSession.run does: only the requested pipelines are built.
        pipelines.set_requested(arguments["pipeline_names"] or None)
        pipeline = compose_pipelines(arguments["pipeline_names"] or ["__default__"]).filter(
            **{to: arguments[key] for key, to in _FILTERS.items()}
        )
        loader = self.load_context().config_loader
        try:
            credentials = loader["credentials"]
        except MissingConfigException:
            credentials = {}
        return versioned_entries(loader["catalog"], credentials, pipeline.all_outputs())
