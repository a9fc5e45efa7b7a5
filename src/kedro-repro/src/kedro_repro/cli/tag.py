"""``kedro repro tag RUN TAG``: a name for a run (``best``), usable wherever a run id is."""

from __future__ import annotations

from typing import Any

import click

from kedro_repro.cli.common import (
    echo_json,
    json_option,
    print_table,
    project_of,
    resolve_run,
    runs_dir_of,
)


@click.command("tag")
@click.argument("run_id", required=False)
@click.argument("tag", required=False)
@click.option("--delete", "delete", metavar="TAG", default=None, help="Remove the tag TAG.")
@click.option("--force", is_flag=True, help="Move TAG when it already points to another run.")
@json_option("Print the tags as JSON (without arguments).")
@click.pass_obj
def tag(
    metadata: Any,
    run_id: str | None,
    tag: str | None,
    delete: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Tag RUN_ID as TAG (e.g. ``best``); without arguments, list the tags.

    Tags live in data/09_runs/TAGS.json, outside every record: a tag is a name, never evidence,
    and every command given one checks the run it points to as it would for the id.
    """
    from kedro_repro.run_ids import delete_tag, read_tags, set_tag

    runs_dir = runs_dir_of(project_of(metadata))
    if delete is not None:
        if run_id is not None:
            raise click.UsageError("--delete TAG takes no RUN_ID")
        click.echo(f"removed tag {delete} (it pointed to run {delete_tag(runs_dir, delete)})")
        return
    if run_id is None:
        tags = read_tags(runs_dir)
        if as_json:
            echo_json(tags)
        else:
            print_table(["tag", "run_id"], sorted(tags.items()))
        return
    if tag is None:
        raise click.UsageError("give a TAG for RUN_ID, e.g. `kedro repro tag latest best`")
    resolved = resolve_run(metadata, run_id)
    previous = set_tag(runs_dir, tag, resolved, move=force)
    moved = f" (moved from run {previous})" if previous not in (None, resolved) else ""
    click.echo(f"tagged run {resolved} as {tag}{moved}")
