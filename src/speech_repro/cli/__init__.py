"""Project commands: ``kedro repro runs|show|check|sign|diff|compare|run|resume|verify|export``.

Kedro loads this package as the project's ``cli.py``: ``cli`` is the command group it adds.
Users think in runs, not datasets: every command takes a run id (see ``kedro repro runs``).
Human-readable output by default (rich tables), ``--json`` for machines. One module per
command, presentation only; what the commands compute lives in :mod:`speech_repro.repro`.
"""

from __future__ import annotations

import click

from speech_repro.cli.check import check
from speech_repro.cli.common import TrustGroup
from speech_repro.cli.compare import compare
from speech_repro.cli.diff import diff
from speech_repro.cli.export import export
from speech_repro.cli.resume import resume
from speech_repro.cli.run import run_from
from speech_repro.cli.runs import run_summary, runs
from speech_repro.cli.show import show
from speech_repro.cli.sign import sign
from speech_repro.cli.verify import current_data, verify_command

_current_data = current_data  # the name tests and notebooks used before the package


@click.group(name="speech-repro")
def cli() -> None:
    """speech-repro project commands."""


@cli.group(cls=TrustGroup)
def repro() -> None:
    """Run records: list, show, check and compare runs; re-run from, resume or verify a past run."""


for command in (runs, show, check, sign, diff, compare, run_from, resume, verify_command, export):
    repro.add_command(command)

__all__ = ["cli", "current_data", "repro", "run_summary"]
