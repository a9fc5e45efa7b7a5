"""Benchmark: the test suite with and without compiled bytecode.

Two fresh clones of the repository's HEAD: one installed as `.ci/run` installs it
(`uv sync --locked --compile-bytecode`), one with `--no-compile-bytecode` and
`PYTHONDONTWRITEBYTECODE=1`, so no `.pyc` exists and none is written (read-only installs,
some containers). The same pytest command runs in each, one after the other, and its wall time
is written between the `bench:suite_bytecode` markers of docs/benchmarks.md.

    uv run python bench/suite_bytecode.py [pytest arguments, default: the whole suite]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from report import write_section

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "compiled (`uv sync --locked --compile-bytecode`)": (["--compile-bytecode"], {}),
    "none (`--no-compile-bytecode`, `PYTHONDONTWRITEBYTECODE=1`)": (
        ["--no-compile-bytecode"],
        {"PYTHONDONTWRITEBYTECODE": "1"},
    ),
}


def timed_suite(workdir: Path, sync_flags: list[str], extra_env: dict[str, str], args: list[str]):
    """Clone, sync with ``sync_flags``, run pytest ``args``; (seconds, .pyc count, last line)."""
    clone = workdir / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in {"UV_COMPILE_BYTECODE", "VIRTUAL_ENV"}}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env |= {"KEDRO_DISABLE_TELEMETRY": "1", **extra_env}
    subprocess.run(["uv", "sync", "--locked", "-q", *sync_flags], cwd=clone, env=env, check=True)
    compiled = sum(1 for _ in (clone / ".venv").rglob("*.pyc"))
    start = time.perf_counter()
    # The venv's pytest directly: `uv run` would sync again, compiling bytecode per pyproject.toml.
    result = subprocess.run(
        [str(clone / ".venv/bin/pytest"), "-q", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1].strip("= ")
    return seconds, compiled, summary


def main() -> None:
    """Run the suite in both installs; write the table."""
    args = sys.argv[1:]
    rows = []
    for name, (flags, extra_env) in VARIANTS.items():
        with tempfile.TemporaryDirectory(prefix="suite-bytecode-") as workdir:
            seconds, compiled, summary = timed_suite(Path(workdir), flags, extra_env, args)
        rows.append(f"| {name} | {compiled} | {seconds:.0f} | {summary} |")
        print(rows[-1], flush=True)
    command = " ".join(["uv run python bench/suite_bytecode.py", *args])
    shown = " ".join(args) or "(the whole suite)"
    write_section(
        "suite_bytecode",
        [
            f"Measured {date.today()} on {os.cpu_count()} cores by `{command}`: pytest {shown} "
            "in a fresh clone of HEAD per row, one after the other.",
            "",
            "| bytecode | `.pyc` files in .venv | wall time (s) | pytest |",
            "|---|---|---|---|",
            *rows,
        ],
    )


if __name__ == "__main__":
    main()
