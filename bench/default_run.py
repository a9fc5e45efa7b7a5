"""Benchmark: the default `kedro run` from a fresh clone, twice, on this machine.

Measures wall time of a cold run (corpus synthesized) and a warm run (corpus reused), checks that
both runs produced byte-identical model tensors and identical metrics, and writes the results
between the `bench:default_run` markers of docs/benchmarks.md.

    uv run python bench/default_run.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write_section

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from kedro_repro.hashing import tensors_digest  # noqa: E402
from kedro_repro.record import list_records  # noqa: E402
from kedro_repro.session import RUNS_DIR  # noqa: E402
from kedro_repro.state import load_state  # noqa: E402


def kedro_run(project: Path) -> tuple[float, str]:
    """Wall time and log of one `kedro run` in a fresh process."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run"],
        cwd=project, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return time.perf_counter() - start, result.stdout + result.stderr


def latest(project: Path, dataset: str, run_id: str) -> Path:
    return project / dataset / run_id / Path(dataset).name


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "speech-repro"
        subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
        runs = []
        for label in ("cold (corpus synthesized)", "warm (corpus reused)"):
            seconds, _ = kedro_run(project)
            record = list_records(project / RUNS_DIR)[-1]
            runs.append(
                {
                    "label": label,
                    "seconds": seconds,
                    "nodes": {n: v.seconds for n, v in record.nodes.items()},
                }
            )
        run_ids = sorted(p.name for p in (project / "data/06_models/model.safetensors").iterdir())
        models = [
            load_state(latest(project, "data/06_models/model.safetensors", r)) for r in run_ids
        ]
        metrics = [
            json.loads(latest(project, "data/08_reporting/metrics.json", r).read_text())
            for r in run_ids
        ]
        digests = [tensors_digest(m["weights"]) for m in models]
        parameters = sum(t.numel() for t in models[0]["weights"].values())

    splits = metrics[0]["splits"]
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, by `uv run python bench/default_run.py` (a fresh `git clone`, then `kedro run` twice).",
        "",
        "| run | wall time (s) | plan_corpus (s) | compute_features (s) | train_model (s) | transcribe + score (s) |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        n = run["nodes"]
        lines.append(
            f"| {run['label']} | {run['seconds']:.1f} | {n.get('plan_corpus', 0):.1f} | {n.get('compute_features', 0):.1f} | "
            f"{n.get('train_model', 0):.1f} | {n.get('transcribe', 0) + n.get('score', 0):.1f} |"
        )
    lines += [
        "",
        f"Model: {parameters:,} parameters. Node times come from the run records; wall time includes interpreter start and imports.",
        "",
        "| split | utterances | words | WER | CER | MER | WIL |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("train", "dev", "test"):
        s = splits[name]
        lines.append(
            f"| {name} | {s['utterances']} | {s['reference_words']} | {100 * s['wer']:.2f} % | {100 * s['cer']:.2f} % | {100 * s['mer']:.2f} % | {100 * s['wil']:.2f} % |"
        )
    lines += [
        "",
        f"Two runs in fresh processes: model tensor digests {'identical' if digests[0] == digests[1] else 'DIFFERENT'} (`{digests[0]}`), "
        f"metrics {'identical' if metrics[0] == metrics[1] else 'DIFFERENT'}.",
    ]
    write_section("default_run", lines)


if __name__ == "__main__":
    main()
