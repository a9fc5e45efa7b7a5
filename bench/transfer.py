"""Benchmark: `kedro repro push` then `pull` of the default run through a local S3 server, against
copying the same files with plain boto3 calls (what `aws s3 cp --recursive` does).

A moto S3 server runs on 127.0.0.1. The run's bundle (what push sends: the objects of its
manifest) is pushed, pushed again (it must send nothing), and pulled into a fresh git clone of the
project; then the same files are uploaded with boto3's ``upload_file`` and downloaded with
``download_file``, 10 at a time as the AWS CLI does. Both sides run in this process (no `kedro`
start-up), against the same server, each step with a new S3 session (loading botocore's models
and connecting is part of what a command pays). Results go between the `bench:transfer` markers of
docs/benchmarks.md.

    uv run --extra remote python bench/transfer.py [--project PATH]

``--project`` names a checkout that already holds a default `kedro run` (its latest run is
used); without it a fresh clone of this repository runs one first (minutes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from report import write_section

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from kedro_repro.record import RUNS_DIR, list_records  # noqa: E402
from kedro_repro.transfer import FsspecRemote, bundle_manifest, pull, push  # noqa: E402

ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"}
BUCKET = "bench-runs"
CLI_CONCURRENCY = 10  # the AWS CLI's default max_concurrent_requests


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


def replay_in(clone: Path, run_id: str) -> tuple[str, int, float]:
    """``kedro repro verify RUN --require bitwise`` in ``clone`` as a user with umask 077:
    the verdict line, the exit code and the seconds it took."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "repro", "verify", run_id, "--require", "bitwise"],
        cwd=clone,
        env=ENV,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0o077),
    )
    seconds = time.perf_counter() - start
    verdicts = [line for line in result.stdout.splitlines() if line.startswith("verdict:")]
    return (verdicts[-1] if verdicts else result.stderr[-300:]), result.returncode, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=None)
    parser.add_argument(
        "--verify",
        action="store_true",
        help="Then replay the pulled run in the clone under umask 077 (verify --require bitwise).",
    )
    options = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    with tempfile.TemporaryDirectory() as tmp:
        if options.project is None:
            project = Path(tmp) / "speech-repro"
            subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
            subprocess.run(
                [sys.executable, "-m", "kedro", "run"], cwd=project, env=ENV, check=True,
                capture_output=True,
            )  # fmt: skip
        else:
            project = options.project.resolve()
        record = list_records(project / RUNS_DIR)[-1]
        run_id = record.run_id
        which = "the default run" if record.env in (None, "local") else f"a --env {record.env} run"
        manifest = bundle_manifest(project, run_id, with_data=False)
        objects = {entry.digest: path for path, entry in manifest.files.items()}
        total = sum(manifest.files[p].size for p in objects.values())

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        url = f"s3://{BUCKET}/kedro-repro"

        def fresh() -> FsspecRemote:
            # A new connection each time, as each `kedro repro` command (a process) makes one.
            return FsspecRemote(url, {"endpoint_url": endpoint, "skip_instance_cache": True})

        try:
            push_s, first = timed(lambda: push(project, run_id, fresh()))
            again_s, again = timed(lambda: push(project, run_id, fresh()))
            clone = Path(tmp) / "clone"
            subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
            (clone / "conf" / "local").mkdir(parents=True, exist_ok=True)
            pull_s, pulled = timed(lambda: pull(clone, run_id, fresh()))
            verified = replay_in(clone, run_id) if options.verify else None

            copies = Path(tmp) / "copies"
            keys = {digest: f"plain/{digest.split(':')[1]}" for digest in objects}

            def copy(direction: str) -> None:
                # A new session and client each time too, as each `aws s3 cp` makes.
                plain = boto3.session.Session().client("s3", endpoint_url=endpoint)

                def one(digest: str) -> None:
                    if direction == "up":
                        plain.upload_file(str(project / objects[digest]), BUCKET, keys[digest])
                        return
                    target = copies / objects[digest]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    plain.download_file(BUCKET, keys[digest], str(target))

                with ThreadPoolExecutor(CLI_CONCURRENCY) as pool:
                    list(pool.map(one, objects))

            put_s, _ = timed(lambda: copy("up"))
            get_s, _ = timed(lambda: copy("down"))
        finally:
            server.stop()

    assert first.objects_transferred == len(objects), first
    assert again.objects_transferred == 0 and again.bytes_transferred == 0, again
    assert pulled.runs == [run_id] and pulled.objects_transferred == len(manifest.files), pulled
    mib = total / 2**20
    ours, plain = push_s + pull_s, put_s + get_s
    ratio = ours / plain
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores by "
        f"`uv run --extra remote python bench/transfer.py --project <checkout>"
        f"{' --verify' if options.verify else ''}`: "
        f"{which} ({run_id}): its bundle, {len(objects)} objects ({mib:.1f} MiB; raw data not "
        "included), "
        "through a moto S3 server on 127.0.0.1, in one process (no `kedro` start-up), each step "
        "with a fresh S3 session as a separate command would have; load "
        f"average {os.getloadavg()[0]:.1f} (other work on the machine).",
        "",
        "| step | kedro-repro (s) | MiB/s | plain boto3, 10 at a time (s) | MiB/s |",
        "|---|---|---|---|---|",
        f"| upload | push {push_s:.2f} | {mib / push_s:.1f} | upload_file {put_s:.2f} | "
        f"{mib / put_s:.1f} |",
        f"| download | pull {pull_s:.2f} | {mib / pull_s:.1f} | download_file {get_s:.2f} | "
        f"{mib / get_s:.1f} |",
        f"| both | {ours:.2f} | {2 * mib / ours:.1f} | {plain:.2f} | {2 * mib / plain:.1f} |",
        "",
        f"push + pull take {ratio:.2f}× the time of the plain copy (target: within 2×); "
        "they also check the run's bytes against its record before sending and hash every "
        "object before placing it, and pull seals and re-checks the run. A second push sent "
        f"{again.objects_transferred} objects ({again.bytes_transferred} bytes) in "
        f"{again_s:.2f} s: one listing of the remote, every object already there.",
    ]
    if verified is not None:
        lines += [
            "",
            f"Pulled into that git clone (another folder) and replayed there under umask 077 by "
            f"`kedro repro verify {run_id} --require bitwise`: {verified[0]} "
            f"(exit {verified[1]}, {verified[2]:.0f} s).",
        ]
    write_section("transfer", lines)
    assert ratio <= 2.0, f"push + pull take {ratio:.2f}x the plain copy's time"


if __name__ == "__main__":
    main()
