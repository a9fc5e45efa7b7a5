"""``kedro repro``: runs, show, check, sign, diff, run --from-run, resume, verify, export, tag,
load-versions.

Kedro adds :data:`commands` to every project through the ``kedro.project_commands`` entry point.
Users think in runs, not datasets: every command takes a run id (see ``kedro repro runs``),
``latest``, ``latest~N``, a tag or a unique prefix (:mod:`kedro_repro.run_ids`).
Human-readable output by default (rich tables), ``--json`` for machines. One module per
command, presentation only; what the commands compute lives in the core (:mod:`kedro_repro`).
A project with commands of its own builds its group with :func:`repro_group`.
"""

from __future__ import annotations

from collections.abc import Iterable

import click

from kedro_repro.cli.check import check
from kedro_repro.cli.common import TrustGroup
from kedro_repro.cli.diff import diff
from kedro_repro.cli.export import export
from kedro_repro.cli.load_versions import load_versions
from kedro_repro.cli.mlflow_sync import mlflow_sync
from kedro_repro.cli.pull import pull_command
from kedro_repro.cli.push import push_command
from kedro_repro.cli.resume import resume
from kedro_repro.cli.run import run_from
from kedro_repro.cli.runs import run_summary, runs
from kedro_repro.cli.show import show
from kedro_repro.cli.sign import sign
from kedro_repro.cli.tag import tag
from kedro_repro.cli.verify import current_data, verify_command

COMMANDS: tuple[click.Command, ...] = (
    runs,
    show,
    check,
    sign,
    diff,
    run_from,
    resume,
    verify_command,
    export,
    mlflow_sync,
    tag,
    load_versions,
    push_command,
    pull_command,
)


def repro_group(extra: Iterable[click.Command] = ()) -> click.Group:
    """A fresh ``repro`` group holding :data:`COMMANDS` and a project's ``extra`` commands."""
    group = TrustGroup(
        name="repro",
        help="Run records: list, show, check and compare runs; re-run from, resume or verify a past run.",
    )
    for command in (*COMMANDS, *extra):
        group.add_command(command)
    return group


@click.group(name="kedro-repro")
def commands() -> None:
    """kedro-repro commands."""


commands.add_command(repro_group())

__all__ = ["COMMANDS", "commands", "current_data", "repro_group", "run_summary"]
