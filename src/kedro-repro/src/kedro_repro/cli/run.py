"""``kedro repro run --from-run RUN_ID``: run pipelines on the data, models and parameters of a
past run."""

from __future__ import annotations

from typing import Any

import click

from kedro_repro.cli.common import (
    LazyDefaultOption,
    config_of,
    project_of,
    resolve_run,
    runs_dir_of,
)
from kedro_repro.record import load_run
from kedro_repro.rerun import (
    compose_pipelines,
    load_versions_of,
    run_with_recorded_parameters,
)


@click.command("run")
@click.option(
    "--from-run", "from_run", required=True, help="Load every versioned input of this run."
)
@click.option(
    "--pipelines",
    cls=LazyDefaultOption,
    default=lambda: ",".join(config_of().rerun_pipelines),
    show_default=True,
    help="Comma-separated pipelines (default: the project's REPRO.rerun_pipelines).",
)
@click.option("--env", default=None, help="Configuration environment (default: the run's).")
@click.pass_obj
def run_from(metadata: Any, from_run: str, pipelines: str, env: str | None) -> None:
    """Run PIPELINES on the data, models and parameters of a past run (e.g. re-evaluate its model)."""
    project = project_of(metadata)
    from_run = resolve_run(metadata, from_run)
    record = load_run(runs_dir_of(project), from_run)
    names = [p.strip() for p in pipelines.split(",") if p.strip()]
    inputs = compose_pipelines(names).inputs()
    versions = load_versions_of(record, inputs)
    click.echo(f"Loading from run {from_run}: {versions}")
    run_with_recorded_parameters(
        project, record, env, recorded_inputs=inputs, pipeline_names=names, load_versions=versions
    )
