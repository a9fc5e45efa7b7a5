"""The drift matrix: how far a replay of the default run is from the original, case by case.

In a fresh clone: (a) `kedro run` then `kedro repro verify` (fresh process, same machine);
(b) that run pushed to an S3 server on 127.0.0.1 (moto), pulled into another git clone in
another folder by a user with umask 077, and verified there; (c) a run killed with SIGKILL
mid-training, resumed, then verified; (d) a replay with 1 torch thread instead of 2. Every
verify runs with `--bisect` (first divergent step and module; nothing to do on a bitwise one).
Writes the table between the `bench:drift_matrix` markers of docs/reproducibility.md. CI's
own replay (tiny configuration, .ci/run) is the other row (b); row (e) needs a GPU.

    uv run --extra remote python bench/drift_matrix.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write_section

from speech_repro.asr.stats import format_interval

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}


def kedro(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *args], cwd=project, env=ENV, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kedro {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result


def latest_run(project: Path) -> str:
    return sorted(
        p.name for p in (project / "data/09_runs").iterdir() if (p / "record.json").exists()
    )[-1]


def verify(project: Path, run_id: str, *args: str, umask: int | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "kedro", "repro", "verify", run_id, "--json", "--require", "metric",
         "--bisect", *args],
        cwd=project, env=ENV, capture_output=True, text=True,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    ).stdout  # fmt: skip
    return json.loads(out[out.index("{") :])


def pulled_elsewhere(project: Path, run_id: str, colleague: Path) -> dict:
    """Push ``run_id`` to a moto S3 server on 127.0.0.1, pull it into a new clone at
    ``colleague`` under umask 077, and verify it there (row b)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    credentials = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(credentials)  # this process's boto3 and the kedro commands alike
    ENV.update(credentials)
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket="runs"
        )
        remote = (
            f"remote:\n  url: s3://runs/team\n  storage_options:\n    endpoint_url: {endpoint}\n"
        )
        subprocess.run(["git", "clone", "-q", str(project), str(colleague)], check=True)
        for where in (project, colleague):
            (where / "conf" / "local").mkdir(parents=True, exist_ok=True)
            (where / "conf" / "local" / "repro.yml").write_text(remote)
        kedro(project, "repro", "push", run_id)
        (project / "conf" / "local" / "repro.yml").unlink()  # the later rows run as before
        pulled = subprocess.run(
            [sys.executable, "-m", "kedro", "repro", "pull", run_id], cwd=colleague, env=ENV,
            capture_output=True, text=True, preexec_fn=lambda: os.umask(0o077),
        )  # fmt: skip
        if pulled.returncode != 0:
            raise RuntimeError(f"kedro repro pull failed:\n{pulled.stderr[-4000:]}")
        return verify(colleague, run_id, umask=0o077)
    finally:
        server.stop()


def kill_mid_training(project: Path) -> str:
    """Start a default run and SIGKILL it once it has checkpointed step 250; returns its id."""
    before = {p.name for p in (project / "data/09_runs").iterdir()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kedro", "run"],
        cwd=project,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while proc.poll() is None:
        runs = {p.name for p in (project / "data/09_runs").iterdir()} - before
        steps = [
            int(p.name[5:14])
            for r in runs
            for p in (project / "data/06_models/checkpoints" / r / "checkpoints").glob(
                "step-*.safetensors"
            )
        ]
        if steps and max(steps) >= 250:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    (run_id,) = {p.name for p in (project / "data/09_runs").iterdir()} - before
    return run_id


def row(label: str, result: dict) -> str:
    model = next((d for d in result["datasets"] if d["dataset"] == "model"), None)
    weight = (
        "-"
        if model is None
        else ("0" if model["max_abs_diff"] in (None, 0.0) else f"{model['max_abs_diff']:.3g}")
    )
    m = result.get("metric_test")
    wer = "0 (bitwise metrics)" if m is None else f"{m['delta']:+.4f} {format_interval(m, '+.4f')}"
    first = result.get("first_divergent_node") or "-"
    return f"| {label} | {result['overall']} | {first} | {weight} | {wer} | {bisected(result)} |"


def bisected(result: dict) -> str:
    """The bisection column: first divergent step and module, '-' when not bisected."""
    b = result.get("bisection")
    if not b:
        return "-"
    if result["overall"] == "bitwise":
        return "none (bitwise)"
    if b.get("first_divergent_step") is None:
        return b.get("note", "-")
    first = next((m for m in b["modules"] if not m["equal"]), None)
    if first is None:
        return f"step {b['first_divergent_step']}; no module"
    module = f"`{first['module']}` {first['kind']} {first['tensor']}"
    diff = f"max abs diff {first['max_abs_diff']:.2g}"
    return f"step {b['first_divergent_step']}; {module} ({diff})"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "speech-repro"
        subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
        kedro(project, "run")
        base = latest_run(project)
        rows = [row("(a) fresh process, same machine", verify(project, base))]
        rows.append(
            row(
                "(b) pushed to S3 (a moto server on 127.0.0.1), pulled into another git clone "
                "in another folder by a user with umask 077, verified there",
                pulled_elsewhere(project, base, Path(tmp) / "colleague"),
            )
        )
        killed = kill_mid_training(project)
        kedro(project, "repro", "resume", killed)
        rows.append(
            row(
                "(c) SIGKILL at step ≥ 250 of 600, then `kedro repro resume`",
                verify(project, latest_run(project)),
            )
        )
        rows.append(
            row(
                "(d) torch threads 1 instead of 2",
                verify(project, base, "--params", "determinism.threads=1"),
            )
        )
    write_section(
        "drift_matrix",
        [
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores by `uv run --extra remote python bench/drift_matrix.py` (default configuration; every verify with `--bisect`).",
            "",
            "| case | verdict | first divergent node | max abs weight diff | test WER delta [95 % speaker-bootstrap CI] | bisection: first divergent step; module |",
            "|---|---|---|---|---|---|",
            *rows,
            "| (b) fresh clone on a clean machine | bitwise, required by CI on every submission (tiny configuration, `.ci/run`) | - | 0 | 0 | - |",
            # the same path on the tiny configuration, on every test run
            "| (b) the same, tiny configuration | bitwise, required by tests/test_transfer.py on every test run | - | 0 | 0 | - |",
            "| (e) CPU vs GPU | not measured: no GPU was lent to this project yet | | | | |",
        ],
        doc=REPO / "docs/reproducibility.md",
    )


if __name__ == "__main__":
    main()
