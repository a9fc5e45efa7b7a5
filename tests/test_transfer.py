"""`kedro repro push` / `pull`: a test run travels through a real S3-compatible server (moto, on
127.0.0.1) and a folder remote into git clones of the project, and verifies bitwise there.

One `kedro run --env test` for the module; every other call is a `kedro repro` command.
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

import pytest

from kedro_repro.hashing import bytes_digest, file_digest
from kedro_repro.record import RUNS_DIR
from kedro_repro.transfer import FolderRemote, TransferError, object_key, pull, push
from tests.conftest import GIT, copy_project, run_kedro

boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

BUCKET = "speech-runs"
RAW = "data/01_raw/digits-test"


def _kedro(project: Path, *args: str, env: dict, umask: int | None = None):
    """``kedro <args>`` in ``project`` with ``env``, under ``umask`` (another user's) if given."""
    return subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env={**env, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with one bucket; yields the environment that reaches it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    empty = tmp_path_factory.mktemp("aws") / "none"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(empty),  # nothing of the user's own AWS setup
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
    }
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    yield {"endpoint": endpoint, "env": env, "client": client}
    server.stop()


def _configure(project: Path, url: str, endpoint: str) -> None:
    """The project's default remote, as a user sets it: conf/local/repro.yml."""
    (project / "conf" / "local").mkdir(parents=True, exist_ok=True)
    (project / "conf" / "local" / "repro.yml").write_text(
        f"remote:\n  url: {url}\n  storage_options:\n    endpoint_url: {endpoint}\n"
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory, s3) -> tuple[Path, str]:
    """A project copy (a git checkout) with one test run, its default remote the S3 bucket."""
    project = copy_project(tmp_path_factory.mktemp("transfer") / "origin")
    run_kedro(project, "run", "--env", "test")
    run_id = next(p.name for p in (project / RUNS_DIR).iterdir() if p.is_dir())
    _configure(project, f"s3://{BUCKET}/team", s3["endpoint"])
    return project, run_id


def _clone(source: Path, destination: Path) -> Path:
    """Another clone of the project, in another folder: what a colleague has."""
    subprocess.run([*GIT, "clone", "-q", str(source), str(destination)], check=True)
    (destination / "conf" / "local").mkdir(parents=True, exist_ok=True)
    return destination


def _pushed(project: Path, run_id: str, *args: str, env: dict) -> dict:
    result = _ok(_kedro(project, "repro", "push", run_id, *args, "--json", env=env))
    return json.loads(result.stdout)


def test_a_run_pushed_to_s3_and_pulled_into_a_clone_with_another_umask_verifies_bitwise(
    source, s3, tmp_path
):
    project, run_id = source
    first = _pushed(project, run_id, env=s3["env"])  # the configured default remote
    assert first["remote"] == f"s3://{BUCKET}/team"
    assert first["objects_transferred"] > 10 and first["objects_skipped"] == 0
    assert first["manifests_written"] == [run_id]
    keys = {
        o["Key"] for o in s3["client"].list_objects_v2(Bucket=BUCKET, Prefix="team/")["Contents"]
    }
    assert f"team/runs/{run_id}.json" in keys
    model = json.loads((project / RUNS_DIR / run_id / "record.json").read_text())["ledger"]["model"]
    ((model_path, model_digest),) = model["files"].items()
    assert f"team/{object_key(model_digest)}" in keys

    again = _ok(_kedro(project, "repro", "push", run_id, env=s3["env"]))
    assert "nothing sent" in again.stdout and "manifest unchanged" in again.stdout

    clone = _clone(project, tmp_path / "colleague")
    _configure(clone, f"s3://{BUCKET}/team", s3["endpoint"])
    pulled = _ok(_kedro(clone, "repro", "pull", run_id, env=s3["env"], umask=0o077))
    assert "placed and sealed" in pulled.stdout
    placed = clone / model_path
    assert file_digest(placed) == model_digest
    assert stat.S_IMODE(placed.stat().st_mode) == 0o600  # the pulling user's umask, not ours
    assert not (clone / RAW).exists()  # raw data only with --with-data
    secret = "testing-secret"
    for path in (clone / RUNS_DIR).rglob("*"):
        assert not path.is_file() or secret not in path.read_text(errors="replace")

    verified = _ok(
        _kedro(clone, "repro", "verify", run_id, "--require", "bitwise", env=s3["env"], umask=0o077)
    )
    assert "verdict: bitwise" in verified.stdout

    repeat = _ok(_kedro(clone, "repro", "pull", run_id, "--json", env=s3["env"]))
    assert json.loads(repeat.stdout)["objects_transferred"] == 0  # everything already here


def test_a_corrupted_object_on_s3_is_refused_by_name_and_nothing_is_placed(source, s3, tmp_path):
    project, run_id = source
    url = f"s3://{BUCKET}/tampered"  # given on the command line; the endpoint from AWS's variable
    env = {**s3["env"], "AWS_ENDPOINT_URL": s3["endpoint"]}
    _pushed(project, run_id, url, env=env)
    model = json.loads((project / RUNS_DIR / run_id / "record.json").read_text())["ledger"]["model"]
    ((model_path, model_digest),) = model["files"].items()
    key = object_key(model_digest)
    s3["client"].put_object(Bucket=BUCKET, Key=f"tampered/{key}", Body=b"not the model")

    clone = _clone(project, tmp_path / "receiver")
    refused = _kedro(clone, "repro", "pull", run_id, url, env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert key in refused.stderr and model_path in refused.stderr
    assert "corrupt" in refused.stderr and "Traceback" not in refused.stderr
    assert not (clone / model_path).exists()
    assert not (clone / RUNS_DIR / run_id / "record.json").exists()  # the run is not here


def test_a_folder_remote_brings_the_raw_data_only_with_with_data(source, s3, tmp_path):
    project, run_id = source
    remote = tmp_path / "shared" / "runs"
    timed = {**s3["env"], "PYTHONPROFILEIMPORTTIME": "1"}
    result = _ok(
        _kedro(project, "repro", "push", run_id, str(remote), "--with-data", "--json", env=timed)
    )
    sent = json.loads(result.stdout)
    assert sent["remote"] == str(remote)
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "kedro_repro" in imported and not imported & {"torch", "scipy", "pandas"}
    raw = sorted(
        p.relative_to(project).as_posix() for p in (project / RAW).rglob("*") if p.is_file()
    )
    assert len([p for p in raw if p.endswith(".wav")]) > 10

    clone = _clone(project, tmp_path / "cluster")
    without = _ok(_kedro(clone, "repro", "pull", run_id, str(remote), "--json", env=s3["env"]))
    assert not (clone / RAW).exists()
    fetched = json.loads(without.stdout)["objects_transferred"]

    with_data = _ok(
        _kedro(clone, "repro", "pull", run_id, str(remote), "--with-data", "--json", env=s3["env"])
    )
    document = json.loads(with_data.stdout)
    assert document["objects_transferred"] == len(raw) + 1  # the data, and the split lock
    assert document["objects_skipped"] == fetched  # the bundle was already here
    for path in raw:
        assert (clone / path).read_bytes() == (project / path).read_bytes()
    _ok(_kedro(clone, "repro", "check", run_id, env=s3["env"]))


def test_a_manifest_naming_a_file_outside_the_run_is_refused(source, s3, tmp_path):
    project, run_id = source
    remote = tmp_path / "remote"
    _pushed(project, run_id, str(remote), env=s3["env"])
    manifest = remote / "runs" / f"{run_id}.json"
    document = json.loads(manifest.read_text())
    some = next(iter(document["files"].values()))
    document["files"]["src/speech_repro/settings.py"] = some  # code a pull must never write
    manifest.write_text(json.dumps(document))
    clone = _clone(project, tmp_path / "victim")
    with pytest.raises(TransferError, match=re.escape("src/speech_repro/settings.py")):
        pull(clone, run_id, FolderRemote(remote))
    assert not (clone / RUNS_DIR).exists()

    # A forged record that claims the file as an output of the run does not make it data.
    record = json.loads((project / RUNS_DIR / run_id / "record.json").read_text())
    record["ledger"]["model"]["files"]["src/speech_repro/settings.py"] = some["digest"]
    forged = json.dumps(record).encode()
    digest = bytes_digest(forged)
    (remote / object_key(digest)).parent.mkdir(parents=True, exist_ok=True)
    (remote / object_key(digest)).write_bytes(forged)
    document["record"] = digest
    document["files"][f"{RUNS_DIR}/{run_id}/record.json"]["digest"] = digest
    manifest.write_text(json.dumps(document))
    with pytest.raises(TransferError, match=re.escape("src/speech_repro/settings.py")):
        pull(clone, run_id, FolderRemote(remote))
    assert not (clone / RUNS_DIR).exists()
    shutil.rmtree(remote)


def test_a_run_from_a_dirty_tree_is_sealed_only_with_trust_patch_and_brings_its_inputs_run(
    source, s3, tmp_path
):
    project, run_id = source
    notes = project / "NOTES.md"  # untracked, not ignored: the tree is dirty, a patch is stored
    notes.write_text("a local change\n")
    try:
        run_kedro(project, "repro", "run", "--from-run", run_id, "--pipelines", "evaluation")
    finally:
        notes.unlink()
    rerun = sorted(p.name for p in (project / RUNS_DIR).iterdir() if p.is_dir())[-1]
    record = json.loads((project / RUNS_DIR / rerun / "record.json").read_text())
    assert record["code"]["patch"] and run_id in record["load_versions"].values()
    remote = tmp_path / "remote"
    sent = _pushed(project, rerun, str(remote), env=s3["env"])
    assert sent["runs"] == [run_id, rerun]  # the run whose model it evaluated travels with it

    clone = _clone(project, tmp_path / "reviewer")
    refused = _kedro(clone, "repro", "pull", rerun, str(remote), env=s3["env"])
    assert refused.returncode == 1 and "--trust-patch" in refused.stderr, refused.stderr
    assert "patch.diff" in refused.stderr
    assert not (clone / RUNS_DIR / rerun / "record.json").exists()
    assert (clone / RUNS_DIR / rerun / "code" / "patch.diff").is_file()  # there to be read

    _ok(_kedro(clone, "repro", "pull", rerun, str(remote), "--trust-patch", env=s3["env"]))
    checked = json.loads(_ok(_kedro(clone, "repro", "check", "--json", env=s3["env"])).stdout)
    assert {r["run_id"]: r["verdict"] for r in checked["runs"]} == {
        run_id: "intact",
        rerun: "intact",
    }


KILLED_PULL = """
import os, shutil, signal, sys
from pathlib import Path
from kedro_repro.transfer import FolderRemote, pull

class Dying(FolderRemote):
    fetched = 0

    def fetch(self, key, destination):
        Dying.fetched += 1
        if Dying.fetched == 4:  # half of this object written, then the process is killed
            data = (self.root / key).read_bytes()
            Path(destination).write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        super().fetch(key, destination)

pull(Path(sys.argv[1]), sys.argv[2], Dying(Path(sys.argv[3])))
"""


def test_a_pull_killed_midway_leaves_no_torn_file_and_no_run_and_a_second_pull_completes(
    source, tmp_path
):
    project, run_id = source
    remote = tmp_path / "remote"
    push(project, run_id, FolderRemote(remote))
    clone = _clone(project, tmp_path / "interrupted")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_PULL, str(clone), run_id, str(remote)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    manifest = json.loads((remote / "runs" / f"{run_id}.json").read_text())["files"]
    files = [p for p in (clone / "data").rglob("*") if p.is_file() and ".cache" not in p.parts]
    placed = [p for p in files if not p.name.endswith(".tmp")]
    temporaries = [p for p in files if p.name.endswith(".tmp")]
    assert temporaries  # the torn write is there, under a temporary name only
    for path in placed:
        relative = path.relative_to(clone).as_posix()
        assert file_digest(path) == manifest[relative]["digest"], relative
    assert not (clone / RUNS_DIR / run_id / "record.json").exists()  # no run that looks complete

    again = pull(clone, run_id, FolderRemote(remote))
    assert again.objects_skipped == len(placed) and again.manifests_written == [run_id]
    assert not list((clone / "data").rglob("*.tmp"))  # the dead writer's temporary is gone


def test_a_run_that_has_not_finished_is_not_pushed(source, tmp_path):
    project, run_id = source
    record = json.loads((project / RUNS_DIR / run_id / "record.json").read_text())
    record["status"] = "running"  # a run still going, or killed before its end
    other = tmp_path / "project"
    (other / RUNS_DIR / run_id).mkdir(parents=True)
    (other / RUNS_DIR / run_id / "record.json").write_text(json.dumps(record))
    with pytest.raises(TransferError, match="has not finished"):
        push(other, run_id, FolderRemote(tmp_path / "remote"))
    assert not (tmp_path / "remote").exists()
