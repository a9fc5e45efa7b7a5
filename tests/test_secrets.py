"""No secret recorded: one real run with secrets planted in its environment and parameters.

The run, its record, its bundle, the runs log, the PROV export and ``kedro repro show`` are
searched byte for byte for every planted secret value; none may appear. The environment
variables that change numerics are recorded with their values, every other selected variable by
name only.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from kedro_repro.record import RECORD_FILE, list_records
from kedro_repro.session import RUNS_DIR
from speech_repro.cli import repro

from .conftest import copy_project, kedro_unchecked, run_kedro

PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCPlantedPemBody0Kx7Vq3Lz9Wm2Rt5Ys8Np"
PEM = f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n{PEM_BODY[::-1]}\n-----END PRIVATE KEY-----\n"
GITHUB_PAT = "ghp_PlantedGithubPat0123456789abcdefABCD"
HF_TOKEN = "hf_PlantedHubTokenValue0123456789abcdefg"

# Selected by prefix, but no name contains KEY/TOKEN/SECRET/PASSWORD/CREDENTIAL.
SECRET_ENV = {
    "SPEECH_REPRO_DB_PASS": "dbpass-planted-Q1w2e3",
    "HF_HUB_PASSWD": "hubpasswd-planted-R4t5y6",
    "KEDRO_GITHUB_PAT": GITHUB_PAT,
    "HF_HUB_AUTH": "hubauth-planted-U7i8o9",
    "CUDA_CREDS": "cudacreds-planted-P0a1s2",
    "SPEECH_REPRO_SIGNING_PEM": PEM,
    "SPEECH_REPRO_AUTH": "Bearer bearer-planted-D3f4g5",
    "UV_INDEX_URL": "https://uvtoken-planted-H6j7k8@pypi.example/simple",
    "KEDRO_TRACKING_URI": "https://u:p@ssWORD-planted-Z9x8@tracker.example/x",
}
# Variables known to change numerics or behaviour: recorded with their values.
NUMERICS_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_CBWR": "COMPATIBLE",
    "KMP_BLOCKTIME": "0",
    "PYTHONHASHSEED": "0",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
}
# Secrets in free-form parameters: the split salt (a string), and `relock` (free-form, read as a
# flag: any string but "true"/"1"/"yes" means false, so the run is unchanged).
PARAMS = f"split.salt=https://saltuser:saltpass-planted-M1n2@host/x,relock={HF_TOKEN}"

SECRET_VALUES = [
    *(v for k, v in SECRET_ENV.items() if k != "SPEECH_REPRO_SIGNING_PEM"),
    PEM_BODY,
    PEM_BODY[::-1],
    "bearer-planted-D3f4g5",
    "uvtoken-planted-H6j7k8",
    "ssWORD-planted-Z9x8",  # the part of a password after an "@" in it
    "saltpass-planted-M1n2",
    "saltuser",
    HF_TOKEN,
]


def _leaks(text: str | bytes, where: str) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [f"{secret!r} in {where}" for secret in SECRET_VALUES if secret.encode() in data]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("secrets") / "speech-repro")


@pytest.fixture(scope="module")
def run(project) -> dict:
    """One complete run with every secret planted; its console output and record."""
    result = run_kedro(
        project,
        "run",
        "--env",
        "test",
        "--params",
        PARAMS,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", **SECRET_ENV, **NUMERICS_ENV},
    )
    (summary,) = list_records(project / RUNS_DIR)
    record = json.loads((project / RUNS_DIR / summary.run_id / RECORD_FILE).read_text())
    return {"record": record, "console": result.stdout + result.stderr}


def test_no_file_the_run_wrote_holds_a_secret(project, run):
    assert run["record"]["status"] == "complete"
    leaks = [
        leak
        for path in sorted((project / "data").rglob("*"))
        if path.is_file()
        for leak in _leaks(path.read_bytes(), str(path.relative_to(project)))
    ]
    leaks += _leaks(run["console"], "the run's console output")
    assert not leaks, leaks


def test_parameters_are_recorded_redacted(run):
    parameters = run["record"]["parameters"]
    assert parameters["design"]["split"]["salt"] == "https://***redacted***@host/x"
    assert parameters["tunable"]["relock"] == "***redacted***"
    runtime = run["record"]["run_options"]["runtime_params"]
    assert runtime == {
        "split": {"salt": "https://***redacted***@host/x"},
        "relock": "***redacted***",
    }


def test_numerics_variables_have_values_and_the_others_only_names(run):
    variables = run["record"]["environment"]["environment_variables"]
    for name, value in NUMERICS_ENV.items():
        assert variables[name] == value, name
    for name in SECRET_ENV:
        assert variables[name] == "***redacted***", name
    assert run["record"]["environment"]["determinism_env"]["MKL_CBWR"] == "COMPATIBLE"


def test_export_and_show_print_no_secret(project, run, tmp_path):
    run_id = run["record"]["run_id"]
    exported = tmp_path / "prov.json"
    run_kedro(project, "repro", "export", run_id, "--output", str(exported))
    shown = run_kedro(project, "repro", "show", run_id).stdout
    as_json = CliRunner().invoke(
        repro, ["show", run_id, "--json"], obj=SimpleNamespace(project_path=project)
    )
    assert as_json.exit_code == 0, as_json.output
    leaks = _leaks(exported.read_bytes(), "the export") + _leaks(shown, "show")
    leaks += _leaks(as_json.output, "show --json")
    assert not leaks, leaks
    assert json.loads(exported.read_text())["prefix"]  # a real PROV document
    assert f"run {run_id}" in shown


def test_show_redacts_an_old_record_that_holds_secrets(project, run):
    """A record written before redaction existed (here: planted) is not printed verbatim."""
    record = json.loads(json.dumps(run["record"]))
    old_id = run["record"]["run_id"][:-4] + "999Z"  # unsealed, as a killed run's would be
    record.update(run_id=old_id, status="running", finished_at=None, duration_seconds=None)
    record["command"] = ["kedro", "run", "--params", f"token={GITHUB_PAT}"]
    record["error"] = f"RuntimeError: {SECRET_ENV['KEDRO_TRACKING_URI']} refused {PEM}"
    record["parameters"]["tunable"]["relock"] = SECRET_ENV["SPEECH_REPRO_AUTH"]
    record["environment"]["environment_variables"].update(SECRET_ENV)
    bundle = project / RUNS_DIR / old_id
    shutil.copytree(project / RUNS_DIR / run["record"]["run_id"], bundle)  # its code, snapshot
    try:
        (bundle / RECORD_FILE).write_text(json.dumps(record))
        for arguments in (["show", old_id], ["show", old_id, "--json"]):
            shown = CliRunner().invoke(repro, arguments, obj=SimpleNamespace(project_path=project))
            assert shown.exit_code == 0, shown.output
            assert f"{old_id}" in shown.output
            assert not _leaks(shown.output, " ".join(arguments))
    finally:
        shutil.rmtree(bundle)


def test_a_replay_or_continuation_refuses_parameters_recorded_redacted(project, run):
    """A redacted value is not the value the run used: running with it would be a silent change."""
    run_id = run["record"]["run_id"]
    refused = kedro_unchecked(project, "repro", "verify", run_id, "--quiet")
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "split.salt" in output and "relock" in output
    assert "redacted (they held a secret)" in output and "--params split.salt=" in output
    assert not _leaks(output, "verify output")
    continued = kedro_unchecked(
        project, "repro", "run", "--from-run", run_id, "--pipelines", "evaluation"
    )
    assert continued.returncode != 0
    assert "split.salt, relock redacted" in continued.stderr, continued.stderr
