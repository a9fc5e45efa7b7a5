"""Benchmark: what a `kedro` call costs before it does anything, against importing torch.

Timed in the same session, round-robin (so load on the machine hits every command alike), each a
fresh process: `python -c "import torch"`, `kedro repro runs`, `kedro repro show <run>` and
`kedro repro show latest`, `kedro repro tag` (the tag list) and `kedro registry list`. Also timed in fresh processes: torch's own determinism switch
(`torch.use_deterministic_algorithms`, which imports the compiler stack) against the project's
(`kedro_repro.determinism.apply_policy`). The project needs one run record; when it has none,
`kedro run --env test` makes one first. Results go between the `bench:cli_startup` markers of
docs/benchmarks.md.

    uv run python bench/cli_startup.py [--rounds 5] [--project PATH]

``--project`` times the commands in another copy of the project (its data/ holds the runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from report import write_section

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"}
KEDRO = [sys.executable, "-m", "kedro"]

SWITCH_PROBE = """
import sys, time, torch
from kedro_repro.determinism import DeterminismPolicy, apply_policy
start = time.perf_counter()
{call}
print(time.perf_counter() - start, "torch._inductor" in sys.modules)
"""
SWITCHES = {
    "torch.use_deterministic_algorithms(True)": "torch.use_deterministic_algorithms(True)",
    "apply_policy(DeterminismPolicy())": "apply_policy(DeterminismPolicy())",
}


def wall_time(command: list[str], project: Path = REPO) -> float:
    """Seconds a fresh process of ``command`` takes in ``project`` (raises on failure)."""
    start = time.perf_counter()
    subprocess.run(command, cwd=project, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def newest_run(project: Path = REPO) -> str:
    """The newest run's id, making one with ``kedro run --env test`` when there is none."""
    listing = subprocess.run(
        [*KEDRO, "repro", "runs", "--json"], cwd=project, env=ENV, check=True, capture_output=True
    )
    runs = json.loads(listing.stdout)
    if not runs:
        subprocess.run([*KEDRO, "run", "--env", "test"], cwd=project, env=ENV, check=True)
        return newest_run(project)
    return runs[-1]["run_id"]


def main() -> None:
    """Time the commands and the determinism switch; write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--project", type=Path, default=REPO)
    arguments = parser.parse_args()
    rounds, project = arguments.rounds, arguments.project.resolve()
    run_id = newest_run(project)
    commands = {
        '`python -c "import torch"`': [sys.executable, "-c", "import torch"],
        "`kedro repro runs`": [*KEDRO, "repro", "runs"],
        f"`kedro repro show {run_id}`": [*KEDRO, "repro", "show", run_id],
        "`kedro repro show latest`": [*KEDRO, "repro", "show", "latest"],
        "`kedro repro tag`": [*KEDRO, "repro", "tag"],
        "`kedro registry list`": [*KEDRO, "registry", "list"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # one untimed call each: the OS file cache is warm
        wall_time(command, project)
    for _ in range(rounds):
        for name, command in commands.items():
            times[name].append(wall_time(command, project))
    switch: dict[str, tuple[float, bool]] = {}
    for name, call in SWITCHES.items():
        seconds, compiler = [], False
        for _ in range(rounds):
            probe = subprocess.run(
                [sys.executable, "-c", SWITCH_PROBE.format(call=call)],
                cwd=REPO,
                env={k: v for k, v in ENV.items() if k != "TORCHINDUCTOR_DETERMINISTIC"},
                check=True,
                capture_output=True,
                text=True,
            )
            elapsed, imported = probe.stdout.split()
            seconds.append(float(elapsed))
            compiler = imported == "True"
        switch[name] = (statistics.median(seconds), compiler)

    torch_median = statistics.median(times['`python -c "import torch"`'])
    lines = [
        f"Measured {date.today()} on {os.cpu_count()} cores by `uv run python "
        f"bench/cli_startup.py --rounds {rounds}"
        + (" --project <a copy of the project with one run>" if project != REPO else "")
        + "`: each a fresh process, the commands taken in "
        "turn in every round, bytecode compiled (`uv sync --locked --compile-bytecode`).",
        "",
        "| command | median wall time (s) | min (s) | max (s) | of `import torch` |",
        "|---|---|---|---|---|",
    ]
    for name, seconds in times.items():
        median = statistics.median(seconds)
        lines.append(
            f"| {name} | {median:.2f} | {min(seconds):.2f} | {max(seconds):.2f} | "
            f"{median / torch_median:.2f} |"
        )
    lines += [
        "",
        "The determinism switch, timed inside a fresh process after `import torch` (median of "
        f"{rounds}):",
        "",
        "| call | seconds | imports `torch._inductor` |",
        "|---|---|---|",
        *(
            f"| `{name}` | {seconds:.3f} | {'yes' if compiler else 'no'} |"
            for name, (seconds, compiler) in switch.items()
        ),
    ]
    write_section("cli_startup", lines)


if __name__ == "__main__":
    main()
