"""``kedro repro sign RUN_ID``: sign a final record with an SSH key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kedro_repro.cli.common import echo_json, json_option, project_of, resolve_run, runs_dir_of
from kedro_repro.integrity import require_intact
from kedro_repro.record import RECORD_FILE, load_run
from kedro_repro.signing import sign_file


@click.command("sign")
@click.argument("run_id")
@click.option(
    "--key",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="SSH private key (default: git config user.signingkey).",
)
@json_option()
@click.pass_obj
def sign(metadata: Any, run_id: str, key: str | None, as_json: bool) -> None:
    """Sign RUN_ID's record with your SSH key (ssh-keygen -Y sign), after checking its bytes."""
    project = project_of(metadata)
    runs_dir = runs_dir_of(project)
    run_id = resolve_run(metadata, run_id)
    if load_run(runs_dir, run_id).status == "running":
        raise click.ClickException(f"run {run_id} has not finished: its record is not final")
    require_intact(project, run_id, what="to sign")
    signature = sign_file(runs_dir / run_id / RECORD_FILE, Path(key) if key else None, cwd=project)
    if as_json:
        echo_json({"run_id": run_id, "signature": str(signature)})
    else:
        click.echo(f"signed run {run_id}: {signature}")
