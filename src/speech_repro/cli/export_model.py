"""``kedro repro export-model RUN --format torchscript|onnx``: a run's model as one standalone file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kedro_repro.cli.common import project_of


@click.command("export-model")
@click.argument("run_id", metavar="RUN")
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["torchscript", "onnx"]),
    required=True,
    help="torchscript: a .pt with vocabulary.json and config.json as extra files; onnx: an "
    ".onnx with the vocabulary in its metadata, plus a <file>.json sidecar.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write it (default: model-<run id>.pt or .onnx in the project folder).",
)
@click.option("--model", "model_dataset", default="model", show_default=True,
              help="The run's model dataset (seed_<n>.model for a seed of a sweep).")  # fmt: skip
@click.pass_obj
def export_model(
    metadata: Any, run_id: str, export_format: str, output: Path | None, model_dataset: str
) -> None:
    """Write RUN's model with its feature front end (log-mel, normalisation) and vocabulary.

    Waveform in (mono float32 at the run's sample rate), CTC log-probabilities out. The run's
    stored bytes are checked against its record first; the written file is loaded back and
    compared with the PyTorch model on a seeded probe waveform.
    """
    from speech_repro.trained_model import EXPORT_FORMATS, export_model, load_trained

    project = project_of(metadata)
    trained = load_trained(project, run_id, model_dataset)
    path = output or project / f"model-{trained.run_id}{EXPORT_FORMATS[export_format]}"
    result = export_model(trained, export_format, path)
    for file in result.files:
        click.echo(str(file))
    click.echo(
        f"{export_format} export of run {trained.run_id}: max |log-prob difference| "
        f"{result.max_abs_diff:.3g} on a seeded probe against PyTorch, "
        f"{'same' if result.same_text else 'DIFFERENT'} text",
        err=True,
    )
    if not result.same_text:
        raise click.ClickException("the exported model decodes the probe to other text")
