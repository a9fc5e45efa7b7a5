"""``kedro repro verify RUN_ID --segments K``: replay K checkpoint intervals and the evaluation.

Part of the ``verify`` command; the segment machinery (:mod:`kedro_repro.segments`) is imported
when it runs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from kedro_repro.cli.bisection import bisect_replay, print_bisection
from kedro_repro.cli.common import config_of, print_table, stderr_line
from kedro_repro.verifications import note_verification


def verify_by_segments(
    project: Path,
    run_id: str,
    count: int,
    workers: int | None,
    seed: int | None,
    workdir: str | None,
    keep: bool,
    code: str,
    sync_env: bool,
    trust_patch: bool,
    overrides: dict[str, Any],
    bisect: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run :func:`~kedro_repro.segments.verify_segments`, print its table (or JSON), exit 1
    unless every chosen segment and the evaluation reproduced bit for bit. With ``bisect``,
    the first diverged segment is bisected to its step and module
    (:func:`~kedro_repro.bisect.bisect_segments`)."""
    from kedro.framework.startup import bootstrap_project

    from kedro_repro import segments

    bootstrap_project(project)  # the pipeline registry and settings of this project
    replay_dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"segments-{run_id}-"))
    try:
        result = segments.verify_segments(
            project,
            run_id,
            count,
            config=config_of(),
            workers=workers,
            seed=seed,
            workdir=replay_dir,
            code=code,
            sync_env=sync_env,
            trust_patch=trust_patch,
            overrides=overrides,
            progress=None if quiet else (lambda line: stderr_line(f"  {line}")),
        )
        if bisect:
            result.bisection = bisect_replay(project, result, overrides, quiet)
    except segments.SegmentsUnavailable as error:
        shutil.rmtree(replay_dir, ignore_errors=True)
        raise click.ClickException(str(error)) from None
    except BaseException:
        if workdir is None:
            shutil.rmtree(replay_dir, ignore_errors=True)
        raise
    if as_json:
        click.echo(segments.to_json(result))
    else:
        _print(result)
    try:
        note_verification(
            project, run_id, result.overall, replay_dir.name, result.code, result.environment,
            scope=f"{count} segment(s)" + (f", what-if --params {overrides}" if overrides else ""),
        )  # fmt: skip
    except OSError as error:  # e.g. a read-only checkout: the verdict above stands
        stderr_line(f"verification not noted ({error}); kedro repro show will not list it")
    passed = result.overall == "bitwise"
    if passed and workdir is None and not keep:
        shutil.rmtree(replay_dir)
    else:
        stderr_line(f"replay workdir {'kept' if passed else 'kept for inspection'}: {replay_dir}")
    if not passed:
        raise SystemExit(1)


def _print(result: Any) -> None:
    click.echo(
        f"verified run {result.run_id} by {len(result.segments)} of {result.segments_total} "
        f"segments (seed {result.seed}: --segment-seed {result.seed} draws the same), "
        f"{result.workers} worker(s), in {result.workdir}"
    )
    if result.overrides:
        click.echo(f"  what-if      --params {result.overrides}")
    click.echo(f"  code         {result.code}")
    click.echo(f"  environment  {result.environment}")
    integrity = result.integrity
    click.echo(
        f"  recorded run bytes checked ({integrity['files_checked']} files), record "
        f"{integrity['seal']}, {integrity['signature']}"
    )
    if result.policy:
        click.echo(
            "  checkpoint retention  " + ", ".join(f"{k} {v}" for k, v in result.policy.items())
        )
    print_table(
        ["segment", "steps", "epoch", "verdict", "seconds", "detail"],
        (
            [s.index, f"{s.start_step}-{s.end_step}", s.epoch, s.verdict, s.seconds, s.detail]
            for s in result.segments
        ),
        indent=2,
    )
    for problem in result.checkpoint_problems:
        click.echo(f"tampered checkpoint: {problem}")
    if result.uncheckable:
        click.echo(
            f"{len(result.uncheckable)} segment(s) of the run cannot be checked (a checkpoint "
            "was pruned): "
            + ", ".join(f"{s.index} ({s.label()}: {s.detail})" for s in result.uncheckable)
        )
    click.echo(f"evaluation from the recorded model: {result.evaluation_verdict}")
    for graded in result.evaluation:
        if graded["grade"] != "bitwise":
            click.echo(f"  {graded['dataset']}: {graded['grade']} {graded.get('detail', '')}")
    if result.bisection is not None:
        print_bisection(result.bisection)
    click.echo(f"verdict: {result.overall}")
