"""``kedro repro runs``: one row per run."""

from __future__ import annotations

from typing import Any

import click

from kedro_repro import runlog
from kedro_repro.cli.common import (
    config_of,
    duration_text,
    echo_json,
    json_option,
    print_table,
    project_of,
    runs_dir_of,
    stderr_line,
)
from kedro_repro.record import RunRecord, Unreadable, scan_records
from kedro_repro.summary import run_summary as summarize


def run_summary(record: RunRecord) -> dict[str, Any]:
    """One row of ``kedro repro runs --json`` (this project's split, metrics and seed)."""
    presentation = config_of().presentation
    return summarize(record, presentation.summary_metrics, presentation.seed).to_dict()


@click.command("runs")
@json_option("Print JSON instead of a table.")
@click.pass_obj
def runs(metadata: Any, as_json: bool) -> None:
    """One row per run: id, date, pipelines, commit, parameter/data digests, seed, headline metrics,
    duration, status and tags (``kedro repro tag``)."""
    from kedro_repro.run_ids import tags_by_run

    runs_dir = runs_dir_of(project_of(metadata))
    tags = tags_by_run(runs_dir)
    rows = []
    for record in scan_records(runs_dir):
        if isinstance(record, Unreadable):
            stderr_line(f"unreadable: {record.path}: {record.reason}")
            continue
        row = run_summary(record)
        seal = runlog.check_record(runs_dir, record.run_id)
        if seal.status in ("modified", "log-broken"):
            row["status"] = f"{row['status']} (RECORD {seal.status.upper()})"
        row["tags"] = tags.get(record.run_id, [])
        rows.append(row)
    if as_json:  # machine values: seconds as recorded, tags as a list
        echo_json(rows)
        return
    header = run_summary_columns()
    shown = {"duration_s": "duration", "tags": "tags"}
    cells = {"duration_s": duration_text, "tags": lambda names: ",".join(names) or None}
    print_table(
        [shown.get(h, h) for h in header],
        ([cells.get(h, _same)(row[h]) for h in header] for row in rows),
    )


def _same(value: Any) -> Any:
    return value


def run_summary_columns() -> list[str]:
    """The columns of the table, also when there is no run to list."""
    return [
        "run_id", "started", "pipelines", "git_commit", "params_digest", "data_digest", "seed",
        *config_of().presentation.summary_metrics, "duration_s", "status", "tags",
    ]  # fmt: skip
