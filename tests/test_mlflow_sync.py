"""`kedro repro mlflow-sync` against a real MLflow tracking server on 127.0.0.1 (and a local store).

One project per module with a `kedro run --env test` and a two-seed sweep; one `mlflow server`
subprocess (SQLite backend, artifacts served from a temporary folder), ended at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kedro_repro.mlflow_sync import INSTALL_HINT, NAMESPACE_TAG, RUN_TAG
from kedro_repro.record import RUNS_DIR

from .conftest import GIT, copy_project, free_port, kedro_unchecked, process_group, run_kedro

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

SEEDS = [1, 2]
EXPERIMENT = "speech-repro"  # the project's name (REPRO.name)


def _runs(project: Path) -> list[str]:
    return sorted(p.name for p in (project / RUNS_DIR).iterdir() if p.is_dir())


def _record(project: Path, run_id: str) -> dict:
    return json.loads((project / RUNS_DIR / run_id / "record.json").read_text())


def _stored_json(project: Path, run_id: str, dataset: str) -> dict:
    (path,) = [
        p for p in _record(project, run_id)["ledger"][dataset]["files"] if p.endswith(".json")
    ]
    return json.loads((project / path).read_text())


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """One test-configuration run, then a sweep of two seeds (the tiny configuration's model)."""
    root = copy_project(tmp_path_factory.mktemp("mlflow") / "project")
    run_kedro(root, "run", "--env", "test")
    parameters = root / "conf" / "test" / "parameters.yml"
    parameters.write_text(parameters.read_text() + f"\nseed_sweep:\n  seeds: {SEEDS}\n")
    subprocess.run([*GIT, "commit", "-qam", "two seeds"], cwd=root, check=True)
    # KEDRO_ENV too: the sweep's namespaces are built from the environment's seed list.
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "KEDRO_ENV": "test"}
    run_kedro(root, "run", "--env", "test", "--pipelines", "seeds", env=env)
    return root


@pytest.fixture(scope="module")
def runs(project) -> tuple[str, str]:
    """(the test-configuration run, the seed sweep run)."""
    first, sweep = _runs(project)
    return first, sweep


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """A real `mlflow server` on 127.0.0.1; its URI. Stopped (process group) at the end."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--workers", "1"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{folder}/mlflow.db"]
    command += ["--artifacts-destination", str(folder / "artifacts")]
    uri = f"http://127.0.0.1:{port}"
    with process_group(command, folder / "server.log") as process:  # its workers end with it
        healthy, deadline = False, time.monotonic() + 120
        while not healthy and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
                    healthy = response.read().strip() == b"OK"
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        assert healthy, (folder / "server.log").read_text()
        yield uri


def _sync(project: Path, *args: str) -> list[dict]:
    return json.loads(run_kedro(project, "repro", "mlflow-sync", *args, "--json").stdout)


def _mlflow_runs(client: MlflowClient, run_id: str | None = None) -> list:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    query = f"tags.`{RUN_TAG}` = '{run_id}'" if run_id else ""
    return client.search_runs([experiment.experiment_id], filter_string=query)


def test_a_run_reaches_the_server_with_params_metrics_tags_and_artifacts(
    project, runs, server, tmp_path
):
    first, _ = runs
    (synced,) = _sync(project, first, "--tracking-uri", server)
    assert synced["action"] == "created" and synced["namespace"] is None
    client = MlflowClient(server)
    (run,) = _mlflow_runs(client, first)
    assert run.info.run_id == synced["mlflow_run_id"] and run.info.status == "FINISHED"
    record = _record(project, first)
    params = run.data.params
    assert params["training.epochs"] == "2" and params["model.rnn_hidden"] == "16"  # conf/test
    assert params["determinism.threads"] == "1" and params["split.method"] == "speaker_hash"
    metrics = run.data.metrics
    for split, scores in record["metrics"]["splits"].items():
        for name in ("wer", "cer", "mer", "wil"):
            assert metrics[f"{split}/{name}"] == pytest.approx(scores[name])
    intervals = _stored_json(project, first, "wer_summary")["splits"]
    for split, entry in intervals.items():
        if entry["ci_low"] is None:  # an interval over fewer than 2 speakers is not a number
            assert f"{split}/wer_ci_low" not in metrics
        else:
            assert metrics[f"{split}/wer_ci_low"] == pytest.approx(entry["ci_low"])
            assert metrics[f"{split}/wer_ci_high"] == pytest.approx(entry["ci_high"])
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD~1"], cwd=project, check=True, capture_output=True, text=True
    ).stdout.strip()  # the run came before the sweep's commit
    tags = run.data.tags
    assert tags[RUN_TAG] == first and tags["mlflow.source.git.commit"] == commit
    assert tags["kedro_repro.data_digest"] == record["data_snapshot"]["digest"]
    assert tags["kedro_repro.parameters_digest"] == record["parameters"]["digest"]
    assert tags["kedro_repro.determinism.mode"] == "strict"
    assert tags["kedro_repro.integrity"].startswith("intact")
    assert tags["kedro_repro.verify"] == "not verified"
    assert NAMESPACE_TAG not in tags
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"kedro_repro", "run_report", "learning_curve_plot", "speaker_wer_plot"} <= listed
    # What the server holds is the run's own bytes.
    downloaded = Path(
        client.download_artifacts(run.info.run_id, "kedro_repro/record.json", str(tmp_path))
    )
    assert downloaded.read_bytes() == (project / RUNS_DIR / first / "record.json").read_bytes()
    report = Path(client.download_artifacts(run.info.run_id, "run_report", str(tmp_path)))
    # The report folder: Markdown, the HTML page and the figures it embeds.
    assert {p.name for p in report.iterdir()} == {
        "run_report.md",
        "run_report.html",
        "learning_curve.png",
        "speaker_wer.png",
    }
    curve = client.list_artifacts(run.info.run_id, "learning_curve_plot")
    assert [a.path for a in curve] == ["learning_curve_plot/learning_curve.png"]


def test_a_seed_sweep_is_a_parent_run_with_one_child_per_seed(project, runs, server):
    _, sweep = runs
    synced = _sync(project, sweep, "--tracking-uri", server)
    assert [s["namespace"] for s in synced] == [None, *(f"seed_{s}" for s in SEEDS)]
    client = MlflowClient(server)
    found = {r.data.tags.get(NAMESPACE_TAG): r for r in _mlflow_runs(client, sweep)}
    assert set(found) == {None, *(f"seed_{s}" for s in SEEDS)}
    parent = found.pop(None)
    summary = _stored_json(project, sweep, "seed_summary")["splits"]
    for split, entry in summary.items():
        assert parent.data.metrics[f"{split}/wer_mean"] == pytest.approx(
            entry["across_seeds"]["mean"]
        )
    assert "seed_report" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    for namespace, child in found.items():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.params == {"namespace": namespace}
        scores = _stored_json(project, sweep, f"{namespace}.metrics")["splits"]
        assert child.data.metrics["test/wer"] == pytest.approx(scores["test"]["wer"])
        assert child.data.metrics["dev/cer"] == pytest.approx(scores["dev"]["cer"])
        listed = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"run_report", "learning_curve_plot", "speaker_wer_plot"} <= listed


def test_syncing_again_creates_nothing_new(project, runs, server):
    first_sync = _sync(project, "--tracking-uri", server)  # every finished run
    client = MlflowClient(server)
    before = {r.info.run_id: r for r in _mlflow_runs(client)}
    assert len(before) == 1 + 1 + len(SEEDS)
    again = _sync(project, "--tracking-uri", server)
    assert {s["action"] for s in again} == {"unchanged"}
    assert [s["mlflow_run_id"] for s in again] == [s["mlflow_run_id"] for s in first_sync]
    after = {r.info.run_id: r for r in _mlflow_runs(client)}
    assert after.keys() == before.keys()
    for run_id, run in after.items():
        assert run.data.metrics == before[run_id].data.metrics
        for name in run.data.metrics:  # one point per metric, not one per sync
            assert len(client.get_metric_history(run_id, name)) == 1


def test_a_half_synced_run_is_completed_not_duplicated(project, runs, server):
    first, _ = runs
    client = MlflowClient(server)
    _sync(project, first, "--tracking-uri", server)
    (run,) = _mlflow_runs(client, first)
    client.delete_tag(run.info.run_id, "kedro_repro.synced")  # as if a sync stopped midway
    (synced,) = _sync(project, first, "--tracking-uri", server)
    assert synced["action"] == "updated" and synced["mlflow_run_id"] == run.info.run_id
    (again,) = _mlflow_runs(client, first)
    assert again.data.metrics == run.data.metrics
    assert all(len(client.get_metric_history(run.info.run_id, m)) == 1 for m in run.data.metrics)
    assert len(client.list_artifacts(run.info.run_id, "run_report")) == 4  # md, html, 2 figures


def test_without_a_tracking_uri_runs_go_to_the_project_store(project, runs, tmp_path):
    first, _ = runs
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = run_kedro(project, "repro", "mlflow-sync", first, env=env)
    assert first in result.stdout and "created" in result.stdout
    client = MlflowClient(f"sqlite:///{project}/mlruns/mlflow.db")
    (run,) = _mlflow_runs(client, first)
    assert run.data.tags[RUN_TAG] == first
    stored = project / "mlruns" / "artifacts"  # beside the database, not in the working folder
    copied = stored / run.info.run_id / "artifacts" / "kedro_repro" / "record.json"
    assert copied.read_bytes() == (project / RUNS_DIR / first / "record.json").read_bytes()


def test_a_tampered_run_is_refused_before_anything_is_logged(project, runs, tmp_path):
    first, _ = runs
    copy = tmp_path / "project"
    subprocess.run(["cp", "-a", str(project), str(copy)], check=True)
    (stored,) = [
        p for p in _record(copy, first)["ledger"]["metrics"]["files"] if p.endswith(".json")
    ]
    (copy / stored).write_text((copy / stored).read_text().replace("1.0", "0.1", 1))
    store = f"sqlite:///{tmp_path}/mlflow.db"
    result = kedro_unchecked(copy, "repro", "mlflow-sync", first, "--tracking-uri", store)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"refusing syncing run {first}" in result.stderr and "metrics" in result.stderr
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_without_mlflow_the_command_says_how_to_install_it(project):
    # A real kedro process in which `import mlflow` fails, as where the extra is not installed.
    code = (
        "import sys; sys.modules['mlflow'] = None; "
        "from kedro.framework.cli import main; sys.argv = ['kedro', 'repro', 'mlflow-sync']; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"Error: {INSTALL_HINT}"
    assert "Traceback" not in result.stderr


def test_commands_that_read_records_do_not_import_mlflow(project):
    result = run_kedro(
        project,
        "repro",
        "runs",
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "PYTHONPROFILEIMPORTTIME": "1"},
    )
    imported = {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "kedro_repro.cli.mlflow_sync" in imported  # the command is registered, and light
    assert not {m for m in imported if m.split(".")[0] == "mlflow"}


def test_a_verification_after_the_sync_reaches_the_tags_on_the_next_sync(project, runs, server):
    # Last in this module: it notes a verification of the first run, which other tests sync.
    first, _ = runs
    client = MlflowClient(server)
    _sync(project, first, "--tracking-uri", server)
    run_kedro(project, "repro", "verify", first, "--require", "bitwise", "--quiet")
    shown = run_kedro(project, "repro", "show", first).stdout
    assert "verified     bitwise (" in shown and "full replay, commit " in shown
    (synced,) = _sync(project, first, "--tracking-uri", server)
    assert synced["action"] == "updated"  # the record is the same; what the tags say is not
    (run,) = _mlflow_runs(client, first)
    assert run.data.tags["kedro_repro.verify"].startswith("bitwise (")
    (again,) = _sync(project, first, "--tracking-uri", server)
    assert again["action"] == "unchanged"
