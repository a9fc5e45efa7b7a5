"""``kedro repro push RUN_ID [REMOTE]``: send a run bundle to a folder or an fsspec URL."""

from __future__ import annotations

from typing import Any

import click

from kedro_repro.cli.common import echo_json, json_option, project_of, stderr_line
from kedro_repro.transfer import TransferError, TransferResult, open_remote, push

WITH_DATA_HELP = (
    "Also the files of the unversioned datasets the run used (its raw data, a split lock)."
)


def describe(result: TransferResult, run_id: str) -> str:
    """One line for people: what moved, what was already there."""
    runs = ", ".join(result.runs) if result.runs != [run_id] else f"run {run_id}"
    if result.direction == "push":
        verb, unit, moved, there = "pushed", "object(s)", "sent", "already on the remote"
    else:
        verb, unit, moved, there = "pulled", "file(s)", "fetched", "already here"
    count = result.objects_transferred
    done = (
        f"{count} {unit} {moved} ({result.bytes_transferred:,} bytes)"
        if count
        else f"nothing {moved}"
    )
    return f"{verb} {runs} ({result.remote}): {done}, {result.objects_skipped} {there}"


@click.command("push")
@click.argument("run_id")
@click.argument("remote", required=False)
@click.option("--with-data", is_flag=True, help=WITH_DATA_HELP)
@json_option()
@click.pass_obj
def push_command(
    metadata: Any, run_id: str, remote: str | None, with_data: bool, as_json: bool
) -> None:
    """Send RUN_ID's bundle to REMOTE (a folder or a URL such as s3://bucket/runs).

    REMOTE defaults to remote: in conf/local/repro.yml (or conf/base/repro.yml). Sends the
    record, data snapshot, code patch and lock files, every stored output and the checkpoints
    the record keeps, and the runs it loaded inputs from; each object by its BLAKE3 digest,
    after checking the run's bytes against its record. What the remote already holds is not
    sent again.
    """
    project = project_of(metadata)
    try:
        result = push(
            project, run_id, open_remote(project, remote), with_data=with_data, progress=stderr_line
        )
    except TransferError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        echo_json(result.to_dict())
        return
    line = describe(result, run_id)
    written = ", ".join(result.manifests_written)
    click.echo(f"{line}; manifest {'written for ' + written if written else 'unchanged'}")
