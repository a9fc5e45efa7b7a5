"""``kedro repro export RUN_ID``: a run's provenance in a standard format (W3C PROV-JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kedro_repro.atomic import atomic_write_bytes
from kedro_repro.bundles import bundle_owner, catalog_config, dataset_locations
from kedro_repro.cli.common import project_of, resolve_run, runs_dir_of, stderr_line
from kedro_repro.record import RunRecord, load_run
from kedro_repro.rerun import compose_pipelines


def _check_output(project: Path, output: Path, force: bool, env: str | None) -> None:
    """Refuse to write ``output`` where it would change a run's artifacts, or replace a file
    unasked."""
    if reason := bundle_owner(project, output, env):
        # A run's digests would no longer describe its bundle, and it would not reproduce.
        raise click.ClickException(
            f"not writing {output}: it is {reason}; run bundles are never modified (not even "
            "with --force)"
        )
    if output.exists() and not force:
        raise click.ClickException(
            f"{output} exists; not overwriting it (pass --force to replace it)"
        )


def _export_structure(project: Path, record: RunRecord) -> tuple[Any, dict[str, str]]:
    """The recorded pipelines' nodes (name, inputs, outputs) and each catalog entry's path.

    Which node read what comes from the record; records written before it kept node inputs take
    it from the project's pipelines as they are now (the export checks nodes against the record),
    which imports the node code. Where a dataset is stored comes from the project's catalog.
    """
    if record.nodes and all(entry.inputs is not None for entry in record.nodes.values()):
        node_io = [(name, e.inputs, e.outputs) for name, e in record.nodes.items()]
    else:
        node_io = _pipeline_node_io(record)
    locations = dataset_locations(project, catalog_config(project, record.env))
    # A dataset factory stands for many datasets: it has no single path.
    return node_io, {n: loc.path for n, loc in locations.items() if not loc.is_factory}


def _pipeline_node_io(record: RunRecord) -> list[tuple[str, Any, Any]] | None:
    """Node names, inputs and outputs of the record's pipelines in the project's code today."""
    try:
        pipeline = compose_pipelines(record.pipelines)
    except KeyError:  # a pipeline renamed or removed since the run: export without node inputs
        return None
    return [(n.name, n.inputs, n.outputs) for n in pipeline.nodes]


@click.command("export")
@click.argument("run_id")
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["prov-json"]),
    default="prov-json",
    show_default=True,
    help="W3C PROV-JSON (docs/reproducing.md says why this format).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write to this file, atomically (default: standard output).",
)
@click.option(
    "--force", is_flag=True, help="Replace --output if it exists (never a file of a run bundle)."
)
@click.pass_obj
def export(metadata: Any, run_id: str, export_format: str, output: str | None, force: bool) -> None:
    """The provenance of RUN_ID in a standard format, readable without this project.

    The document itself is the output (JSON), so this command needs no --json.
    """
    from kedro.framework.startup import bootstrap_project

    from kedro_repro.config import project_config
    from kedro_repro.provenance import dumps, to_prov_json

    project = project_of(metadata)
    runs_dir = runs_dir_of(project)
    run_id = resolve_run(metadata, run_id)
    record = load_run(runs_dir, run_id)
    if output:
        _check_output(project, Path(output), force, record.env)
    bootstrap_project(project)  # the pipeline registry and settings of this project
    node_io, locations = _export_structure(project, record)
    document = to_prov_json(
        record,
        runs_dir / run_id,
        node_io=node_io,
        locations=locations,
        namespace=project_config().namespace,
    )
    text = dumps(document)
    if output:
        atomic_write_bytes(output, text.encode())
        stderr_line(f"wrote {export_format} provenance of run {run_id} to {output}")
    else:
        click.echo(text, nl=False)
