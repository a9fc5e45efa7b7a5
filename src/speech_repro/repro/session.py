"""A Kedro session whose run id is claimed atomically, so concurrent runs never share one.

Kedro's run id is a millisecond timestamp; two runs started together can draw the same one and
then collide on every versioned path. Before running, this session creates the run's bundle
directory with ``mkdir`` (atomic on POSIX file systems); if another run already holds that id,
it takes the next millisecond.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kedro.framework.session import KedroSession

from speech_repro.repro.record import RUNS_DIR

__all__ = ["RUNS_DIR", "ClaimedRunSession", "claim_run_id"]

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


class ClaimedRunSession(KedroSession):
    """:class:`KedroSession` that claims a unique run id under ``data/09_runs`` when it runs."""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        run_id = claim_run_id(self._project_path / RUNS_DIR, self.session_id)
        self.session_id = run_id
        self._store["session_id"] = run_id
        return super().run(*args, **kwargs)
