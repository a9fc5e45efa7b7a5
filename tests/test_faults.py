"""Faults and concurrency: no command overwrites a run's artifacts, unreadable records are named,
a live run is told from a dead one, and outputs get the umask's permissions.

One module project holds one real `kedro run --env test`, started with umask 022. The kill and
resume of a live run is tested with the other kill tests, in tests/test_runs.py; leftover
temporary files in tests/repro/test_atomic.py and test_checkpoints.py; verify's workdir in
tests/test_verify.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from kedro_repro.hashing import file_digest
from kedro_repro.processes import current_process
from kedro_repro.record import list_records, parse_record, run_liveness, status
from kedro_repro.session import RUNS_DIR
from speech_repro.cli import cli

from .conftest import copy_project


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("faults") / "speech-repro")
    subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--env", "test"],
        cwd=project, env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"},
        preexec_fn=lambda: os.umask(0o022), check=True, capture_output=True,
    )  # fmt: skip
    return project


@pytest.fixture(scope="module")
def run_id(project) -> str:
    return list_records(project / RUNS_DIR)[-1].run_id


def _repro(project: Path, *args: str):
    """``kedro repro <args>`` in this process (the CLI's start-up costs seconds a call)."""
    return CliRunner().invoke(
        cli, ["repro", *args], obj=SimpleNamespace(project_path=project), catch_exceptions=False
    )


def _data(project: Path) -> dict[str, str]:
    return {
        str(p.relative_to(project)): file_digest(p)
        for p in sorted((project / "data").rglob("*"))
        if p.is_file() and ".cache" not in p.parts
    }


def _model(project: Path, run_id: str) -> Path:
    return project / "data/06_models/model.safetensors" / run_id / "model.safetensors"


def test_export_never_overwrites_a_file_of_a_run_not_even_with_force(project, run_id):
    before = _data(project)
    ledger_file = project / "data/03_primary/test/split_lock.csv"  # unversioned, in the ledger
    new_in_versioned_folder = project / "data/06_models/model.safetensors/provenance.json"
    for target in (_model(project, run_id), ledger_file, new_in_versioned_folder):
        for force in ([], ["--force"]):
            result = _repro(project, "export", run_id, "--output", str(target), *force)
            assert result.exit_code != 0, (target, force)
            assert "run bundles are never modified" in result.output, result.output
    assert _data(project) == before
    assert not new_in_versioned_folder.exists()


def test_export_overwrites_an_existing_file_only_with_force(project, run_id, tmp_path):
    target = tmp_path / "provenance.json"
    target.write_text("mine")
    refused = _repro(project, "export", run_id, "--output", str(target))
    assert refused.exit_code != 0
    assert f"{target} exists; not overwriting it (pass --force to replace it)" in refused.output
    assert target.read_text() == "mine"
    assert _repro(project, "export", run_id, "--output", str(target), "--force").exit_code == 0
    assert json.loads(target.read_text())["entity"]


def test_runs_names_each_unreadable_record_and_lists_the_others(project, run_id):
    runs = project / RUNS_DIR
    good = (runs / run_id / "record.json").read_text()
    truncated, schemaless = runs / "2020-01-01T00.00.00.000Z", runs / "2020-01-02T00.00.00.000Z"
    try:
        truncated.mkdir()
        (truncated / "record.json").write_text(good[: len(good) // 2])
        schemaless.mkdir()
        (schemaless / "record.json").write_text('{"run_id": "2020-01-02T00.00.00.000Z"}\n')
        result = _repro(project, "runs")
    finally:
        shutil.rmtree(truncated, ignore_errors=True)
        shutil.rmtree(schemaless, ignore_errors=True)
    assert result.exit_code == 0, result.output
    problems = result.stderr.splitlines()
    assert len(problems) == 2, problems
    for line, bad in zip(problems, (truncated, schemaless), strict=True):
        match = re.fullmatch(r"unreadable: (?P<path>\S+): (?P<reason>.+)", line)
        assert match and match["path"] == str(bad / "record.json"), line
    assert "cannot be read as JSON" in problems[0]
    assert "is not a valid run record" in problems[1] and "schema_version" in problems[1]
    assert run_id in result.stdout  # the other runs are still listed


def test_the_model_file_gets_the_umasks_permissions(project, run_id):
    """The run was started with umask 022: every output file is 0644, the model too."""
    modes = {
        str(p.relative_to(project)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in (project / "data").rglob("*")
        if p.is_file() and ".cache" not in p.parts
    }
    assert modes[str(_model(project, run_id).relative_to(project))] == "0o644"
    assert set(modes.values()) == {"0o644"}, {k: v for k, v in modes.items() if v != "0o644"}


def test_the_record_names_its_process_and_a_reused_pid_is_not_alive(project, run_id):
    record = json.loads((project / RUNS_DIR / run_id / "record.json").read_text())
    assert record["process"].keys() == {"host", "pid", "start_time", "boot_id"}
    assert record["process"]["pid"] == record["pid"] and record["process"]["start_time"] > 0
    assert run_liveness(parse_record(record)) == "dead"  # that `kedro run` has ended
    me = current_process().to_dict()
    running = {**record, "status": "running", "pid": me["pid"], "process": me}
    assert run_liveness(parse_record(running)) == "alive"
    assert status(parse_record(running)) == "running"
    reused = parse_record({**running, "process": {**me, "start_time": me["start_time"] - 1}})
    assert run_liveness(reused) == "dead" and status(reused) == "crashed"
    elsewhere = parse_record({**running, "process": {**me, "host": "another-host"}})
    assert run_liveness(elsewhere) == "unknown"
    older = {k: v for k, v in running.items() if k != "process"}  # a record from before it
    assert run_liveness(parse_record(older)) == "alive"
