"""The notebook that explores a run, executed for real, and `kedro jupyter` in real processes.

One `kedro run --env test` per module; the notebook runs in a kernel of this virtual environment
against that project, as `kedro jupyter lab` would open it from the project's notebooks/ folder.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from kedro_repro.hashing import bytes_digest

from .conftest import PROJECT_ROOT, copy_project, free_port, process_group, run_kedro

NOTEBOOK = PROJECT_ROOT / "notebooks" / "explore_a_run.ipynb"
WORST = 5  # the notebook's default number of utterances to play


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy with its notebooks and one finished `kedro run --env test`."""
    root = copy_project(tmp_path_factory.mktemp("notebook") / "project")
    shutil.copytree(PROJECT_ROOT / "notebooks", root / "notebooks")
    run_kedro(root, "run", "--env", "test")
    return root


def _run_id(project: Path) -> str:
    (run_id,) = [p.name for p in (project / "data" / "09_runs").iterdir() if p.is_dir()]
    return run_id


def _execute(project: Path, run_id: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(project / "notebooks" / NOTEBOOK.name, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = parameters.source.replace('RUN = "latest"', f"RUN = {run_id!r}")
    # The kernel starts in the notebook's folder, as Jupyter starts it: the notebook finds the
    # project above it. "python3" is ipykernel's own spec: this interpreter, this environment.
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(project / "notebooks")}},
    ).execute()
    return notebook


def _outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]


def test_the_stored_notebook_has_no_outputs_and_a_parameter_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    (parameters,) = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert 'RUN = "latest"' in parameters.source


def test_the_notebook_shows_a_run_its_figures_and_its_worst_utterances(project):
    run_id = _run_id(project)
    notebook = _execute(project, run_id)  # raises CellExecutionError naming a failing cell
    outputs = _outputs(notebook)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"run {run_id}: stored bytes intact" in text
    assert "not saved by this run: none" in text
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 3  # learning curve, WER per split, WER per speaker
    assert all(base64.b64decode(f.data["image/png"]).startswith(b"\x89PNG") for f in figures)
    players = [
        o.data["text/html"] for o in outputs if "<audio" in o.get("data", {}).get("text/html", "")
    ]
    assert len(players) == WORST
    # Each player embeds the bytes of a WAV of the run's corpus, as its manifest recorded them.
    manifest = _manifest_digests(project, run_id)
    for html in players:
        (payload,) = re.findall(r"data:audio/x?-?wav;base64,([A-Za-z0-9+/=]+)", html)
        wav = base64.b64decode(payload)
        assert wav[:4] == b"RIFF"
        assert bytes_digest(wav) in manifest


def _manifest_digests(project: Path, run_id: str) -> set[str]:
    """The audio digests the run's manifest recorded."""
    import pandas as pd

    (path,) = (project / "data" / "02_intermediate" / "manifest.parquet" / run_id).iterdir()
    return set(pd.read_parquet(path)["digest"])


def test_the_notebook_refuses_a_run_whose_bytes_changed(project, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(project, copy, symlinks=True)
    run_id = _run_id(copy)
    (table,) = (copy / "data" / "08_reporting" / "wer_per_split.csv" / run_id).iterdir()
    table.write_text(table.read_text().replace("test,", "test,0.0001,", 1))
    with pytest.raises(CellExecutionError) as raised:
        _execute(copy, run_id)
    assert raised.value.ename == "ArtifactTamperedError"
    assert f"{run_id}: wer_per_split: " in raised.value.evalue
    assert "was modified" in raised.value.evalue


# --- kedro jupyter -------------------------------------------------------------------------


def _jupyter_env(tmp_path: Path) -> dict[str, str]:
    """Jupyter's folders in ``tmp_path``: kernels are installed there, not in the user's home."""
    return {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "1",
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }


def test_kedro_jupyter_setup_installs_the_project_kernel(project, tmp_path):
    run_kedro(project, "jupyter", "setup", env=_jupyter_env(tmp_path))
    spec = json.loads((tmp_path / "data/kernels/kedro_speech_repro/kernel.json").read_text())
    assert spec["argv"][0] == sys.executable  # this environment's interpreter
    assert spec["argv"][-2:] == ["--ext", "kedro.ipython"]  # loads the project in the kernel


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_kedro_jupyter_lab_serves_with_the_project_kernel(project, tmp_path):
    """Once failed with `NoneType: None` (jupyterlab was not installed; Kedro's error display
    loses the message): now it starts a server that answers."""
    port, token = free_port(), "test-token"
    args = ["--no-browser", f"--port={port}", "--ServerApp.port_retries=0"]
    args += ["--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:  # Jupyter refuses root without it (containers, CI)
        args.append("--allow-root")
    # Its own process group: kedro starts `python -m jupyter lab` as a child, ended with it.
    command = [sys.executable, "-m", "kedro", "jupyter", "lab", *args]
    with process_group(
        command, tmp_path / "lab.log", cwd=project, env=_jupyter_env(tmp_path)
    ) as server:
        answer, deadline = None, time.monotonic() + 120
        while answer is None and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            answer = _get_json(f"http://127.0.0.1:{port}/api")
        output = (tmp_path / "lab.log").read_text()
        assert answer is not None, f"no answer on port {port}:\n{output}"
        assert "version" in answer
        assert "NoneType: None" not in output
        specs = _get_json(f"http://127.0.0.1:{port}/api/kernelspecs?token={token}")
        assert specs is not None
        assert specs["default"] == "kedro_speech_repro"  # kedro's kernel, set up on the way
        assert "kedro_speech_repro" in specs["kernelspecs"]
