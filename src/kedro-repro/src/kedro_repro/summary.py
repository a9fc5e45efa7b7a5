"""One line per run: what ``kedro repro runs`` lists, derived from a run record alone.

Which metrics a summary shows is the project's choice (passed in), so this
knows nothing about what the metrics measure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kedro_repro.hashing import digest_hex
from kedro_repro.record import RunRecord, status

SHORT_DIGEST = 12
"""Hex characters of a digest shown to people (JSON output carries what records hold)."""


@dataclass(frozen=True)
class RunSummary:
    """A run as one row: identity, code, parameters, data, seed, headline metrics, status."""

    run_id: str
    started: str
    pipelines: str
    git_commit: str
    params_digest: str
    data_digest: str
    seed: Any
    metrics: dict[str, float | None] = field(default_factory=dict)
    duration_s: float | None = None
    status: str = "running"

    def to_dict(self) -> dict[str, Any]:
        """Flat, in column order: the metrics sit between the seed and the duration."""
        return {
            "run_id": self.run_id,
            "started": self.started,
            "pipelines": self.pipelines,
            "git_commit": self.git_commit,
            "params_digest": self.params_digest,
            "data_digest": self.data_digest,
            "seed": self.seed,
            **self.metrics,
            "duration_s": self.duration_s,
            "status": self.status,
        }


def metric_at(record: RunRecord, path: str) -> Any:
    """The value at dotted ``path`` in the record's metrics (``splits.test.wer``), or None."""
    value: Any = record.metrics
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def run_summary(record: RunRecord, metrics: Mapping[str, str], seed_key: str | None) -> RunSummary:
    """The summary row of ``record``: ``metrics`` maps each column to its path in the metrics."""
    git = record.environment.git or {}  # free-form: what git could tell, None outside a checkout
    commit = (git.get("commit") or "")[:10] + ("+dirty" if git.get("dirty") else "")
    snapshot = record.data_snapshot
    return RunSummary(
        run_id=record.run_id,
        started=record.started_at,
        pipelines=",".join(record.pipelines),
        git_commit=commit,
        params_digest=digest_hex(record.parameters.digest, SHORT_DIGEST),
        data_digest=digest_hex(snapshot.digest if snapshot else None, SHORT_DIGEST),
        seed=record.seeds.get(seed_key) if seed_key else None,
        metrics={column: metric_at(record, path) for column, path in metrics.items()},
        duration_s=record.duration_seconds,
        status=status(record),
    )
