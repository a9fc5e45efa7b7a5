"""How ``kedro repro verify --bisect`` prints a :class:`~kedro_repro.bisect.Bisection`."""

from __future__ import annotations

from typing import Any

import click

from kedro_repro.cli.common import config_of, print_table, stderr_line


def bisect_replay(project: Any, result: Any, overrides: dict[str, Any], quiet: bool) -> Any:
    """The bisection of a full replay's or a segment verification's ``result``
    (:func:`~kedro_repro.bisect.bisect_verification`, :func:`~kedro_repro.bisect.bisect_segments`);
    a refusal is one line."""
    from kedro_repro import bisect
    from kedro_repro.rerun import load_recorded
    from kedro_repro.segments import SegmentVerification

    by_segments = isinstance(result, SegmentVerification)
    search = bisect.bisect_segments if by_segments else bisect.bisect_verification
    try:
        return search(
            project,
            result,
            config=config_of(),
            overrides=overrides,
            load_recorded=load_recorded,
            progress=None if quiet else stderr_line,
        )
    except bisect.BisectRefused as error:
        raise click.ClickException(f"--bisect: {error}") from None


def print_bisection(bisection: Any) -> None:
    """The bisection of a full or segment replay, for people (``verify --bisect``)."""
    click.echo("bisection")
    if bisection.interval is None or bisection.first_divergent_step is None:
        click.echo(f"  {bisection.note or bisection.interval_evidence}")
        return
    start, end = bisection.interval
    click.echo(
        f"  first divergent interval  steps {start} -> {end} ({bisection.interval_evidence})"
    )
    click.echo(
        f"  first divergent step      {bisection.first_divergent_step}: "
        + "; ".join(bisection.step_differences[:6])
    )
    reference, candidate = bisection.reference, bisection.candidate
    verdict = "reproduces" if reference["reproduces"] else "does NOT reproduce"
    click.echo(
        f"  reference replay          recorded settings ({reference['threads']} threads): "
        f"{verdict} the recorded run"
    )
    click.echo(f"  candidate replay          replay settings ({candidate['threads']} threads)")
    click.echo(f"  steps replayed            {start} -> {bisection.replayed_to}, fresh processes")
    if bisection.first_divergent_module is None:
        click.echo(f"  {bisection.note}")
        return
    click.echo(
        f"  first divergent module    {bisection.first_divergent_module} "
        f"({bisection.first_divergent_kind}) at step {bisection.first_module_step}"
    )
    from kedro_repro.bisect import explaining_differences

    for line in explaining_differences(bisection.environment):
        click.echo(f"  explained by              {line}")
    print_table(
        ["order", "tensor", "module", "max |diff|", "bitwise"],
        (
            [m.order, f"{m.kind}:{m.tensor}", m.module, f"{m.max_abs_diff:.3g}", m.equal]
            for m in bisection.modules
        ),
        indent=2,
    )
