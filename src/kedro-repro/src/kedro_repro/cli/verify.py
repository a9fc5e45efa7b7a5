"""``kedro repro verify RUN_ID``: replay a run in isolation and grade it.

The replay machinery (and torch with it) is imported when the command runs, not with the CLI.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from kedro_repro.bundles import bundle_owner
from kedro_repro.cli.bisection import bisect_replay, print_bisection
from kedro_repro.cli.common import (
    LazyChoice,
    LazyDefaultOption,
    config_of,
    parse_overrides,
    print_changes,
    print_table,
    project_of,
    resolve_run,
    runs_dir_of,
    stderr_line,
)
from kedro_repro.diff import explain_divergence, read_snapshot
from kedro_repro.integrity import ArtifactTamperedError, require_intact
from kedro_repro.record import RecordError, RunRecord, load_run
from kedro_repro.rerun import compose_pipelines, recorded_parameters
from kedro_repro.verifications import note_verification


def _verify_module() -> Any:
    from kedro_repro import verify

    return verify


def current_data(project: Path, record: RunRecord) -> dict[str, str] | None:
    """key -> value of the project's ``current_data`` table as it is now (``settings.REPRO``);
    None when the project declares none or the table does not exist yet.

    The table is loaded with the run's recorded parameters, so a run made with overrides
    (``--params corpus.seed=7``) is checked against its own data.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    table = config_of().current_data
    if table is None:
        return None
    with KedroSession.create(
        project_path=project, env=record.env, runtime_params=recorded_parameters(record)
    ) as session:
        catalog = session.load_context().catalog
        if not catalog.exists(table.dataset):
            return None
        data = catalog.load(table.dataset)
    return dict(zip(data[table.key], data[table.value], strict=True))


@click.command("verify")
@click.argument("run_id")
@click.option(
    "--require",
    type=LazyChoice(lambda: _verify_module().GRADES[:-1]),
    default="bitwise",
    show_default=True,
    help="Exit 0 only for this grade or better.",
)
@click.option("--until", default=None, help="Replay only up to this node.")
@click.option(
    "--params",
    "overrides",
    default="",
    help="What-if overrides, e.g. determinism.threads=1 (comma-separated).",
)
@click.option(
    "--rtol",
    cls=LazyDefaultOption,
    default=lambda: _verify_module().DEFAULT_RTOL,
    show_default=True,
    type=float,
)
@click.option(
    "--atol",
    cls=LazyDefaultOption,
    default=lambda: _verify_module().DEFAULT_ATOL,
    show_default=True,
    type=float,
)
@click.option(
    "--workdir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where to replay: a new or empty folder, kept afterwards (default: a temporary folder).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the temporary replay folder after a successful verify (a failed one is kept).",
)
@click.option(
    "--code",
    type=click.Choice(["recorded", "current"]),
    default="recorded",
    show_default=True,
    help="Replay the run's recorded commit and patch, or today's tree (regression check).",
)
@click.option(
    "--sync-env",
    is_flag=True,
    help="If packages differ from the run's, replay in an env built from its uv.lock (uv sync).",
)
@click.option(
    "--trust-patch",
    is_flag=True,
    help="Apply a dirty-tree patch stored in a bundle that no local seal or signature vouches for.",
)
@click.option(
    "--bisect",
    "bisect",
    is_flag=True,
    help="On a divergence, find the first checkpoint interval, optimizer step and module that "
    "differ (replays the training from the recorded checkpoint under the recorded and the "
    "replay's settings).",
)
@click.option(
    "--segments",
    type=click.IntRange(min=1),
    default=None,
    help="Replay only K checkpoint intervals (the first, the last, the rest drawn) and the "
    "evaluation, each from its recorded checkpoint: cost independent of training length.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Segments replayed at once (default: cores / the run's torch threads).",
)
@click.option(
    "--segment-seed",
    type=int,
    default=None,
    help="Seed of the segments drawn (default: a new one, printed to reproduce the choice).",
)
@click.option("--quiet", is_flag=True, help="Do not show the replay's own output.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def verify_command(
    metadata: Any,
    run_id: str,
    require: str,
    until: str | None,
    overrides: str,
    rtol: float,
    atol: float,
    workdir: str | None,
    code: str,
    sync_env: bool,
    trust_patch: bool,
    keep: bool,
    bisect: bool,
    segments: int | None,
    workers: int | None,
    segment_seed: int | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Replay RUN_ID in isolation and grade it: bitwise, tolerance, metric or diverged.

    The run's stored bytes are checked first; the replay runs the recorded code in the recorded
    environment (or refuses, saying what differs) unless --code current is given. The temporary
    replay folder is removed when the verify succeeds (unless --keep) and kept, its path printed,
    when it fails.

    With --segments K only K checkpoint intervals of the training are replayed, in parallel,
    each from its recorded checkpoint in a fresh process, and compared bit for bit with the
    recorded next checkpoint; the evaluation is replayed from the recorded model.
    """
    verify = _verify_module()
    project = project_of(metadata)
    run_id = resolve_run(metadata, run_id)
    if segments is not None:
        from kedro_repro.cli.verify_segments import verify_by_segments

        if until:
            raise click.ClickException(
                "--until stops a full replay at a node: --segments replays training intervals "
                "and the evaluation"
            )
        if workdir is not None:
            _check_workdir(project, Path(workdir), load_run(runs_dir_of(project), run_id).env)

        verify_by_segments(
            project, run_id, segments, workers, segment_seed, workdir, keep, code, sync_env,
            trust_patch, parse_overrides(overrides), bisect, quiet, as_json,
        )  # fmt: skip
        return
    require_intact(project, run_id, what="to verify")
    record = load_run(runs_dir_of(project), run_id)
    snapshot = read_snapshot(runs_dir_of(project), run_id)
    try:
        current = current_data(project, record)
    except Exception as error:  # the corpus itself refuses to load: modified or missing files
        raise click.ClickException(
            f"the data of run {run_id} cannot be read as recorded; not replayed:\n{error}"
        ) from error
    if snapshot and current is not None:
        changes = verify.check_data(snapshot, current)
        if any(changes.values()):
            lines = [
                f"  {kind} ({len(items)}): {', '.join(items[:20])}"
                for kind, items in changes.items()
                if items
            ]
            raise click.ClickException(
                f"the data differs from run {run_id}'s snapshot; not replayed:\n" + "\n".join(lines)
            )
    pipeline = compose_pipelines(record.pipelines)
    if workdir is not None:
        _check_workdir(project, Path(workdir), record.env)
    replay_dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"verify-{run_id}-"))
    try:
        result = _replay(
            project, run_id, pipeline, until, overrides, rtol, atol, replay_dir, code, sync_env,
            trust_patch, quiet,
        )  # fmt: skip
        if bisect:
            result.bisection = bisect_replay(project, result, parse_overrides(overrides), quiet)
    except (verify.ReplayRefused, ArtifactTamperedError, RecordError):  # nothing was replayed
        if workdir is None:
            shutil.rmtree(replay_dir, ignore_errors=True)
        raise
    except BaseException:
        stderr_line(f"replay workdir kept for inspection: {replay_dir}")
        raise
    if as_json:
        click.echo(verify.to_json(result))
    else:
        _print_verification(result)
    try:
        note_verification(
            project, run_id, result.overall, result.replay_id, result.code, result.environment
        )
    except OSError as error:  # e.g. a read-only checkout: the verdict above stands
        stderr_line(f"verification not noted ({error}); kedro repro show will not list it")
    passed = verify.GRADES.index(result.overall) <= verify.GRADES.index(require)
    if passed and workdir is None and not keep:
        shutil.rmtree(replay_dir)
        stderr_line(f"replay workdir removed: {replay_dir} (--keep keeps it)")
    else:
        kept = "kept" if passed else "kept for inspection"
        stderr_line(f"replay workdir {kept}: {replay_dir}")
    if not passed:
        raise SystemExit(1)


def _check_workdir(project: Path, workdir: Path, env: str | None) -> None:
    """A --workdir must be new or empty, and never part of a run bundle."""
    if reason := bundle_owner(project, workdir, env):
        raise click.ClickException(f"not replaying in {workdir}: it is {reason}")
    if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise click.ClickException(
            f"not replaying in {workdir}: it exists and is not an empty folder"
        )


def _replay(
    project: Path,
    run_id: str,
    pipeline: Any,
    until: str | None,
    overrides: str,
    rtol: float,
    atol: float,
    workdir: Path,
    code: str,
    sync_env: bool,
    trust_patch: bool,
    quiet: bool,
) -> Any:
    """:func:`~kedro_repro.verify.verify` with this project's configuration."""
    from kedro_repro.config import project_config
    from kedro_repro.rerun import load_recorded

    return _verify_module().verify(
        project,
        run_id,
        load_recorded=load_recorded,
        node_order=[(n.name, list(n.inputs), list(n.outputs)) for n in pipeline.nodes],
        config=project_config(),
        explain=explain_divergence,
        until=until,
        overrides=parse_overrides(overrides),
        rtol=rtol,
        atol=atol,
        workdir=workdir,
        code=code,
        sync_env=sync_env,
        trust_patch=trust_patch,
        progress=None if quiet else (lambda line: stderr_line(f"  replay | {line}")),
    )


def _print_verification(result: Any) -> None:
    click.echo(f"replayed run {result.run_id} as {result.replay_id} in {result.workdir}")
    click.echo(f"  code         {result.code}")
    click.echo(f"  environment  {result.environment}")
    integrity = result.integrity
    click.echo(
        f"  recorded run bytes intact ({integrity['files_checked']} files), record "
        f"{integrity['seal']}, {integrity['signature']}"
    )
    print_table(
        ["grade", "dataset", "node", "max |diff|"],
        (
            [
                d.grade,
                d.dataset,
                d.node,
                None if d.max_abs_diff in (None, 0.0) else f"{d.max_abs_diff:.3g}",
            ]
            for d in result.datasets
        ),
        indent=2,
    )
    if result.first_divergent_node:
        click.echo(
            f"first divergent node: {result.first_divergent_node} (its inputs matched, its outputs did not)"
        )
    for group, changes in result.explanation.items():
        if group == "environment":
            for part, items in changes.items():
                print_changes(f"explain/environment/{part}", items)
        elif isinstance(changes, dict):
            print_changes(f"explain/{group}", changes)
        else:
            click.echo(f"[explain/{group}] {changes}")
    if result.metric_test:
        test = config_of().metric_test
        describe = test.describe if test is not None else None
        click.echo(
            describe(result.metric_test) if describe else f"metric test {result.metric_test}"
        )
    if result.bisection is not None:
        print_bisection(result.bisection)
    click.echo(f"verdict: {result.overall}")
