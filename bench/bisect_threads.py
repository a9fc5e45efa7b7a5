"""`kedro repro verify --bisect` on the threads case of the drift matrix, timed.

In a fresh clone: the default `kedro run` (2 torch threads), then `kedro repro verify RUN
--params determinism.threads=1 --bisect`, and one segment replay alone (the first checkpoint
interval from the recorded start, in a fresh process), with and without the probe's hooks.
The target (issue 15): the bisection finds the first divergent step in at most
2 x (one segment replay) x log2(segments). Writes the `bench:bisect` block of docs/benchmarks.md.

    uv run python bench/bisect_threads.py              # the default configuration
    uv run python bench/bisect_threads.py --env test   # the test configuration (seconds)

With 1 recorded thread (the test configuration) the replay gets 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write_section

from kedro_repro.bisect import SegmentRequest, replay_segment

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
# The model digests training must keep (default and test configuration), unpinned, on the AVX-512
# machine that measured docs/benchmarks.md; another CPU differs (docs/reproducibility.md).
ANCHOR = {
    None: "blake3:1a2f35dbe3485780cf530a2d601afdc2229fcc04b1d6498f23d241f5b31d546e",
    "test": "blake3:866276a502d1dde41e144ab2350ffc2087140f003c24a1746c78658ba02bfa14",
}


def kedro(
    project: Path, *args: str, check: bool = True
) -> tuple[subprocess.CompletedProcess, float]:
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *args], cwd=project, env=ENV, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kedro {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result, time.perf_counter() - began


def segment(project: Path, run_id: str, stop: int, out: Path, watch: bool) -> float:
    """Wall time of one replay of steps 0..stop in a fresh process (recorded settings)."""
    began = time.perf_counter()
    process = replay_segment(SegmentRequest(str(project), run_id, 0, stop, str(out), watch=watch))
    if process.wait() != 0:
        raise RuntimeError((out / "output.log").read_text()[-3000:])
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default=None, help="configuration environment (default: base)")
    parser.add_argument(
        "--project", default=None, type=Path, help="a clone holding a complete run to use"
    )
    arguments = parser.parse_args()
    env = arguments.env
    options = ["--env", env] if env else []
    with tempfile.TemporaryDirectory() as tmp:
        project = arguments.project or Path(tmp) / "speech-repro"
        if arguments.project is None:
            subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
            kedro(project, "run", *options)
        run_id = sorted(p.name for p in (project / "data/09_runs").iterdir() if p.is_dir())[-1]
        record = json.loads((project / "data/09_runs" / run_id / "record.json").read_text())
        run_seconds = record["duration_seconds"]
        model = record["ledger"]["model"]["digest"]
        training = record["parameters"]["tunable"]["training"]
        recorded = record["parameters"]["design"]["determinism"]["threads"]
        threads = 2 if recorded == 1 else 1
        result, verify_seconds = kedro(
            project, "repro", "verify", run_id, "--params", f"determinism.threads={threads}", "--bisect",
            "--require", "metric", "--quiet", "--json", check=False,
        )  # fmt: skip
        out = result.stdout
        verification = json.loads(out[out.index("{") :])
        bisection = verification["bisection"]
        start, end = bisection["interval"]
        log = project / "data/08_reporting/training_log.csv" / run_id / "training_log.csv"
        rows = log.read_text().splitlines()[1:]
        steps = len(rows)
        per_epoch = steps // training["epochs"]
        every = training["checkpoint_every_steps"] or per_epoch
        checkpoints = {s for s in range(1, steps + 1) if s % every == 0 or s % per_epoch == 0}
        segments = len(checkpoints)
        # One segment: the first checkpoint interval of the schedule, from the start.
        first_interval = min(checkpoints)
        seg_seconds = segment(project, run_id, first_interval, Path(tmp) / "seg", watch=True)
        bare_seconds = segment(project, run_id, first_interval, Path(tmp) / "bare", watch=False)
    bisect_seconds = bisection["seconds"]["total"]
    target = 2 * seg_seconds * math.log2(segments)
    first = next(m for m in bisection["modules"] if not m["equal"])
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores by "
        f"`uv run python bench/bisect_threads.py{' --env ' + env if env else ''}`: "
        f"`kedro run{' --env ' + env if env else ''}` ({recorded} thread(s), "
        f"{steps} steps, {segments} checkpoint intervals), then "
        f"`kedro repro verify RUN --params determinism.threads={threads} --bisect`.",
        "",
        "| what | seconds |",
        "|---|---|",
        f"| `kedro run` | {run_seconds:.0f} |",
        f"| `verify --bisect` in all (full replay, grading, bisection) | {verify_seconds:.0f} |",
        f"| bisection alone (interval, step, module) | {bisect_seconds:.1f} |",
        f"| of which: both interval replays, in parallel | {bisection['seconds']['steps']:.1f} |",
        f"| of which: a second pair for the dumps of step {bisection['first_module_step']} "
        "(none when the first pair kept them) | "
        f"{bisection['seconds'].get('modules', 0):.1f} |",
        f"| one segment replay (steps 0-{first_interval}, fresh process, with the probe) | "
        f"{seg_seconds:.1f} |",
        f"| the same without the probe's hooks | {bare_seconds:.1f} |",
        f"| target: 2 x segment x log2({segments}) | {target:.1f} |",
        "",
        f"Bisection / target: {bisect_seconds / target:.2f}. Found: interval {start}-{end} "
        f"(replayed to step {bisection['replayed_to']}) "
        f"({bisection['interval_evidence']}), first divergent step "
        f"{bisection['first_divergent_step']}, first divergent module "
        f"`{bisection['first_divergent_module']}` ({first['kind']} {first['tensor']}, max |diff| "
        f"{first['max_abs_diff']:.3g}). The probe's hooks cost "
        f"{100 * (seg_seconds / bare_seconds - 1):+.0f} % on a segment replay; training itself "
        "runs without a probe. Model digest "
        + ("equals" if model == ANCHOR[env] else f"DIFFERS ({model}) from")
        + " the anchor.",
    ]
    write_section(f"bisect_{env}" if env else "bisect", lines)


if __name__ == "__main__":
    main()
