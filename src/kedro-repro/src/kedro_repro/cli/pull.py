"""``kedro repro pull RUN_ID [REMOTE]``: fetch a pushed run into this project, every byte checked."""

from __future__ import annotations

from typing import Any

import click

from kedro_repro.cli.common import echo_json, json_option, project_of, stderr_line
from kedro_repro.cli.push import WITH_DATA_HELP, describe
from kedro_repro.transfer import TransferError, open_remote, pull


@click.command("pull")
@click.argument("run_id")
@click.argument("remote", required=False)
@click.option("--with-data", is_flag=True, help=WITH_DATA_HELP)
@click.option(
    "--trust-patch",
    is_flag=True,
    help="Seal a run that ran from a dirty tree although no allowed signer signed it (read its "
    "code/patch.diff first: verify applies it).",
)
@json_option()
@click.pass_obj
def pull_command(
    metadata: Any,
    run_id: str,
    remote: str | None,
    with_data: bool,
    trust_patch: bool,
    as_json: bool,
) -> None:
    """Fetch RUN_ID from REMOTE (default: remote: in conf/local/repro.yml) into this project.

    Every object is hashed before it is placed, and the manifest is checked against the run's
    record; a corrupt object is refused, named. Files already here with the right bytes are
    kept; files here with other bytes are never overwritten. The record is placed last and
    sealed in this project's runs log; `kedro repro verify RUN_ID` then replays it here.
    """
    project = project_of(metadata)
    try:
        result = pull(
            project,
            run_id,
            open_remote(project, remote),
            with_data=with_data,
            trust_patch=trust_patch,
            progress=stderr_line,
        )
    except TransferError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        echo_json(result.to_dict())
        return
    line = describe(result, run_id)
    placed = ", ".join(result.manifests_written)
    click.echo(f"{line}; {'placed and sealed ' + placed if placed else 'already here'}")
