"""One line per run: what ``kedro repro runs`` lists, derived from a run record alone.

Which split and which metrics a summary shows is the project's choice (passed in), so this
knows nothing about what the metrics measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from speech_repro.repro.hashing import digest_hex
from speech_repro.repro.record import status

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


def split_metric(record: dict[str, Any], split: str, name: str) -> float | None:
    """Metric ``name`` of ``split`` in the record's metrics, or None when it was not scored."""
    metrics = record.get("metrics") or {}
    return ((metrics.get("splits") or {}).get(split) or {}).get(name)


def run_summary(
    record: dict[str, Any],
    metric_split: str,
    metric_names: Sequence[str],
    seed_key: str,
) -> RunSummary:
    """The summary row of ``record``, showing ``metric_names`` of ``metric_split``."""
    git = record["environment"].get("git") or {}
    commit = (git.get("commit") or "")[:10] + ("+dirty" if git.get("dirty") else "")
    return RunSummary(
        run_id=record["run_id"],
        started=record["started_at"],
        pipelines=",".join(record.get("pipelines") or []),
        git_commit=commit,
        params_digest=digest_hex(record["parameters"]["digest"], SHORT_DIGEST),
        data_digest=digest_hex((record.get("data_snapshot") or {}).get("digest"), SHORT_DIGEST),
        seed=record["seeds"].get(seed_key),
        metrics={name: split_metric(record, metric_split, name) for name in metric_names},
        duration_s=record.get("duration_seconds"),
        status=status(record),
    )
