"""Benchmark: what the run record costs, as a share of the default run's wall time.

In a fresh clone, renders the corpus once, then alternates default `kedro run`s with and
without the RunRecordHook (SPEECH_REPRO_RECORD=0), and reports the median wall time of each.
Writes the result between the `bench:record_overhead` markers of docs/benchmarks.md.

    uv run python bench/record_overhead.py [repeats, default 2]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write_section

REPO = Path(__file__).resolve().parents[1]


def kedro_run(project: Path, record: bool, *args: str) -> float:
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "1",
        "SPEECH_REPRO_RECORD": "1" if record else "0",
    }
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "speech-repro"
        subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
        kedro_run(project, True, "--pipelines=embedded_corpus")  # synthesis is cached afterwards
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(repeats):
            for record in (False, True):
                times[record].append(kedro_run(project, record))
    with_record, without = statistics.median(times[True]), statistics.median(times[False])
    overhead = (with_record - without) / without
    write_section(
        "record_overhead",
        [
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores by `uv run python bench/record_overhead.py {repeats}`: "
            f"default `kedro run` with the corpus already rendered, {repeats} runs each, alternating.",
            "",
            "| run | median wall time (s) | runs (s) |",
            "|---|---|---|",
            f"| without the run record (SPEECH_REPRO_RECORD=0) | {without:.1f} | {', '.join(f'{t:.1f}' for t in times[False])} |",
            f"| with the run record | {with_record:.1f} | {', '.join(f'{t:.1f}' for t in times[True])} |",
            "",
            f"Overhead of the reproducibility machinery: {100 * overhead:+.1f} % (target ≤ 3 %).",
        ],
    )


if __name__ == "__main__":
    main()
