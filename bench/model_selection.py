"""Benchmark: declared model selection and a lexicon on a small split of few speakers.

A fresh clone gets one extra environment (``bench_selection``): the embedded digits corpus with
12 speakers (4 accents x 3 voices, 20 utterances each), 2 speakers for dev and 2 for test, a
half-width model (64 channels, 64 GRU units) trained for 30 epochs on one thread (the 2 cores are
shared), and ``evaluation.lexicon`` set to the eleven digit words. One full ``kedro run``, then
three runs of the training and evaluation pipelines on the same features, differ only in
``training.selection``:

- ``last``: the final step's weights (the project's default), dev WER once per epoch;
- ``best_dev_wer``: the epoch with the lowest dev WER;
- ``best_dev_wer`` with ``patience: 5``: the same, stopping after 5 epochs without improvement;
- ``last`` with ``eval_every_steps: 0``: no dev evaluation, to measure what the evaluations cost.

For each: the selected step, dev and test WER raw and lexicon-constrained, and train_model's time
from the run record. Writes between the ``bench:model_selection`` markers of docs/benchmarks.md.

    uv run python bench/model_selection.py
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

REPO = Path(__file__).resolve().parents[1]
ENV = "bench_selection"
DIGITS = ["zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PARAMETERS = f"""\
corpus:
  accents: [en-US, en-GB-scotland, en-029, en-GB-x-rp]
  variants: [m1, m3, f2]
  utterances_per_speaker: 20

split:
  method: assigned
  assigned:
    dev: [en-us_f2, en-gb-x-rp_m1]
    test: [en-029_m3, en-gb-scotland_f2]

training:
  epochs: 30
  batch_size: 16
  checkpoint_every_steps: 0

model:
  conv_channels: 64
  rnn_hidden: 64

determinism:
  threads: 1

evaluation:
  lexicon: {json.dumps(DIGITS)}
"""
RUNS = {
    "last (default)": [],
    "best_dev_wer": ["training.selection.criterion=best_dev_wer"],
    "best_dev_wer, patience 5": [
        "training.selection.criterion=best_dev_wer",
        "training.selection.patience=5",
    ],
    "last, no dev evaluation": ["training.selection.eval_every_steps=0"],
}


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "speech-repro"
        subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
        (project / "conf" / ENV).mkdir()
        (project / "conf" / ENV / "parameters.yml").write_text(PARAMETERS)
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
        for index, (name, overrides) in enumerate(RUNS.items()):
            params = ["--params", ",".join(overrides)] if overrides else []
            # The first run prepares the data; the others train and evaluate on its features.
            pipelines = ["--pipelines", "training,evaluation"] if index else []
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "kedro", "run", "--env", ENV, *pipelines, *params],
                cwd=project, env=env, capture_output=True, check=True,
            )  # fmt: skip
            wall = time.perf_counter() - start
            results[name] = {"wall": wall, **_latest_run(project)}
            print(f"{name}: {wall:.1f} s", file=sys.stderr)

    first = next(iter(results.values()))
    lines = [
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores by "
        "`uv run python bench/model_selection.py`: the embedded corpus with 12 speakers "
        "(4 accents x 3 voices, 20 utterances each), 2 speakers in dev and 2 in test "
        f"({first['sizes']['dev']} and {first['sizes']['test']} utterances), "
        f"{first['sizes']['train']} training utterances, a half-width model (64 channels, 64 GRU "
        f"units) for 30 epochs ({first['selection']['planned_steps']} steps) on 1 thread, "
        "lexicon: the 11 digit words. "
        "WER is raw greedy output; constrained maps each word to the closest lexicon word.",
        "",
        "| selection | selected step | stopped early | dev WER | dev constrained | test WER "
        "| test constrained | train_model (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        s, splits = r["selection"], r["splits"]
        stopped = f"at step {s['last_step']}" if s["stopped_early"] else "no"
        lines.append(
            f"| {name} | {s['selected_step']} | {stopped} | {splits['dev']['wer']:.2%} "
            f"| {splits['dev']['constrained_wer']:.2%} | {splits['test']['wer']:.2%} "
            f"| {splits['test']['constrained_wer']:.2%} | {r['train_seconds']:.1f} |"
        )
    curve = first["selection"]["evaluations"]
    lines += [
        "",
        "Dev WER per epoch (the `last` run; every run trains these same weights until it stops): "
        + ", ".join(f"{e['dev_wer']:.1%}" for e in curve)
        + ".",
        "",
        f"Reasons recorded: {'; '.join(r['selection']['reason'] for r in results.values())}.",
        "",
    ]
    write_section("model_selection", lines)


def _latest_run(project: Path) -> dict:
    """Selection, metrics, split sizes and train_model seconds of the newest run."""
    runs = project / "data/09_runs"
    run_id = max(p.name for p in runs.iterdir() if p.is_dir())
    record = json.loads((runs / run_id / "record.json").read_text())
    metrics = record["metrics"]
    return {
        "selection": metrics["selection"],
        "splits": metrics["splits"],
        "sizes": {split: m["utterances"] for split, m in metrics["splits"].items()},
        "train_seconds": record["nodes"]["train_model"]["seconds"],
    }


if __name__ == "__main__":
    main()
