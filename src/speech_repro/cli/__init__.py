"""Project commands: kedro-repro's ``kedro repro`` group plus this project's ``compare``.

Kedro loads this package as the project's ``cli.py``, which takes precedence over plugins: the
``repro`` group here is kedro-repro's (:func:`kedro_repro.cli.repro_group`) with ``compare``,
the speaker-level comparison of two runs' hypotheses, ``transcribe`` (a run's model on new
audio) and ``export-model`` (it as a TorchScript or ONNX file) added.
"""

from __future__ import annotations

import click

from kedro_repro.cli import repro_group
from speech_repro.cli.compare import compare
from speech_repro.cli.export_model import export_model
from speech_repro.cli.transcribe import transcribe


@click.group(name="speech-repro")
def cli() -> None:
    """speech-repro project commands."""


repro = repro_group(extra=(compare, transcribe, export_model))
cli.add_command(repro)

__all__ = ["cli", "repro"]
