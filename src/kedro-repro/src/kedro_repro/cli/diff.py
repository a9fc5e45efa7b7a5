"""``kedro repro diff RUN_A RUN_B``: what differs between two runs, grouped."""

from __future__ import annotations

from typing import Any

import click

from kedro_repro.cli.common import (
    echo_json,
    json_option,
    print_changes,
    project_of,
    resolve_run,
    runs_dir_of,
)
from kedro_repro.diff import diff_records, read_snapshot
from kedro_repro.record import load_run, redacted

SHOWN_ITEMS = 20
"""Data items listed per kind (added, removed, changed); --json lists them all."""


@click.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@json_option()
@click.pass_obj
def diff(metadata: Any, run_a: str, run_b: str, as_json: bool) -> None:
    """What differs between RUN_A and RUN_B: parameters, code, environment, data, metrics."""
    runs_dir = runs_dir_of(project_of(metadata))
    run_a, run_b = resolve_run(metadata, run_a), resolve_run(metadata, run_b)
    # Redacted on reading: a record written before redaction existed may hold secrets.
    result = diff_records(
        redacted(load_run(runs_dir, run_a)),
        redacted(load_run(runs_dir, run_b)),
        read_snapshot(runs_dir, run_a),
        read_snapshot(runs_dir, run_b),
    )
    if as_json:
        echo_json(result)
        return
    click.echo(f"{run_a} -> {run_b}")
    for group in ("parameters", "code"):
        print_changes(group, result[group])
    for part, changes in result["environment"].items():
        print_changes(f"environment/{part}", changes)
    data = result["data"]
    if not data["recorded"]:
        click.echo("[data] not comparable: one of the runs did not prepare data")
    else:
        click.echo(
            f"[data] added {len(data['added'])}, removed {len(data['removed'])}, changed {len(data['changed'])}"
        )
    for kind in ("added", "removed", "changed"):
        for item in data[kind][:SHOWN_ITEMS]:
            click.echo(f"  {kind:<8} {item}")
    print_changes("ledger", result["ledger"])
    click.echo("[metrics]" if result["metrics"] else "[metrics] identical")
    for key, m in result["metrics"].items():
        delta = f"  ({m['delta']:+.4f})" if m["delta"] is not None else ""
        click.echo(f"  {key}: {m['a']} -> {m['b']}{delta}")
