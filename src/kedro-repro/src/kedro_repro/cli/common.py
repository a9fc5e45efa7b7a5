"""What every command shares: the project and its configuration, errors as one paragraph, output.

Presentation only: record logic lives in :mod:`kedro_repro`. Heavy modules (torch, pandas,
scipy) are imported inside the commands that need them, never here: Kedro imports this package
on every ``kedro`` call, and commands that only read records stay fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from kedro_repro.config import ReproConfig, project_config
from kedro_repro.integrity import ArtifactTamperedError
from kedro_repro.record import RUNS_DIR, RecordError
from kedro_repro.rerun import RunRefused
from kedro_repro.signing import SigningError

WIDE = 1_000_000
"""Output width when stdout is not a terminal: tables are never wrapped for a pipe or a file."""


class LazyChoice(click.Choice):
    """A :class:`click.Choice` whose choices are computed when first needed (help, parsing), so
    a heavy module that defines them is imported only by the command that uses it."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        self._loaded: Sequence[str] | None = None
        super().__init__([])

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        if self._loaded is None:
            self._loaded = tuple(self._load())
        return self._loaded

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:  # click's __init__ assigns them
        pass


class LazyDefaultOption(click.Option):
    """A :class:`click.Option` whose callable default is also shown by value in ``--help``."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        if callable(self.default):
            self.default = self.default()
        return super().get_help_record(ctx)


class TrustGroup(click.Group):
    """Turns the refusals of the trust checks into one-paragraph errors, never tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (
            ArtifactTamperedError,
            RecordError,
            RunRefused,
            SigningError,
        ) as error:
            raise click.ClickException(str(error)) from None
        except FileNotFoundError as error:
            if "no record for run" in str(error):
                raise click.ClickException(str(error)) from None
            raise
        except Exception as error:
            # verify (and torch with it) is imported only by the commands that replay: an error
            # can be its refusal only once it is imported
            verify = sys.modules.get("kedro_repro.verify")
            if verify is not None and isinstance(error, verify.ReplayRefused):
                raise click.ClickException(str(error)) from None
            raise


def config_of() -> ReproConfig:
    """The project's ``settings.REPRO``: which datasets and metrics the commands show."""
    return project_config()


def project_of(metadata: Any) -> Path:
    """The project folder Kedro passes as the command's object (the working folder without one)."""
    return Path(metadata.project_path) if metadata is not None else Path.cwd()


def runs_dir_of(project: Path) -> Path:
    """Where ``project``'s run bundles live."""
    return project / RUNS_DIR


def resolve_run(metadata: Any, name: str) -> str:
    """The run id ``name`` stands for in the project (``latest``, ``latest~N``, a tag, a unique
    prefix or the id itself): every command resolves its run arguments through this."""
    from kedro_repro.run_ids import resolve_run_id

    return resolve_run_id(runs_dir_of(project_of(metadata)), name)


def json_option(help_text: str = "Print JSON.") -> Callable:
    """The ``--json`` flag every command that prints data has."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def echo_json(document: Any) -> None:
    """``document`` as indented JSON on standard output."""
    click.echo(json.dumps(document, indent=1, default=str))


def cell(value: Any) -> str:
    """A table cell: floats to 4 decimals, None as ``-``."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def duration_text(seconds: float | None) -> str | None:
    """A duration for people: ``7.1s``, ``30m21s``, ``2h05m`` (None stays None)."""
    if seconds is None:
        return None
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def print_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], indent: int = 0, err: bool = False
) -> None:
    """Rows aligned under ``header`` with rich, without borders, never wrapped or cut."""
    from rich.console import Console
    from rich.padding import Padding
    from rich.table import Table

    console = Console(
        stderr=err, markup=False, highlight=False, emoji=False, color_system=None, soft_wrap=True
    )
    if not console.is_terminal:
        console.width = WIDE
    table = Table(box=None, pad_edge=False, header_style=None, show_edge=False)
    for name in header:
        table.add_column(name, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*(cell(value) for value in row))
    # Padding fills the console width by default: a million spaces a line on a pipe.
    console.print(Padding(table, (0, 0, 0, indent), expand=False) if indent else table)


def print_changes(group: str, changes: dict[str, list]) -> None:
    """A ``[group]`` heading and one ``key: a -> b`` line per change (``identical`` when none)."""
    click.echo(f"[{group}]" if changes else f"[{group}] identical")
    for key, (a, b) in changes.items():
        click.echo(f"  {key}: {a} -> {b}")


def stderr_line(text: str) -> None:
    """One line on standard error (progress, notes): standard output stays data."""
    click.echo(text, err=True)


def parse_overrides(text: str) -> dict[str, Any]:
    """``--params a.b=1,c=x`` as ``{"a.b": 1, "c": "x"}`` (values read as YAML scalars)."""
    import yaml

    pairs = (item.partition("=") for item in text.split(",") if item.strip())
    return {key.strip(): yaml.safe_load(value) for key, _, value in pairs}
