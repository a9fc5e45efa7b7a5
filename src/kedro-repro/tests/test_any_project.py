"""``pip install kedro-repro`` gives any Kedro project run records, check, verify, diff and export.

A fresh two-node project that knows nothing of kedro-repro (no settings, no hooks, no imports)
gets its own virtual environment with only kedro, kedro-datasets' JSON dataset and this
distribution installed: no torch, no pandas, nothing of speech-repro. The plugin's entry points
alone make its runs recorded and verifiable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

DISTRIBUTION = Path(__file__).resolve().parents[1]  # src/kedro-repro
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]

PROJECT_FILES = {
    "pyproject.toml": """\
[tool.kedro]
package_name = "wordcount"
project_name = "wordcount"
kedro_init_version = "{kedro}"
source_dir = "src"
""",
    "conf/base/catalog.yml": """\
words:
  type: json.JSONDataset
  filepath: data/01_raw/words.json
kept:
  type: json.JSONDataset
  filepath: data/02_intermediate/kept.json
  versioned: true
counts:
  type: json.JSONDataset
  filepath: data/03_primary/counts.json
  versioned: true
""",
    "conf/base/parameters.yml": "selection:\n  min_length: 4\n  seed: 11\n  keep: 6\n",
    "conf/local/.gitkeep": "",
    # Log lines on stderr, so `--json` output on stdout is JSON alone.
    "conf/logging.yml": """\
version: 1
disable_existing_loggers: false
handlers:
  console: {class: logging.StreamHandler, level: INFO, stream: "ext://sys.stderr"}
root: {handlers: [console], level: INFO}
""",
    "data/01_raw/words.json": json.dumps(
        [
            "the",
            "quick",
            "brown",
            "fox",
            "jumps",
            "over",
            "the",
            "lazy",
            "dog",
            "while",
            "seven",
            "tired",
            "otters",
            "sleep",
        ]
    ),
    "src/wordcount/__init__.py": "",
    "src/wordcount/settings.py": '"""No kedro-repro here: the plugin comes by entry point."""\n',
    "src/wordcount/pipeline_registry.py": '''\
import random

from kedro.pipeline import Pipeline, node


def select(words, selection):
    """A seeded sample of the long words."""
    long = sorted(w for w in words if len(w) >= selection["min_length"])
    return random.Random(selection["seed"]).sample(long, min(selection["keep"], len(long)))


def count(words):
    """Letters per kept word."""
    return {w: len(w) for w in words}


def register_pipelines():
    pipeline = Pipeline([
        node(select, ["words", "params:selection"], "kept", name="select"),
        node(count, "kept", "counts", name="count"),
    ])
    return {"__default__": pipeline}
''',
}


def _run(command: list[str], cwd: Path, env: dict[str, str], check: bool = True):
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """The project, its environment's ``bin`` folder and the process environment to run it in."""
    uv = shutil.which("uv")
    assert uv, "uv builds the fresh project's environment (.ci/run installs it)"
    root = tmp_path_factory.mktemp("wordcount")
    for name, text in PROJECT_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{kedro}", version("kedro")))
    # This process's variables (certificates, uv's cache) without its environment's.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH", "PYTHONHOME"}
    } | {"KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"}
    venv = root / ".venv"
    _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], root, env)
    _run(
        [
            uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
            str(DISTRIBUTION), f"kedro=={version('kedro')}",
            f"kedro-datasets[json-jsondataset]=={version('kedro-datasets')}",
        ],
        root, env,
    )  # fmt: skip
    (root / ".gitignore").write_text(".venv/\ndata/\n!data/01_raw/\n")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "wordcount"]):
        _run([*GIT, *command], root, env)
    return root, venv / "bin", env


def _kedro(project, *args: str, check: bool = True):
    root, bin_dir, env = project
    return _run([str(bin_dir / "kedro"), *args], root, env, check=check)


def _runs(project) -> list[dict]:
    return json.loads(_kedro(project, "repro", "runs", "--json").stdout)


def test_the_fresh_environment_has_nothing_of_speech_or_torch(project):
    _, bin_dir, env = project
    listed = _run([str(bin_dir / "python"), "-m", "pip", "list"], project[0], env, check=False)
    packages = _run(
        [str(bin_dir / "python"), "-c", "import importlib.metadata as m; "
         "print('\\n'.join(sorted(d.metadata['Name'].lower() for d in m.distributions())))"],
        project[0], env,
    ).stdout.split()  # fmt: skip
    assert "kedro-repro" in packages, listed.stdout
    assert not {"torch", "pandas", "speech-repro", "numpy"} & set(packages)


def test_two_runs_are_recorded_checked_diffed_verified_and_exported(project, tmp_path):
    root = project[0]
    _kedro(project, "run")
    _kedro(project, "run", "--params", "selection.seed=12")
    first, second = _runs(project)
    assert first["status"] == second["status"] == "complete"
    assert first["params_digest"] != second["params_digest"]

    record = json.loads((root / "data/09_runs" / first["run_id"] / "record.json").read_text())
    assert set(record["ledger"]) == {"kept", "counts"}
    assert record["inputs"]["words"]["digest"].startswith("blake3:")
    assert record["seeds"] == {"selection.seed": 11}
    assert record["environment"]["torch"] is None  # not installed, not imported
    kept = json.loads(
        (root / f"data/02_intermediate/kept.json/{first['run_id']}/kept.json").read_text()
    )
    assert len(kept) == 6

    assert " INTACT " in _kedro(project, "repro", "check", first["run_id"]).stdout

    diff = _kedro(project, "repro", "diff", first["run_id"], second["run_id"]).stdout
    assert "selection.seed: 11 -> 12" in diff

    verified = _kedro(project, "repro", "verify", first["run_id"], "--require", "bitwise")
    assert "verdict: bitwise" in verified.stdout, verified.stdout + verified.stderr

    provenance = tmp_path / "prov.json"
    _kedro(project, "repro", "export", first["run_id"], "--output", str(provenance))
    document = json.loads(provenance.read_text())
    assert "urn:kedro-repro:" in document["prefix"].values()  # no REPRO: the defaults
    activities = {key.split(":", 1)[1] for key in document["activity"]}
    run = f"run/{first['run_id']}"
    assert {run, f"{run}/node/select", f"{run}/node/count"} <= activities, activities


def test_a_changed_stored_byte_is_named_by_check(project):
    """The record's digests are checked against the bytes, in any project."""
    root = project[0]
    _kedro(project, "run")
    run_id = _runs(project)[-1]["run_id"]
    stored = root / f"data/03_primary/counts.json/{run_id}/counts.json"
    stored.write_text(stored.read_text().replace("5", "6", 1))
    result = _kedro(project, "repro", "check", run_id, check=False)
    assert result.returncode != 0
    assert "counts.json" in result.stdout + result.stderr


def test_a_run_pushed_to_a_folder_and_pulled_into_a_clone_verifies_bitwise(project, tmp_path):
    """push/pull know nothing of the project: any Kedro project's run travels, without s3fs."""
    root, bin_dir, env = project
    _kedro(project, "run", "--params", "selection.seed=13")
    run_id = _runs(project)[-1]["run_id"]
    remote = tmp_path / "remote"
    pushed = json.loads(
        _kedro(project, "repro", "push", run_id, str(remote), "--with-data", "--json").stdout
    )
    assert pushed["objects_transferred"] > 0 and pushed["runs"] == [run_id]

    clone = tmp_path / "clone"
    _run([*GIT, "clone", "-q", str(root), str(clone)], tmp_path, env)
    kedro = str(bin_dir / "kedro")
    _run([kedro, "repro", "pull", run_id, str(remote), "--with-data"], clone, env)
    assert " INTACT " in _run([kedro, "repro", "check", run_id], clone, env).stdout
    verified = _run([kedro, "repro", "verify", run_id, "--require", "bitwise"], clone, env)
    assert "verdict: bitwise" in verified.stdout, verified.stdout + verified.stderr
