"""Environment capture: complete enough to reproduce a run, and never a carrier of secrets."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kedro_repro.environment import (
    REDACTED,
    capture_environment,
    redact,
    redact_command,
    selected_environment_variables,
)
from kedro_repro.hashing import bytes_digest, file_digest
from speech_repro.settings import REPRO
from tests.conftest import GIT

TOP_LEVEL_KEYS = [
    "python",
    "packages",
    "torch",
    "hardware",
    "determinism_env",
    "environment_variables",
    "git",
    "lock_files",
    "command",
    "hostname",
]

# Planted secrets: distinctive values that cannot occur in a record by accident.
SECRET_ENV = {
    "KEDRO_API_KEY": "sk-live-123-q7Zp",
    "TORCH_HUB_TOKEN": "tok-abc-4711-hub",
    "PYTHON_DB_PASSWORD": "pw-hunter2-9x",
    "HF_CREDENTIALS_PATH": "/secure/creds-8f3k.json",
    "speech_repro_client_secret": "lower-case-secret-55",  # not selected by prefix at all
    "SPEECH_REPRO_Secret_Salt": "mixed-case-salt-66",
    "KEDRO_MLFLOW_URI": "https://alice:url-pass-2024@mlflow.example.org/api",
}
SECRET_VALUES = [
    "sk-live-123-q7Zp",
    "tok-abc-4711-hub",
    "pw-hunter2-9x",
    "creds-8f3k",
    "lower-case-secret-55",
    "mixed-case-salt-66",
    "url-pass-2024",
    "argv-url-pass-77",
    "argv-token-88",
    "argv-key-99",
]
SECRET_ARGV = [
    "kedro",
    "run",
    "--data=s3://bob:argv-url-pass-77@bucket/raw",
    "--api-token",
    "argv-token-88",
    "API_KEY=argv-key-99",
    "--pipeline=train",
]
PLAIN_ENV = {"KEDRO_ENV": "local", "OMP_NUM_THREADS": "2", "MKL_CBWR": "AVX2"}
# Written out, not imported: the record's determinism section, in its order.
NUMERICS_VARIABLES = [
    "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_CBWR",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "PYTHONHASHSEED",
    "OPENBLAS_CORETYPE",
]


def _assert_no_secret(text: str) -> None:
    for secret in SECRET_VALUES:
        assert secret not in text, secret


@pytest.fixture
def planted(monkeypatch):
    for name, value in {**SECRET_ENV, **PLAIN_ENV}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", list(SECRET_ARGV))


def test_redact_masks_url_userinfo_whole():
    assert redact("https://user:pass@host/x") == f"https://{REDACTED}@host/x"
    assert redact("https://u:p@ssWORD@host/x") == f"https://{REDACTED}@host/x"
    assert redact("https://TOKEN@host") == f"https://{REDACTED}@host"
    assert redact("postgresql://u:p%40ss@db:5432/x and ftp://a:b@c") == (
        f"postgresql://{REDACTED}@db:5432/x and ftp://{REDACTED}@c"
    )
    for unchanged in ("https://host:8080/x", "plain", "a:b@c", ""):
        assert redact(unchanged) == unchanged


def test_variables_are_recorded_by_allowlist_and_the_rest_by_name():
    environ = {
        "KEDRO_ENV": "local",
        "kedro_lower": "not selected: prefixes are upper-case",
        "HOME": "/root",
        "MY_TOKEN": "not selected",
        "HF_TOKEN": "hf_abc",
        "CUDA_VISIBLE_DEVICES": "0",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "KMP_AFFINITY": "granularity=fine,compact",
        "KMP_SECRET_THING": "a family member with a secret name",
        "NCCL_ALGO": "Ring",
        "UV_INDEX_URL": "https://u:p@pypi.example/simple",
        "LD_LIBRARY_PATH": "/usr/lib",
        # the names of issue 12: none contains KEY/TOKEN/SECRET/PASSWORD/CREDENTIAL
        "SPEECH_REPRO_DB_PASS": "db-pass-1",
        "HF_HUB_PASSWD": "passwd-2",
        "KEDRO_GITHUB_PAT": "ghp_" + "x" * 36,
        "HF_HUB_AUTH": "auth-3",
        "CUDA_CREDS": "creds-4",
        "SPEECH_REPRO_KEY_PEM": "-----BEGIN PRIVATE KEY-----\nMIIpem5\n-----END PRIVATE KEY-----",
        "SPEECH_REPRO_AUTH": "Bearer bearer-6-abcdef",
        "SPEECH_REPRO_MODE": "fast",
    }
    assert selected_environment_variables(environ, REPRO.environment) == {
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "CUDA_CREDS": REDACTED,
        "CUDA_VISIBLE_DEVICES": "0",
        "HF_HUB_AUTH": REDACTED,
        "HF_HUB_PASSWD": REDACTED,
        "HF_TOKEN": REDACTED,
        "KEDRO_ENV": "local",
        "KEDRO_GITHUB_PAT": REDACTED,
        "KMP_AFFINITY": "granularity=fine,compact",
        "KMP_SECRET_THING": REDACTED,
        "LD_LIBRARY_PATH": "/usr/lib",
        "NCCL_ALGO": "Ring",
        "SPEECH_REPRO_AUTH": REDACTED,
        "SPEECH_REPRO_DB_PASS": REDACTED,
        "SPEECH_REPRO_KEY_PEM": REDACTED,
        "SPEECH_REPRO_MODE": REDACTED,
        "UV_INDEX_URL": REDACTED,
    }
    # The variables that change numerical results keep their values, whatever else is set.
    numerics = {name: f"setting-{i}" for i, name in enumerate(NUMERICS_VARIABLES)}
    assert selected_environment_variables(numerics) == dict(sorted(numerics.items()))
    # An OpenMP-family name keeps its value unless it names a password.
    assert selected_environment_variables({"GOMP_SPINCOUNT": "1", "GOMP_DB_PASSWORD": "pw"}) == {
        "GOMP_DB_PASSWORD": REDACTED,
        "GOMP_SPINCOUNT": "1",
    }


def test_command_redaction():
    assert redact_command(SECRET_ARGV) == [
        "kedro",
        "run",
        f"--data=s3://{REDACTED}@bucket/raw",
        "--api-token",
        REDACTED,
        f"API_KEY={REDACTED}",
        "--pipeline=train",
    ]


def test_capture_in_process_leaks_no_secret(planted, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    env = capture_environment(tmp_path, REPRO.environment)
    assert list(env) == TOP_LEVEL_KEYS
    text = json.dumps(env)
    _assert_no_secret(text)

    variables = env["environment_variables"]
    for name in ("KEDRO_API_KEY", "TORCH_HUB_TOKEN", "PYTHON_DB_PASSWORD", "HF_CREDENTIALS_PATH"):
        assert variables[name] == REDACTED
    assert variables["SPEECH_REPRO_Secret_Salt"] == REDACTED
    assert "speech_repro_client_secret" not in variables
    assert variables["KEDRO_MLFLOW_URI"] == REDACTED  # not on the allowlist: by name only
    for name, value in PLAIN_ENV.items():
        assert variables[name] == value  # allowlisted variables are kept verbatim
    assert list(variables) == sorted(variables)
    assert list(env["determinism_env"]) == NUMERICS_VARIABLES
    assert env["determinism_env"]["OMP_NUM_THREADS"] == "2"
    assert env["determinism_env"]["PYTHONHASHSEED"] is None  # unset, recorded as such
    assert env["command"][2] == f"--data=s3://{REDACTED}@bucket/raw"
    assert env["git"] is None  # tmp_path is no checkout


def test_capture_in_a_real_subprocess_leaks_no_secret(tmp_path):
    out = tmp_path / "env.json"
    code = (
        "import json, sys\n"
        "from kedro_repro.environment import capture_environment\n"
        f"open({str(out)!r}, 'w').write(json.dumps(capture_environment()))\n"
    )
    child_env = {**os.environ, **SECRET_ENV, **PLAIN_ENV}
    subprocess.run(
        [sys.executable, "-c", code, *SECRET_ARGV[2:]],
        env=child_env,
        check=True,
        timeout=60,
    )
    raw = out.read_bytes()
    _assert_no_secret(raw.decode())
    for secret in SECRET_VALUES:
        assert secret.encode() not in raw
    record = json.loads(raw)
    assert list(record) == TOP_LEVEL_KEYS
    assert record["environment_variables"]["KEDRO_API_KEY"] == REDACTED
    assert record["environment_variables"]["KEDRO_ENV"] == "local"
    assert record["command"][0] == "-c"
    assert record["command"][1:4] == [f"--data=s3://{REDACTED}@bucket/raw", "--api-token", REDACTED]


def test_packages_python_and_torch_sections():
    env = capture_environment()
    packages = env["packages"]
    assert list(packages) == sorted(packages)
    assert all(name == name.lower() for name in packages)
    for name in ("torch", "kedro", "blake3"):
        assert packages[name] == importlib.metadata.version(name)
    assert env["python"]["executable"] == sys.executable
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))

    section = env["torch"]
    assert section["version"] == str(torch.__version__)
    assert section["cuda_version"] == torch.version.cuda
    assert section["num_threads"] == torch.get_num_threads()
    assert section["num_interop_threads"] == torch.get_num_interop_threads()
    assert section["deterministic_algorithms"] == torch.are_deterministic_algorithms_enabled()
    assert section["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "get_num_threads" in section["parallel_info"]


def test_torch_section_follows_the_thread_setting():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert capture_environment()["torch"]["num_threads"] == 1
    finally:
        torch.set_num_threads(before)
    assert capture_environment()["torch"]["num_threads"] == before


def test_hardware_section_shape():
    hardware = capture_environment()["hardware"]
    assert hardware["logical_cpus"] == os.cpu_count()
    assert hardware["cpu_flags"] == sorted(hardware["cpu_flags"])
    if Path("/proc/meminfo").exists():
        assert hardware["total_memory_bytes"] > 0
    if torch.cuda.is_available():
        gpu = hardware["gpus"][0]
        major, minor = torch.cuda.get_device_capability(0)
        assert gpu["compute_capability"] == f"{major}.{minor}"
    else:
        assert hardware["gpus"] == []


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        [*GIT, *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


def test_git_and_lock_file_sections(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "uv.lock").write_text("version = 1\n")
    (repo / "code.py").write_text("x = 1\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD").strip()

    clean = capture_environment(repo, REPRO.environment)
    assert clean["git"] == {
        "commit": head,
        "branch": "main",
        "dirty": False,
        "diff_digest": None,
        "untracked_count": 0,
    }
    assert clean["lock_files"] == {"uv.lock": file_digest(repo / "uv.lock"), "flake.lock": None}

    (repo / "code.py").write_text("x = 2\n")
    (repo / "new.txt").write_text("untracked\n")
    dirty = capture_environment(repo)["git"]
    assert dirty["dirty"] is True
    assert dirty["commit"] == head
    assert dirty["untracked_count"] == 1
    diff = subprocess.run(
        ["git", "diff", "HEAD", "--no-color", "--no-ext-diff", "--binary"],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    assert dirty["diff_digest"] == bytes_digest(diff)

    (repo / "flake.lock").write_text("{}\n")
    locks = capture_environment(repo, REPRO.environment)["lock_files"]  # the project's lock files
    assert locks["flake.lock"] == file_digest(repo / "flake.lock")


def test_git_section_never_fails(tmp_path, monkeypatch):
    assert capture_environment(tmp_path)["git"] is None  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path))  # no git (nor nvidia-smi) on the PATH
    env = capture_environment(tmp_path)
    assert env["git"] is None
    assert env["hardware"]["driver_version"] is None
