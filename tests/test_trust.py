"""Proof that holds: tampered bytes and records are caught, replays run the recorded code, and a
received bundle is data, never code or configuration. Real files, real `kedro` processes."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kedro_repro import runlog
from kedro_repro.record import list_records
from kedro_repro.session import RUNS_DIR

from .conftest import GIT, copy_project, run_kedro
from .conftest import kedro_unchecked as kedro

SEED_LINE = 'seed_globals(derive_seed(seed, "init"))'
CHANGED_SEED_LINE = 'seed_globals(derive_seed(seed, "init-changed"))'
TRAINING = "src/speech_repro/pipelines/training/loop.py"


def _output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def _json(output: str) -> dict:
    return json.JSONDecoder().raw_decode(output[output.index("{") :])[0]


def _record(project: Path, run_id: str) -> dict:
    return json.loads((project / RUNS_DIR / run_id / "record.json").read_text())


def _latest(project: Path) -> str:
    return list_records(project / RUNS_DIR)[-1].run_id


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("trust") / "speech-repro")
    run_kedro(project, "run", "--env", "test")
    return project


@pytest.fixture(scope="module")
def run_id(project) -> str:
    return _latest(project)


class Tampered:
    """Flip, replace or edit a stored file for the duration of a ``with`` block."""

    def __init__(self, path: Path, edit):
        self.path, self.edit = path, edit

    def __enter__(self) -> Path:
        self.original = self.path.read_bytes()
        self.path.write_bytes(self.edit(self.original))
        return self.path

    def __exit__(self, *exc) -> None:
        self.path.write_bytes(self.original)


def _flip(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[-3] ^= 0x01
    return bytes(flipped)


def _ledger_file(project: Path, run_id: str, dataset: str, suffix: str = "") -> Path:
    files = _record(project, run_id)["ledger"][dataset]["files"]
    (path,) = [p for p in files if p.endswith(suffix)]
    return project / path


def test_a_flipped_model_byte_is_caught_by_check_verify_and_from_run(project, run_id, tmp_path):
    assert kedro(project, "repro", "check", run_id).returncode == 0
    model = _ledger_file(project, run_id, "model")
    with Tampered(model, _flip):
        checked = kedro(project, "repro", "check", run_id)
        assert checked.returncode == 1
        assert "model" in checked.stdout and str(model.relative_to(project)) in checked.stdout
        assert "was modified" in checked.stdout
        verified = kedro(project, "repro", "verify", run_id, "--workdir", str(tmp_path / "v"))
        assert verified.returncode != 0 and model.name in _output(verified)
        assert not (tmp_path / "v").exists()  # refused before any replay
        rerun = kedro(project, "repro", "run", "--from-run", run_id, "--pipelines", "evaluation")
        assert rerun.returncode != 0
        assert "model" in _output(rerun) and "was modified" in _output(rerun)
        shown = kedro(project, "repro", "show", run_id)
        assert shown.returncode == 1 and "TAMPERED" in shown.stderr
    assert kedro(project, "repro", "check", run_id).returncode == 0


def test_forged_hypotheses_and_metrics_are_caught_by_compare_and_check(project, run_id):
    hypotheses = _ledger_file(project, run_id, "hypotheses")
    metrics = _ledger_file(project, run_id, "metrics")

    def references_as_hypotheses(data: bytes) -> bytes:
        import io

        import pandas as pd

        frame = pd.read_csv(io.BytesIO(data), keep_default_na=False)
        frame["hypothesis"] = frame["reference"]
        return frame.to_csv(index=False).encode()

    def better_wer(data: bytes) -> bytes:
        document = json.loads(data)
        document["splits"]["test"]["wer"] = 0.0123
        return json.dumps(document, indent=2).encode()

    with Tampered(hypotheses, references_as_hypotheses), Tampered(metrics, better_wer):
        compared = kedro(project, "repro", "compare", run_id, run_id)
        assert compared.returncode != 0
        assert "hypotheses" in _output(compared) and hypotheses.name in _output(compared)
        checked = kedro(project, "repro", "check", "--json", run_id)
        assert checked.returncode == 1
        problems = {p["item"] for p in _json(checked.stdout)["runs"][0]["problems"]}
        assert problems == {"hypotheses", "metrics"}


def test_a_hand_edited_record_is_caught_by_runs_show_check_and_verify(project, run_id, tmp_path):
    path = project / RUNS_DIR / run_id / "record.json"

    def better_wer(data: bytes) -> bytes:
        document = json.loads(data)
        document["metrics"]["splits"]["test"]["wer"] = 0.0123
        return json.dumps(document, indent=1).encode()

    with Tampered(path, better_wer):
        checked = kedro(project, "repro", "check", run_id)
        assert checked.returncode == 1 and "record" in checked.stdout
        assert "modified" in checked.stdout
        listed = kedro(project, "repro", "runs")
        assert "RECORD MODIFIED" in listed.stdout
        assert kedro(project, "repro", "show", run_id).returncode == 1
        verified = kedro(project, "repro", "verify", run_id, "--workdir", str(tmp_path / "v"))
        assert verified.returncode != 0 and "record.json" in _output(verified)


def test_verify_replays_the_recorded_commit_after_a_code_change(tmp_path):
    """A run made before a commit that changes training still verifies bitwise at its own code;
    --code current checks today's code against it and diverges at train_model."""
    project = copy_project(tmp_path / "speech-repro")
    run_kedro(project, "run", "--env", "test")
    old_run = _latest(project)
    source = project / TRAINING
    assert SEED_LINE in source.read_text()
    source.write_text(source.read_text().replace(SEED_LINE, CHANGED_SEED_LINE))
    subprocess.run([*GIT, "commit", "-qam", "change init"], cwd=project, check=True)

    verified = kedro(project, "repro", "verify", old_run, "--json", "--quiet")
    assert verified.returncode == 0, _output(verified)
    result = _json(verified.stdout)
    assert result["overall"] == "bitwise"
    assert result["code"].startswith("commit " + _record(project, old_run)["code"]["commit"])

    current = kedro(project, "repro", "verify", old_run, "--code", "current", "--json", "--quiet")
    assert current.returncode == 1
    result = _json(current.stdout)
    assert result["first_divergent_node"] == "train_model"
    assert result["code"].startswith("the current working tree")
    assert "git.commit" not in json.dumps(result["explanation"])  # only real differences

    # A run from a dirty tree keeps its patch; reverted, it still replays from the bundle.
    source.write_text(source.read_text().replace(CHANGED_SEED_LINE, SEED_LINE + "  # dirty"))
    (project / "src/speech_repro/untracked_note.py").write_text('"""A new, untracked file."""\n')
    run_kedro(project, "run", "--env", "test")
    dirty_run = _latest(project)
    code = _record(project, dirty_run)["code"]
    assert code["dirty"] and code["patch"] == "code/patch.diff"
    patch = (project / RUNS_DIR / dirty_run / "code/patch.diff").read_text()
    assert "untracked_note.py" in patch and "# dirty" in patch
    subprocess.run([*GIT, "checkout", "-q", "--", "."], cwd=project, check=True)
    (project / "src/speech_repro/untracked_note.py").unlink()
    verified = kedro(project, "repro", "verify", dirty_run, "--json", "--quiet")
    assert verified.returncode == 0, _output(verified)
    result = _json(verified.stdout)
    assert result["overall"] == "bitwise" and "stored patch" in result["code"]
    # the same model as the first run: the dirty change was only a comment
    assert (
        _record(project, dirty_run)["ledger"]["model"]["digest"]
        == _record(project, old_run)["ledger"]["model"]["digest"]
    )


def _forge(project: Path, run_id: str, edit) -> str:
    """A copy of ``run_id``'s bundle under a new id, edited, and sealed in the runs log: what
    an attacker who hands over a whole data folder can produce."""
    forged_id = run_id[:-4] + f"{(int(run_id[-4:-1]) + 500) % 1000:03d}Z"
    bundle = project / RUNS_DIR / forged_id
    shutil.copytree(project / RUNS_DIR / run_id, bundle)
    record = json.loads((bundle / "record.json").read_text())
    record["run_id"] = forged_id
    edit(record, bundle)
    (bundle / "record.json").write_text(json.dumps(record, indent=1))
    runlog.append(project / RUNS_DIR, forged_id, bundle / "record.json")
    return forged_id


def test_a_hostile_bundle_is_refused_and_nothing_in_it_executes(project, run_id, tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    def hostile_env(record: dict, bundle: Path) -> None:
        conf = bundle / "conf"
        (conf / "base").mkdir(parents=True)
        (bundle / "evil.pkl").write_bytes(pickle.dumps(Payload()))
        (conf / "base" / "catalog.yml").write_text(
            f"metrics:\n  type: pickle.PickleDataset\n  filepath: {bundle / 'evil.pkl'}\n"
        )
        record["env"] = f"../{RUNS_DIR}/{bundle.name}/conf/base"

    forged = _forge(project, run_id, hostile_env)
    for command in (
        ["repro", "verify", forged, "--workdir", str(tmp_path / "v")],
        ["repro", "run", "--from-run", forged, "--pipelines", "evaluation"],
        ["repro", "resume", forged],
        ["repro", "show", forged],
    ):
        result = kedro(project, *command)
        assert result.returncode != 0, command
        assert "env" in _output(result) and "Traceback" not in _output(result), command
    assert not marker.exists()
    listed = kedro(project, "repro", "runs")
    assert f"unreadable: {project / RUNS_DIR / forged / 'record.json'}" in listed.stderr
    shutil.rmtree(project / RUNS_DIR / forged)


def test_a_replay_refuses_pickle_datasets_in_the_catalog(project, run_id, tmp_path):
    """Even the project's own configuration may not make a replay unpickle."""
    evil = project / "conf" / "evil"
    evil.mkdir()
    (evil / "catalog.yml").write_text(
        "stash:\n  type: pickle.PickleDataset\n  filepath: data/stash.pkl\n"
    )
    subprocess.run([*GIT, "add", "conf/evil"], cwd=project, check=True)
    subprocess.run([*GIT, "commit", "-qm", "evil env"], cwd=project, check=True)

    def evil_env(record: dict, bundle: Path) -> None:
        record["env"] = "evil"
        record["code"]["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True
        ).stdout.strip()

    forged = _forge(project, run_id, evil_env)
    result = kedro(project, "repro", "verify", forged, "--workdir", str(tmp_path / "v"))
    assert result.returncode != 0
    assert "pickle-based entries (stash)" in _output(result)
    shutil.rmtree(project / RUNS_DIR / forged)
    shutil.rmtree(evil)
    subprocess.run([*GIT, "rm", "-rq", "--cached", "conf/evil"], cwd=project, check=True)
    subprocess.run([*GIT, "commit", "-qm", "no evil env"], cwd=project, check=True)


def test_a_run_from_a_past_run_verifies_with_its_recorded_inputs(project, run_id):
    run_kedro(project, "repro", "run", "--from-run", run_id, "--pipelines", "evaluation")
    rerun = _latest(project)
    assert _record(project, rerun)["inputs"]["model"]["run"] == run_id
    verified = kedro(project, "repro", "verify", rerun, "--json", "--quiet")
    assert verified.returncode == 0, _output(verified)
    result = _json(verified.stdout)
    assert result["overall"] == "bitwise"
    assert {d["dataset"] for d in result["datasets"]} >= {"hypotheses", "metrics"}


def test_a_run_from_step_zero_lists_only_what_it_read(project, run_id):
    record = _record(project, run_id)
    assert "training_checkpoints" not in record["inputs"]
    shown = run_kedro(project, "repro", "show", run_id).stdout
    assert "training_checkpoints" not in shown.split("ledger")[0].split("inputs")[1]


def test_parallel_runner_is_refused_and_thread_runner_records_everything(tmp_path):
    project = copy_project(tmp_path / "speech-repro")
    refused = kedro(project, "run", "--env", "test", "--runner", "ParallelRunner")
    assert refused.returncode != 0
    assert "ParallelRunner runs nodes in other processes" in _output(refused)
    run_kedro(project, "run", "--env", "test", "--runner", "ThreadRunner")
    record = _record(project, _latest(project))
    assert record["status"] == "complete" and record["runner"] == "ThreadRunner"
    assert record["metrics"]["splits"]["test"]["utterances"] > 0
    assert {"train_model", "score", "write_run_report"} <= set(record["nodes"])
    assert all(node["complete"] for node in record["nodes"].values())
    assert {"model", "hypotheses", "metrics", "run_report"} <= set(record["ledger"])


KILL_HOOK = '''

class _KillBetweenSaves:
    """Test only: SIGKILL this process right after one named dataset is saved."""

    @hook_impl
    def after_dataset_saved(self, dataset_name):
        if dataset_name == os.environ.get("KILL_AFTER_SAVING"):
            os.kill(os.getpid(), signal.SIGKILL)


HOOKS = (*HOOKS, _KillBetweenSaves())
'''


def test_a_run_killed_between_two_outputs_of_a_node_reruns_that_node(project, run_id, tmp_path):
    """train_model saves model, then training_log: killed in between, resume trains again and
    loads its own training_log, never the newest one on disk from another run."""
    kill = copy_project(tmp_path / "speech-repro")
    settings = kill / "src/speech_repro/settings.py"
    settings.write_text(
        "import os\nimport signal\nfrom kedro.framework.hooks import hook_impl\n"
        + settings.read_text()
        + KILL_HOOK
    )
    run_kedro(kill, "run", "--env", "test", "--params", "training.seed=99")  # a decoy
    decoy = _latest(kill)
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "KILL_AFTER_SAVING": "model"}
    killed = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--env", "test"],
        cwd=kill, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert killed.returncode == -9
    killed_id = _latest(kill)
    assert killed_id != decoy
    assert not _record(kill, killed_id)["nodes"]["train_model"]["complete"]
    run_kedro(kill, "repro", "resume", killed_id)
    resumed = _record(kill, _latest(kill))
    assert resumed["resumed_from"] == killed_id and resumed["status"] == "complete"
    assert "train_model" in resumed["nodes"]
    reference = _record(project, run_id)["ledger"]
    for dataset in ("model", "training_log", "metrics"):
        assert resumed["ledger"][dataset]["digest"] == reference[dataset]["digest"], dataset


def _ssh_key(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key


def test_a_signed_run_is_reported_with_its_signer_and_a_re_signed_one_as_unknown(
    project, run_id, tmp_path
):
    alice, mallory = _ssh_key(tmp_path, "alice"), _ssh_key(tmp_path, "mallory")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"alice@example.org {(tmp_path / 'alice.pub').read_text()}")
    run_kedro(project, "repro", "sign", run_id, "--key", str(alice))
    checked = run_kedro(project, "repro", "check", run_id, "--allowed-signers", str(signers))
    assert "signed by alice@example.org" in checked.stdout
    run_kedro(project, "repro", "sign", run_id, "--key", str(mallory))
    checked = kedro(project, "repro", "check", run_id, "--allowed-signers", str(signers))
    assert "signed by an unknown key" in checked.stdout
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{mallory}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert fingerprint in checked.stdout
    (project / RUNS_DIR / run_id / "record.json.sig").unlink()


def test_a_replay_never_runs_silently_in_another_environment(project, run_id, tmp_path):
    """Recorded packages that differ from this interpreter's: verify refuses and lists them."""

    def older_torch(record: dict, bundle: Path) -> None:
        record["environment"]["packages"]["torch"] = "2.10.0"

    forged = _forge(project, run_id, older_torch)
    result = kedro(project, "repro", "verify", forged, "--workdir", str(tmp_path / "v"))
    assert result.returncode != 0
    assert "differs from run" in _output(result) and "torch: 2.10.0 -> 2.11.0" in _output(result)
    assert "--sync-env" in _output(result)
    shutil.rmtree(project / RUNS_DIR / forged)
