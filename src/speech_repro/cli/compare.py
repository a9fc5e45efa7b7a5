"""``kedro repro compare RUN_A RUN_B``: a paired bootstrap over speakers of the WER difference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kedro_repro.cli.common import echo_json, json_option, project_of, resolve_run, runs_dir_of
from kedro_repro.record import load_run
from speech_repro.names import HYPOTHESES, SUMMARY_SPLIT


def recorded_hypotheses(project: Path, run_id: str, split: str) -> tuple[list[str], list[Any]]:
    """The ``split`` hypotheses of every model a run scored: one, or one per seed of a sweep."""
    from kedro_repro.rerun import load_recorded_many

    ledger = load_run(runs_dir_of(project), run_id).ledger
    names = sorted(n for n in ledger if n == HYPOTHESES or n.endswith(f".{HYPOTHESES}"))
    if not names:
        raise click.ClickException(f"run {run_id} scored no model (no {HYPOTHESES} in its ledger)")
    frames = load_recorded_many(project, run_id, names)
    return names, [frame[frame["split"] == split] for frame in frames]


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--split", default=SUMMARY_SPLIT, show_default=True, help="Split to compare on.")
@click.option("--replicates", default=2000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap.")
@json_option()
@click.pass_obj
def compare(
    metadata: Any, run_a: str, run_b: str, split: str, replicates: int, seed: int, as_json: bool
) -> None:
    """Is RUN_B's WER really lower than RUN_A's? A paired bootstrap over speakers.

    Both runs must have scored the same utterances. A seed sweep counts as one configuration:
    its seeds' errors are averaged per utterance, so two sweeps compare configurations.
    """
    from speech_repro.asr.stats import format_interval, paired_speaker_bootstrap

    project = project_of(metadata)
    run_a, run_b = resolve_run(metadata, run_a), resolve_run(metadata, run_b)
    names_a, a = recorded_hypotheses(project, run_a, split)
    names_b, b = recorded_hypotheses(project, run_b, split)
    try:
        result = paired_speaker_bootstrap(a, b, replicates=replicates, seed=seed)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    result = {"run_a": run_a, "run_b": run_b, "split": split, "models_a": names_a,
              "models_b": names_b, **result}  # fmt: skip
    if as_json:
        echo_json(result)
        return
    level = round(100 * result["level"])
    click.echo(f"A {run_a}: {split} WER {result['wer_a']:.2%} ({len(names_a)} model(s))")
    click.echo(f"B {run_b}: {split} WER {result['wer_b']:.2%} ({len(names_b)} model(s))")
    click.echo(
        f"WER(B) - WER(A) = {result['delta']:+.2%}, {level} % CI "
        f"{format_interval(result, '+.2%')} "
        f"({result['method']}, {result['speakers']} speakers)"
    )
    if result["ci_low"] is None:
        click.echo(
            "no interval over speakers: whether B differs from A beyond speaker noise is unknown"
        )
        return
    verdict = (
        "the difference is within speaker noise (the interval contains 0)"
        if result["equivalent"]
        else f"B is {'better' if result['delta'] < 0 else 'worse'} beyond speaker noise"
    )
    click.echo(f"P(B better than A) = {result['p_improvement']:.3f}: {verdict}")
