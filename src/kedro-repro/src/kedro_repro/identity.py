"""The identity of the run in progress (run id, commit, data digest), for datasets that show it.

Nodes are pure and never see which run they are part of. A dataset that presents a run to
people (:class:`~kedro_repro.datasets.MarkdownReportDataset`) may: the
:class:`~kedro_repro.hooks.RunRecordHook` publishes the record it is writing, and
:func:`current_run` reads it while the run lasts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kedro_repro.record import RunRecord


@dataclass(frozen=True)
class RunIdentity:
    """What names one run: its id, the code it ran, the data it read."""

    run_id: str
    commit: str | None
    """The git commit, or ``None`` outside a repository."""
    dirty: bool
    """Whether the tree had uncommitted changes (stored as a patch in the run's bundle)."""
    data_digest: str | None
    """The digest of the run's data snapshot; ``None`` when the run saved none (a partial run)."""
    data_items: int | None
    env: str | None
    """The configuration environment (``--env``), ``None`` for the default."""

    @classmethod
    def from_record(cls, record: RunRecord) -> RunIdentity:
        """The identity a run record holds so far."""
        code, snapshot = record.code, record.data_snapshot
        return cls(
            run_id=record.run_id,
            commit=code.commit if code is not None else None,
            dirty=code.dirty if code is not None else False,
            data_digest=snapshot.digest if snapshot is not None else None,
            data_items=snapshot.items if snapshot is not None else None,
            env=record.env,
        )


_provider: Callable[[], RunRecord | None] | None = None


def publish(provider: Callable[[], RunRecord | None]) -> None:
    """Make ``provider`` (the record hook's record in progress) the source of :func:`current_run`."""
    global _provider
    _provider = provider


def current_run() -> RunIdentity | None:
    """The identity of the run in progress in this process, or ``None`` outside a recorded run."""
    record = _provider() if _provider is not None else None
    return RunIdentity.from_record(record) if record is not None else None
