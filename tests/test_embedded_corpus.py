"""The embedded corpus in real ``kedro`` processes: one folder per plan, never deleted, shared safely.

Each corpus configuration renders into ``data/01_raw/<corpus>/<plan id>/``; a run on other corpus
parameters neither deletes nor rewrites what an earlier or a concurrent run rendered, and two runs
on the same corpus render it once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kedro_repro.cli.verify import current_data as _current_data
from kedro_repro.record import load_run
from speech_repro.corpora.digits import plan_digit_corpus

from .conftest import copy_project, run_kedro
from .test_bad_input import RUNS_LOG, _artifacts

ENV = "test"
CORPUS = "data/01_raw/digits-test"  # conf/test/catalog.yml: raw_corpus
PREPARE = ("run", "--env", ENV, "--pipelines", "embedded_corpus,data_processing")
# Plan, manifest and features only: no split lock, so runs on different corpora do not conflict.
TO_FEATURES = (*PREPARE, "--to-nodes", "compute_features")
RENDERED = re.compile(r"(\d+) of (\d+) utterances to render")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy after one normal run of data processing on the test corpus."""
    project = copy_project(tmp_path_factory.mktemp("embedded") / "speech-repro")
    run_kedro(project, *PREPARE)
    return project


def _run_ids(project: Path) -> list[str]:
    return sorted(p.parent.name for p in (project / "data/09_runs").glob("*/record.json"))


def _start(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def _manifest(project: Path, run_id: str) -> pd.DataFrame:
    return pd.read_parquet(project / "data/02_intermediate/manifest.parquet" / run_id)


def _corpus_params(params: dict, overrides: dict) -> dict:
    return {**params["corpus"], **overrides}


def _params_option(overrides: dict) -> str:
    return ",".join(f"corpus.{key}={value}" for key, value in overrides.items())


def test_another_corpus_changes_no_existing_file_and_earlier_runs_still_check(project):
    (earlier,) = _run_ids(project)
    before = _artifacts(project)
    logged = (project / RUNS_LOG).read_bytes()
    code, output = _finish(_start(project, *PREPARE, "--params", "corpus.utterances_per_speaker=2"))
    assert code != 0 and "split" in output.lower(), output  # the lock refuses the other data
    after = _artifacts(project)
    assert {k: v for k, v in after.items() if k in before} == before, "an existing file changed"
    assert (project / RUNS_LOG).read_bytes().startswith(logged)
    folders = sorted(p.parent.name for p in (project / CORPUS).glob("*/plan.csv"))
    assert len(folders) == 2, folders  # the earlier corpus and the new one, side by side
    run_kedro(project, "repro", "check", earlier)
    verified = run_kedro(project, "repro", "verify", earlier, "--until", "build_manifest")
    assert "verdict: bitwise" in verified.stdout, verified.stdout + verified.stderr


def test_a_partial_run_reads_the_corpus_of_its_own_parameters(project, params):
    """``--from-nodes build_manifest`` saves no plan: it must still read the matching corpus."""
    overrides = {"utterances_per_speaker": 3}
    run_kedro(project, *TO_FEATURES, "--params", _params_option(overrides))
    known = set(_run_ids(project))
    run_kedro(
        project, *TO_FEATURES, "--from-nodes", "build_manifest",
        "--params", _params_option(overrides),
    )  # fmt: skip
    (partial,) = set(_run_ids(project)) - known
    plan = plan_digit_corpus(_corpus_params(params, overrides))
    assert sorted(_manifest(project, partial)["utt_id"]) == sorted(plan["utt_id"])
    # verify's data check reads the corpus of the run's own parameters, not today's defaults
    record = load_run(project / "data/09_runs", partial)
    assert sorted(_current_data(project, record)) == sorted(plan["utt_id"])
    code, output = _finish(
        _start(project, *TO_FEATURES, "--from-nodes", "build_manifest", "--params", "corpus.seed=7")
    )
    assert code != 0
    assert "No corpus rendered for these corpus parameters" in output, output


def test_concurrent_runs_on_different_corpora_both_complete_with_their_own_data(project, params):
    # Large enough that the two renders overlap: before, the second deleted the first's files.
    corpora = [
        {"seed": 101, "utterances_per_speaker": 4},
        {"seed": 102, "utterances_per_speaker": 6},
    ]
    known = set(_run_ids(project))
    runs = [_start(project, *TO_FEATURES, "--params", _params_option(c)) for c in corpora]
    results = [_finish(run) for run in runs]
    assert [code for code, _ in results] == [0, 0], "\n\n".join(out for _, out in results)
    manifests = [_manifest(project, run_id) for run_id in sorted(set(_run_ids(project)) - known)]
    expected = [plan_digit_corpus(_corpus_params(params, c)) for c in corpora]
    got = sorted(
        (sorted(zip(m["utt_id"], m["transcript"], strict=True)) for m in manifests), key=len
    )
    assert got == [sorted(zip(p["utt_id"], p["transcript"], strict=True)) for p in expected]


def test_concurrent_runs_on_the_same_corpus_render_it_once(project):
    corpus = _params_option({"seed": 103, "utterances_per_speaker": 1})
    runs = [_start(project, *TO_FEATURES, "--params", corpus) for _ in range(2)]
    results = [_finish(run) for run in runs]
    assert [code for code, _ in results] == [0, 0], "\n\n".join(out for _, out in results)
    counts = [int(n) for _, out in results for n, _total in RENDERED.findall(out)]
    assert sorted(counts) == [0, 16], "\n\n".join(out for _, out in results)
