"""``kedro repro transcribe RUN AUDIO...``: a run's model on new audio, hypotheses out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from kedro_repro.cli.common import project_of

OUTPUT_FORMATS = (".csv", ".jsonl")


@click.command("transcribe")
@click.argument("run_id", metavar="RUN")
@click.argument("audio", nargs=-1, required=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the hypotheses to this .csv or .jsonl file (default: print them).",
)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--format",
    "manifest_format",
    type=click.Choice(["librispeech", "kaldi", "jsonl", "common_voice"]),
    help="Read AUDIO as a manifest of this corpus format (default: from the path).",
)
@click.option("--model", "model_dataset", default="model", show_default=True,
              help="The run's model dataset (seed_<n>.model for a seed of a sweep).")  # fmt: skip
@click.pass_obj
def transcribe(
    metadata: Any,
    run_id: str,
    audio: tuple[str, ...],
    output: Path | None,
    batch_size: int,
    manifest_format: str | None,
    model_dataset: str,
) -> None:
    """Transcribe AUDIO (files, folders of audio, or manifests) with the model of RUN.

    The model, normalisation statistics, features, audio policy, text normalisation and
    vocabulary are the run's own; their stored bytes are checked against its record first.
    Prints one ``utt_id<TAB>hypothesis`` line per utterance, or writes --output.
    """
    if output is not None and output.suffix.lower() not in OUTPUT_FORMATS:
        raise click.UsageError(f"--output must end in {' or '.join(OUTPUT_FORMATS)}: {output}")
    from tqdm import tqdm

    from speech_repro.asr.recognizer import AudioItem
    from speech_repro.corpora.new_audio import AudioInputError, index_many
    from speech_repro.trained_model import load_trained, recognizer_of

    try:
        table = index_many(audio, manifest_format)
    except AudioInputError as error:
        raise click.ClickException(str(error)) from None
    trained = load_trained(project_of(metadata), run_id, model_dataset)
    recognizer = recognizer_of(trained)
    items = [
        AudioItem(row.utt_id, row.audio_path, float(row.start), float(row.end))
        for row in table.itertuples()
    ]
    # disable=None: a bar on a terminal, nothing when stderr is a pipe or a file
    with tqdm(total=len(items), unit="utt", file=sys.stderr, disable=None) as bar:
        try:
            hypotheses = recognizer.transcribe_items(items, batch_size, bar.update)
        except ValueError as error:  # the run's audio policy refuses a rate or channel count
            raise click.ClickException(str(error)) from None
    result = table[["utt_id", "audio_path"]].assign(hypothesis=hypotheses)
    if output is None:
        for row in result.itertuples():
            click.echo(f"{row.utt_id}\t{row.hypothesis}")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".csv":
        result.to_csv(output, index=False)
    else:
        result.to_json(output, orient="records", lines=True, force_ascii=False)
    click.echo(f"{len(result)} hypotheses of run {trained.run_id} written to {output}", err=True)
