"""The context behind ``KEDRO_REPRO_RUN``: what notebooks, ``kedro ipython`` and kedro-viz show.

``catalog.load("metrics")`` outside a run reads each versioned dataset's newest version, which
may be a throwaway run's. With ``KEDRO_REPRO_RUN=<run>`` (an id, ``latest~N``, a tag or a
prefix), :class:`ChosenRunContext` builds ``context.catalog`` at that run's versions instead.
Runs never read the variable: :class:`~kedro_repro.session.ClaimedRunSession` refuses to start
while it is set, and a run builds its catalog with the session's own ``load_versions``.

It overrides Kedro's documented catalog hook ``KedroContext._get_catalog`` ("a hook for
changing the creation of a catalog instance"), as a custom context does; no other private Kedro
name is used.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kedro.framework.context import KedroContext

from kedro_repro.record import RUNS_DIR
from kedro_repro.session import (
    RUN_VARIABLE,
    ChosenRunConflict,
    catalog_and_credentials,
    versioned_entries,
)

__all__ = ["ChosenRunContext"]

_LOGGER = logging.getLogger(__name__)


class ChosenRunContext(KedroContext):
    """A :class:`KedroContext` whose ``catalog`` loads the versions of the run named by
    ``KEDRO_REPRO_RUN`` (a run id, ``latest~N``, a tag or a prefix), when it is set.

    Every dataset the run saved or read loads at the version it recorded; a versioned dataset
    of the catalog it did not record is pinned to the run's own id, so loading it fails (that
    run has none) instead of showing another run's. The run's stored bytes are checked first,
    and a run of another configuration environment is refused. Runs build their catalog
    themselves (the session's ``load_versions``), so this never reaches a run.
    """

    @property
    def catalog(self) -> Any:
        """The catalog, at the chosen run's versions when :data:`RUN_VARIABLE` is set."""
        chosen = os.environ.get(RUN_VARIABLE, "").strip()
        if not chosen:
            return super().catalog
        return self._get_catalog(load_versions=self._chosen_versions(chosen))

    def _chosen_versions(self, chosen: str) -> dict[str, str]:
        from kedro_repro.integrity import require_intact
        from kedro_repro.record import load_run
        from kedro_repro.rerun import load_versions_of
        from kedro_repro.run_ids import resolve_run_id

        project = Path(self.project_path)
        run_id = resolve_run_id(project / RUNS_DIR, chosen)
        record = load_run(project / RUNS_DIR, run_id)
        if record.env != self.env:
            raise ChosenRunConflict(
                f"{RUN_VARIABLE}={chosen}: run {run_id} ran in configuration environment "
                f"{record.env or '(default)'!r}, this session is in {self.env or '(default)'!r}; "
                f"start it with --env {record.env or 'local'} (or KEDRO_ENV)"
            )
        catalog, credentials = catalog_and_credentials(self.config_loader)
        recorded = load_versions_of(record, record.ledger.keys() | record.inputs.keys())
        # Only names the catalog knows (Kedro refuses other load_versions keys).
        known = versioned_entries(catalog, credentials, recorded)
        require_intact(project, run_id, sorted(known & record.ledger.keys()), what="to show")
        explicit = [name for name in catalog if "{" not in name and not name.startswith("_")]
        unrecorded = versioned_entries(catalog, credentials, explicit) - recorded.keys()
        _LOGGER.info(
            "%s=%s: the catalog loads run %s (%d datasets at its versions)",
            RUN_VARIABLE,
            chosen,
            run_id,
            len(known),
        )
        return dict.fromkeys(sorted(unrecorded), run_id) | {n: recorded[n] for n in known}
