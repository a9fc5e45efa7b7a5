"""Segment verification against a full replay, and against training length.

In a fresh clone: the default run (12 epochs, a checkpoint at every epoch end, all kept), then
`kedro repro verify RUN` (full replay) and `kedro repro verify RUN --segments 3`, timed; then
the same pair on runs of the tiny test configuration trained 12 and 120 epochs (same checkpoint
policy), to show what the segment cost depends on. A 120-epoch run of the default configuration
(about 15 minutes of training on 2 cores) is left out: `--default-epochs 120` adds it. Writes
the section between the `bench:segment_verify` markers of docs/benchmarks.md.

    uv run python bench/segment_verify.py [--default-epochs 12 120] [--skip-default | --skip-test]

``--skip-test`` measures the default runs alone and writes them to the
``bench:segment_verify_default`` section.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write_section

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}


def kedro(project: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *args], cwd=project, env=ENV, capture_output=True, text=True
    )
    return time.perf_counter() - started, result


def new_run(project: Path, *args: str) -> tuple[str, float]:
    before = (
        set((project / "data/09_runs").glob("*T*"))
        if (project / "data/09_runs").exists()
        else set()
    )
    seconds, result = kedro(project, "run", *args)
    if result.returncode != 0:
        raise RuntimeError(f"kedro run {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    (run,) = set((project / "data/09_runs").glob("*T*")) - before
    return run.name, seconds


def verify(project: Path, run_id: str, *args: str) -> tuple[float, dict]:
    seconds, result = kedro(project, "repro", "verify", run_id, "--json", *args)
    out = result.stdout
    if "{" not in out:
        raise RuntimeError(
            f"verify {run_id} {' '.join(args)} printed no JSON:\n{result.stderr[-4000:]}"
        )
    return seconds, json.loads(out[out.index("{") :])


def checkpoint_bytes(project: Path, run_id: str) -> tuple[int, int]:
    record = json.loads((project / "data/09_runs" / run_id / "record.json").read_text())
    section = record["checkpoints"]["training_checkpoints"]
    files = [project / section["directory"] / name for name in section["files"]]
    return len(files), sum(f.stat().st_size for f in files)


def measure(project: Path, label: str, run_args: list[str]) -> str:
    run_id, run_seconds = new_run(project, *run_args)
    full_seconds, full = verify(project, run_id)
    seg_seconds, seg = verify(project, run_id, "--segments", "3", "--segment-seed", "0")
    count, size = checkpoint_bytes(project, run_id)
    steps = ", ".join(f"{s['start_step']}-{s['end_step']}" for s in seg["segments"])
    return (
        f"| {label} | {run_seconds:.1f} | {full_seconds:.1f} ({full['overall']}) | "
        f"{seg_seconds:.1f} ({seg['overall']}; steps {steps}; {seg['workers']} workers) | "
        f"{100 * seg_seconds / full_seconds:.0f} % | {count} × {size / count / 1e6:.2f} MB = "
        f"{size / 1e6:.1f} MB |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--default-epochs", type=int, nargs="*", default=[12])
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument(
        "--skip-test", action="store_true", help="only the default runs (their own section)"
    )
    parser.add_argument(
        "--section", default=None, help="the docs/benchmarks.md block to write (default: by mode)"
    )
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "speech-repro"
        subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()  # a worktree's clone starts on the main branch: check out this one
        subprocess.run(["git", "-C", str(project), "checkout", "-q", head], check=True)
        if not options.skip_default:
            for epochs in options.default_epochs:
                extra = [] if epochs == 12 else ["--params", f"training.epochs={epochs}"]
                rows.append(measure(project, f"default, {epochs} epochs", extra))
        for epochs in () if options.skip_test else (12, 120):
            rows.append(
                measure(
                    project,
                    f"test configuration, {epochs} epochs",
                    ["--env", "test", "--params", f"training.epochs={epochs}"],
                )
            )
    command = "uv run python bench/segment_verify.py " + " ".join(sys.argv[1:])
    write_section(
        options.section or ("segment_verify_default" if options.skip_test else "segment_verify"),
        [
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores by `{command.strip()}`, "
            "each run then `kedro repro verify RUN` and `kedro repro verify RUN --segments 3 "
            "--segment-seed 0`, in a fresh clone; wall times of the whole commands.",
            "",
            "| run | training run (s) | full replay (s) | `--segments 3` (s) | segments / full | checkpoints kept |",
            "|---|---|---|---|---|---|",
            *rows,
        ],
    )


if __name__ == "__main__":
    main()
