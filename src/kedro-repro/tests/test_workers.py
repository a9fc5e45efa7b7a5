"""Worker processes' environments: captured in the worker, redacted, read back, recorded."""

from __future__ import annotations

import subprocess
import sys

from kedro_repro import workers
from kedro_repro.record import WorkerEntry
from kedro_repro.redaction import REDACTED


def test_a_worker_records_its_own_environment_redacted(tmp_path):
    # Another process, with a variable of its own and a secret: what a second machine would be.
    code = (
        "import sys; from pathlib import Path; from kedro_repro import workers; "
        "workers.write_worker(Path(sys.argv[1]), 'node-1', {'node_rank': 1})"
    )
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "3", "TORCH_API_TOKEN": "s3cr3t-value"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, check=True)
    [entry] = workers.read_workers(tmp_path)
    assert entry["name"] == "node-1" and entry["details"] == {"node_rank": 1}
    assert entry["process"]["pid"] != 0 and entry["process"]["host"]
    variables = entry["environment"]["environment_variables"]
    assert variables["OMP_NUM_THREADS"] == "3"  # that process's value, not this one's
    assert variables["TORCH_API_TOKEN"] == REDACTED
    assert "s3cr3t-value" not in (tmp_path / "node-1.worker.json").read_text()
    assert WorkerEntry(**entry).environment.determinism_env["OMP_NUM_THREADS"] == "3"


def test_report_reaches_the_published_sink_and_nothing_outside_a_run(tmp_path):
    received = []
    workers.report([{"name": "ignored"}])  # no recorded run: nothing happens
    workers.publish(received.extend)
    try:
        workers.report([{"name": "node-0"}])
    finally:
        workers.publish(None)
    assert received == [{"name": "node-0"}]
