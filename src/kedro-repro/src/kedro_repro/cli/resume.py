"""``kedro repro resume RUN_ID``: continue a crashed or killed run."""

from __future__ import annotations

from typing import Any

import click

from kedro_repro.cli.common import project_of, resolve_run, runs_dir_of
from kedro_repro.record import load_run
from kedro_repro.rerun import (
    compose_pipelines,
    refuse_a_live_run,
    resume_plan,
    run_with_recorded_parameters,
)


@click.command("resume")
@click.argument("run_id")
@click.option(
    "--force",
    is_flag=True,
    help="Resume a run recorded as running on another host, which this host cannot check.",
)
@click.pass_obj
def resume(metadata: Any, run_id: str, force: bool) -> None:
    """Continue a crashed or killed run from its last completed node and last checkpoint.

    The run continues with exactly the parameters it was started with, whatever conf/ says now.
    A run whose process still runs is refused: resuming it would train a second copy beside it.
    """
    from kedro.framework.startup import bootstrap_project

    from kedro_repro.config import project_config

    project = project_of(metadata)
    bootstrap_project(project)  # the pipeline registry and settings of this project
    runs_dir = runs_dir_of(project)
    run_id = resolve_run(metadata, run_id)
    record = load_run(runs_dir, run_id)
    refuse_a_live_run(record, force)
    pipeline = compose_pipelines(record.pipelines)
    plan = resume_plan(record, pipeline, project_config().resume_dataset)
    if not plan.pending:
        raise click.ClickException(f"run {run_id} completed every node; nothing to resume")
    click.echo(f"Resuming run {run_id} from node {plan.pending[0]}")
    run_with_recorded_parameters(
        project,
        record,
        pipeline_names=record.pipelines,
        from_nodes=plan.pending,
        load_versions=plan.load_versions,
    )
