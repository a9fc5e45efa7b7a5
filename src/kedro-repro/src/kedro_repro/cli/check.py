"""``kedro repro check [RUN_IDS]``: re-hash every stored file of runs against their records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kedro_repro import runlog
from kedro_repro.cli.common import (
    echo_json,
    json_option,
    print_table,
    project_of,
    resolve_run,
    runs_dir_of,
)
from kedro_repro.integrity import check_run, open_cache
from kedro_repro.record import Unreadable, scan_records
from kedro_repro.signing import default_allowed_signers


@click.command("check")
@click.argument("run_ids", nargs=-1)
@click.option(
    "--allowed-signers",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="ssh allowed-signers file (default: git config gpg.ssh.allowedSignersFile).",
)
@json_option()
@click.pass_obj
def check(
    metadata: Any, run_ids: tuple[str, ...], allowed_signers: str | None, as_json: bool
) -> None:
    """Re-hash every stored file of RUN_IDS (default: all runs) against their records.

    Checks each record against the runs log, its signature, every file of its ledger, its data
    snapshot, code snapshot and checkpoints. Exit 1 on any mismatch. Unchanged files cost a
    stat call (digest cache), not a read.
    """
    project = project_of(metadata)
    runs_dir = runs_dir_of(project)
    signers = Path(allowed_signers) if allowed_signers else default_allowed_signers(project)
    unreadable: list[Unreadable] = []
    if not run_ids:
        found = scan_records(runs_dir)
        unreadable = [r for r in found if isinstance(r, Unreadable)]
        run_ids = tuple(r.run_id for r in found if not isinstance(r, Unreadable))
    else:
        run_ids = tuple(resolve_run(metadata, r) for r in run_ids)
    with open_cache(project) as cache:
        results = [check_run(project, r, allowed_signers=signers, cache=cache) for r in run_ids]
    chain = runlog.verify_chain(runs_dir)
    if as_json:
        echo_json(
            {
                "runs": [r.to_dict() for r in results],
                "unreadable": [u.model_dump() for u in unreadable],
                "log_problems": chain,
            }
        )
    else:
        print_table(
            ["run_id", "verdict", "files", "record", "signature"],
            (
                [
                    r.run_id,
                    r.verdict.upper(),
                    r.files_checked,
                    r.seal,
                    r.signature.describe() if r.signature else "unsigned",
                ]
                for r in results
            ),
        )
        for r in results:
            for problem in r.problems:
                click.echo(f"{r.run_id}  {problem.describe()}")
            for note in r.notes:
                click.echo(f"{r.run_id}  note: {note}")
        for u in unreadable:
            click.echo(f"unreadable: {u.path}: {u.reason}")
        for problem in chain:
            click.echo(f"runs log: {problem}")
    if unreadable or chain or any(r.problems for r in results):
        raise SystemExit(1)
