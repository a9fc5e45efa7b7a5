"""Benchmark: data preparation and one training epoch at 1x and 10x the default corpus.

For each scale, in a fresh clone: render the embedded corpus, run `data_processing`, then one
training epoch, each as its own `kedro run` process, recording wall time and peak RSS of that
process. Also compares log-mel throughput with torchaudio.compliance.kaldi.fbank on the same
audio. Writes the results between the `bench:data_scale` markers of docs/benchmarks.md.

    uv run python bench/data_scale.py            # 1x and 10x (about 10 minutes on 2 cores)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import soundfile as sf
import torch
import torchaudio
from report import write_section

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from speech_repro.asr.features import FeatureConfig, LogMel  # noqa: E402

BASE_UTTERANCES_PER_SPEAKER = 20


def timed_kedro(project: Path, *args: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `kedro run` process."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"kedro run {' '.join(args)} failed:\n{proc.stderr.read()[-3000:]}")
    return (
        seconds,
        usage.ru_maxrss / 1024,
    )  # ru_maxrss is in KiB on Linux (children incl. pool workers are separate)


def scale_run(scale: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "speech-repro"
        subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
        params = f"corpus.utterances_per_speaker={BASE_UTTERANCES_PER_SPEAKER * scale}"
        synth = timed_kedro(project, "--pipelines=embedded_corpus", f"--params={params}")
        prep = timed_kedro(
            project, "--pipelines=embedded_corpus,data_processing", f"--params={params}"
        )
        epoch = timed_kedro(project, "--pipelines=training", f"--params={params},training.epochs=1")
        manifest = pd.read_parquet(
            next((project / "data/02_intermediate/manifest.parquet").glob("*/*"))
        )
        lock = pd.read_csv(project / "data/03_primary/split_lock.csv")
        return {
            "scale": scale,
            "utterances": len(manifest),
            "hours": manifest["duration"].sum() / 3600,
            "train_utterances": int((lock["split"] == "train").sum()),
            "train_hours": manifest.set_index("utt_id")
            .loc[lock.loc[lock["split"] == "train", "utt_id"], "duration"]
            .sum()
            / 3600,
            "synth": synth,
            "prep": prep,
            "epoch": epoch,
        }


def feature_throughput(corpus: Path, count: int = 400) -> list[tuple[str, float, float]]:
    """Utterances/s and x real time of LogMel vs kaldi.fbank on the same audio, one thread.

    ``corpus`` is the embedded corpus folder, which holds one rendered folder per plan.
    """
    waves = [
        torch.from_numpy(sf.read(p, dtype="float32")[0])
        for p in sorted(corpus.glob("*/wav/*/*.wav"))[:count]  # one folder per plan
    ]
    seconds_of_audio = sum(len(w) for w in waves) / 16000
    logmel = LogMel(FeatureConfig())
    torch.set_num_threads(1)
    results = []
    for name, fn in [
        ("speech_repro LogMel (torchaudio MelSpectrogram, 40 mels)", logmel),
        (
            "torchaudio.compliance.kaldi.fbank (40 mels, 25/10 ms)",
            lambda w: torchaudio.compliance.kaldi.fbank(
                w[None], num_mel_bins=40, sample_frequency=16000
            ),
        ),
    ]:
        fn(waves[0])
        start = time.perf_counter()
        for w in waves:
            fn(w)
        elapsed = time.perf_counter() - start
        results.append((name, len(waves) / elapsed, seconds_of_audio / elapsed))
    return results


def main() -> None:
    runs = [scale_run(s) for s in (1, 10)]
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "p"
        subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
        timed_kedro(
            project, "--pipelines=embedded_corpus", "--params=corpus.utterances_per_speaker=5"
        )
        fbank = feature_throughput(project / "data/01_raw/digits")
    base, big = runs
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores by `uv run python bench/data_scale.py`. "
        "Each step is its own `kedro run` process in a fresh clone; peak RSS is that process's "
        "(the feature pool's worker processes are separate, one shard each in memory).",
        "",
        "| scale | utterances | audio (h) | step | wall (s) | utterances/s | × real time | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for label, key, utts, hours in [
            ("synthesize corpus", "synth", run["utterances"], run["hours"]),
            (
                "data preparation (render check + manifest + splits + features + stats)",
                "prep",
                run["utterances"],
                run["hours"],
            ),
            ("one training epoch", "epoch", run["train_utterances"], run["train_hours"]),
        ]:
            seconds, rss = run[key]
            lines.append(
                f"| {run['scale']}× | {utts:,} | {hours:.2f} | {label} | {seconds:.1f} | {utts / seconds:.0f} | {hours * 3600 / seconds:.0f} | {rss:.0f} |"
            )
    lines += [
        "",
        f"Peak RSS growth for 10× the data: data preparation {big['prep'][1] / base['prep'][1]:.2f}×, "
        f"one training epoch {big['epoch'][1] / base['epoch'][1]:.2f}× (target ≤ 1.2×).",
        "",
        "Log-mel throughput on the same 400 utterances, one thread:",
        "",
        "| features | utterances/s | × real time |",
        "|---|---|---|",
        *[f"| {name} | {ups:.0f} | {rt:.0f} |" for name, ups, rt in fbank],
    ]
    write_section("data_scale", lines)


if __name__ == "__main__":
    main()
