"""Benchmark: `kedro run --pipelines seeds` (three seeds of the default experiment) from a clone.

Measures the sweep's wall time and reports what the sweep itself reports: each seed's WER with
its interval over speakers, and the mean, standard deviation and Student-t interval across
seeds. Writes between the `bench:seed_sweep` markers of docs/benchmarks.md.

    uv run python bench/seed_sweep.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write_section

from speech_repro.asr.stats import format_interval

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "speech-repro"
        subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "kedro", "run", "--pipelines", "seeds"],
            cwd=project, env=env, capture_output=True, check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        folder = project / "data/08_reporting/seed_summary.json"
        summary = json.loads((max(folder.iterdir()) / folder.name).read_text())

    lines = [
        "",
        f"`kedro run --pipelines seeds` from a fresh clone (corpus synthesized, then "
        f"{len(summary['seeds'])} seeds trained and scored): **{seconds:.0f} s**.",
        "",
        "| split | seed | WER | 95 % CI over speakers |",
        "|---|---|---|---|",
    ]
    for split in ("dev", "test"):
        for seed, r in summary["splits"][split]["per_seed"].items():
            lines.append(f"| {split} | {seed} | {r['wer']:.2%} | {format_interval(r)} |")
    lines += ["", "| split | mean | std | 95 % t-interval of the mean | outlier seeds |",
              "|---|---|---|---|---|"]  # fmt: skip
    for split in ("dev", "test"):
        a = summary["splits"][split]["across_seeds"]
        lines.append(
            f"| {split} | {a['mean']:.2%} | {a['std']:.2%} | [{a['ci_low']:.2%}, "
            f"{a['ci_high']:.2%}] | {summary['splits'][split]['outlier_seeds'] or 'none'} |"
        )
    lines += ["", f"Methods: {summary['methods']['across_seeds']}; "
              f"{summary['methods']['within_run']}.", ""]  # fmt: skip
    write_section("seed_sweep", lines)


if __name__ == "__main__":
    main()
