"""``kedro repro load-versions RUN``: the ``--load-versions`` of ``kedro run`` that loads a run's
data and models."""

from __future__ import annotations

from typing import Any

import click

from kedro_repro.cli.common import (
    LazyDefaultOption,
    config_of,
    echo_json,
    json_option,
    project_of,
    resolve_run,
    runs_dir_of,
)
from kedro_repro.record import load_run
from kedro_repro.rerun import compose_pipelines, load_versions_of


@click.command("load-versions")
@click.argument("run_id")
@click.option(
    "--pipelines",
    cls=LazyDefaultOption,
    default=lambda: ",".join(config_of().rerun_pipelines),
    show_default=True,
    help="Comma-separated pipelines whose inputs to pin (default: REPRO.rerun_pipelines).",
)
@json_option("Print dataset -> version as JSON.")
@click.pass_obj
def load_versions(metadata: Any, run_id: str, pipelines: str, as_json: bool) -> None:
    """The versions RUN_ID saved or loaded of every input of PIPELINES, as ``kedro run`` takes
    them: ``kedro run --pipelines evaluation --load-versions "$(kedro repro load-versions best)"``.

    The run checks those versions' stored bytes against RUN_ID's record before its first node.
    """
    run_id = resolve_run(metadata, run_id)
    record = load_run(runs_dir_of(project_of(metadata)), run_id)
    names = [p.strip() for p in pipelines.split(",") if p.strip()]
    try:
        inputs = compose_pipelines(names).inputs()
    except KeyError as error:
        raise click.ClickException(f"no pipeline {error.args[0]!r}") from None
    versions = load_versions_of(record, inputs)
    if as_json:
        echo_json(versions)
    elif not versions:
        raise click.ClickException(
            f"run {run_id} recorded no version of an input of {', '.join(names)}"
        )
    else:
        click.echo(",".join(f"{name}:{version}" for name, version in sorted(versions.items())))
