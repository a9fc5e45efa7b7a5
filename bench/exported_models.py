"""Benchmark: exported models against the PyTorch model they came from, on a run's own audio.

For one run of the embedded digits corpus, exports the model as TorchScript and as ONNX with
`kedro repro export-model` (real processes), then decodes every utterance the run scored, one at a
time, with the PyTorch recogniser (`speech_repro.asr.recognizer`), the TorchScript file and the
ONNX file under onnxruntime: the largest log-probability difference from PyTorch, how many
decodings equal the run's own hypotheses, and the median time per utterance. Without `--project`
it makes a copy of the repository under a temporary folder and runs `kedro run --env test` in it.
Results go between the `bench:exported_models` markers of docs/benchmarks.md.

    uv run --extra onnx python bench/exported_models.py [--project DIR --run RUN_ID]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from report import write_section

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"}
KEDRO = [sys.executable, "-m", "kedro"]
COPIED = ["conf", "src", "pyproject.toml", ".telemetry", "uv.lock", ".gitignore"]


def _copy(destination: Path) -> Path:
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        elif source.exists():
            shutil.copy2(source, destination / name)
    (destination / "data").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    return destination


def _greedy(log_probs, vocabulary: list[str]) -> str:
    best = log_probs.argmax(-1).tolist()
    kept = [s for i, s in enumerate(best) if s != 0 and (i == 0 or s != best[i - 1])]
    return " ".join("".join(vocabulary[s] for s in kept).split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path)
    parser.add_argument("--run")
    args = parser.parse_args()
    import onnxruntime
    import pandas as pd
    import soundfile as sf
    import torch

    from kedro_repro.record import list_records
    from speech_repro.trained_model import load_trained, recognizer_of

    torch.set_num_threads(1)  # one utterance at a time, one thread: what a small service does
    scratch = Path(tempfile.mkdtemp(prefix="exported-models-"))
    project = args.project or _copy(scratch / "project")
    if args.project is None:
        subprocess.run([*KEDRO, "run", "--env", "test"], cwd=project, env=ENV, check=True,
                       capture_output=True)  # fmt: skip
    run_id = args.run or list_records(project / "data/09_runs")[-1].run_id
    record = json.loads((project / "data/09_runs" / run_id / "record.json").read_text())
    (hyp_file,) = [p for p in record["ledger"]["hypotheses"]["files"] if p.endswith(".csv")]
    hypotheses = pd.read_csv(project / hyp_file, keep_default_na=False, dtype=str)
    expected = dict(zip(hypotheses["utt_id"], hypotheses["hypothesis"], strict=True))
    wavs = {p.stem: p for p in (project / "data/01_raw").rglob("*.wav") if p.stem in expected}
    waveforms = {u: torch.from_numpy(sf.read(wavs[u], dtype="float32")[0]) for u in sorted(wavs)}

    files = {fmt: scratch / f"model{suffix}" for fmt, suffix in (("torchscript", ".pt"),
                                                                 ("onnx", ".onnx"))}  # fmt: skip
    for fmt, path in files.items():
        subprocess.run([*KEDRO, "repro", "export-model", run_id, "--format", fmt, "--output",
                        str(path)], cwd=project, env=ENV, check=True, capture_output=True)  # fmt: skip
    recognizer = recognizer_of(load_trained(project, run_id))
    vocabulary = recognizer.vocabulary.symbols
    scripted = torch.jit.load(str(files["torchscript"]))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(files["onnx"]), options,
                                           providers=["CPUExecutionProvider"])  # fmt: skip

    def pytorch(w: torch.Tensor) -> torch.Tensor:
        log_probs, lengths = recognizer.log_probs([w])
        return log_probs[0, : int(lengths[0])]

    runners = {
        "PyTorch (Recognizer)": pytorch,
        "TorchScript": lambda w: scripted(w),
        "ONNX (onnxruntime)": lambda w: torch.from_numpy(
            session.run(None, {"waveform": w.numpy()})[0]
        ),
    }
    rows = []
    with torch.inference_mode():
        reference = {u: pytorch(w) for u, w in waveforms.items()}
        for name, runner in runners.items():
            times, worst, same = [], 0.0, 0
            for utt_id, waveform in waveforms.items():
                start = time.perf_counter()
                out = runner(waveform)
                times.append(time.perf_counter() - start)
                worst = max(worst, float((out - reference[utt_id]).abs().max()))
                same += _greedy(out, vocabulary) == expected[utt_id]
            rows.append((name, worst, same, 1000 * statistics.median(times)))
    seconds = statistics.median(
        len(w) / recognizer.features.sample_rate for w in waveforms.values()
    )
    lines = [
        f"Measured {date.today()} on 2 cores, one torch/onnxruntime thread, by `uv run --extra onnx "
        f"python bench/exported_models.py`: run {run_id} (`kedro run --env test`), {len(waveforms)} "
        f"utterances (median {seconds:.2f} s), one at a time.",
        "",
        "| model | max abs log-prob diff from PyTorch | decodings equal to the run's hypotheses | median ms / utterance |",
        "|---|---|---|---|",
        *(f"| {n} | {d:.2g} | {s} / {len(waveforms)} | {t:.1f} |" for n, d, s, t in rows),
    ]
    write_section("exported_models", lines)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
