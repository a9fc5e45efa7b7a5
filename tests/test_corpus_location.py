"""A corpus that lives outside the project: what a run stores does not depend on where it lies.

The README's recipe symlinks a corpus into ``data/01_raw/``; ``kedro repro verify`` replays the run
in a copy of the project in another folder, where the corpus may be that link, a copy of the
files, or (on another machine) mounted elsewhere. Run records must not see the difference: the
corpus index and the manifest store audio paths relative to the corpus root, and everything
derived from them is the same bits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath

import pandas as pd
import pytest
import soundfile as sf

from .conftest import copy_project, run_kedro

ENV = "librispeech"  # the shipped environment: raw_corpus is data/01_raw/librispeech
# Tiny corpus: enough speakers in every split for the drift report of fit_normalization.
PARAMETERS = "split: {fractions: {train: 0.6, dev: 0.2, test: 0.2}}\n"
# What data_processing saves; each must be the same bits wherever the corpus and project lie.
SAVED = ("manifest", "split_lock", "features", "feature_stats", "norm_stats", "drift_report")


def _write_librispeech(root: Path, corpus_dir: Path) -> None:
    """A LibriSpeech-layout copy (FLAC) of the synthesized test corpus, two utterances a speaker."""
    plan = pd.read_csv(corpus_dir / "plan.csv", keep_default_na=False)
    for number, (_, group) in enumerate(plan.groupby("speaker", sort=True)):
        folder = root / str(100 + number) / "7"
        folder.mkdir(parents=True)
        lines = []
        for n, row in enumerate(group.sort_values("utt_id").head(2).itertuples()):
            utt_id = f"{100 + number}-7-{n:04d}"
            wave, rate = sf.read(corpus_dir / "wav" / row.speaker / f"{row.utt_id}.wav")
            sf.write(folder / f"{utt_id}.flac", wave, rate)
            lines.append(f"{utt_id} {row.transcript.upper()}")
        (folder / f"{100 + number}-7.trans.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, corpus_dir) -> Path:
    """The corpus, outside every project (like /data/LibriSpeech/dev-clean)."""
    root = tmp_path_factory.mktemp("datasets") / "LibriSpeech" / "dev-clean"
    _write_librispeech(root, corpus_dir)
    return root


def _prepare(project: Path, corpus: Path, how: str) -> dict:
    """Run data_processing with the corpus at ``data/01_raw/librispeech``; the run record."""
    raw = project / "data" / "01_raw" / "librispeech"
    raw.parent.mkdir(parents=True)
    if how == "symlink":  # the README's `ln -s /data/LibriSpeech/dev-clean data/01_raw/...`
        raw.symlink_to(corpus, target_is_directory=True)
    else:  # a real copy inside the project (e.g. a replay that hard-links data/01_raw)
        shutil.copytree(corpus, raw)
    (project / "conf" / ENV / "parameters_tiny.yml").write_text(PARAMETERS)
    run_kedro(project, "run", "--env", ENV, "--pipelines", "data_processing")
    (record,) = (project / "data" / "09_runs").glob("*/record.json")
    return json.loads(record.read_text())


def _digests(record: dict) -> dict[str, str]:
    digests = {"raw_corpus (input)": record["inputs"]["raw_corpus"]["digest"]}
    digests.update({name: record["ledger"][name]["digest"] for name in SAVED})
    return digests


def _manifest(project: Path) -> pd.DataFrame:
    (path,) = (project / "data" / "02_intermediate" / "manifest.parquet").glob("*/*")
    return pd.read_parquet(path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus) -> tuple[Path, dict]:
    """The original run: the corpus symlinked into a project."""
    project = copy_project(tmp_path_factory.mktemp("original") / "speech-repro")
    return project, _prepare(project, corpus, "symlink")


@pytest.mark.parametrize(
    "where",
    [
        "symlink to the same corpus",
        "copy of the corpus inside the project",  # e.g. a replay that hard-links data/01_raw
        "symlink to a copy of the corpus elsewhere",  # the corpus moved or mounted elsewhere
    ],
)
def test_prepared_data_does_not_depend_on_where_corpus_and_project_lie(
    reference, corpus, tmp_path, where
):
    original, original_record = reference
    source = corpus
    if where.endswith("elsewhere"):
        source = tmp_path / "mnt" / "LibriSpeech" / "dev-clean"
        shutil.copytree(corpus, source)
    project = copy_project(tmp_path / "elsewhere" / "replay")
    record = _prepare(project, source, "symlink" if where.startswith("symlink") else "copy")
    assert _digests(record) == _digests(original_record)
    # What is stored: paths relative to the corpus root, identical in both projects.
    stored = _manifest(project)["audio_path"]
    pd.testing.assert_series_equal(stored, _manifest(original)["audio_path"])
    for path in stored:
        assert not PurePosixPath(path).is_absolute() and ".." not in PurePosixPath(path).parts
        assert (corpus / path).is_file()


def test_a_run_on_a_symlinked_corpus_outside_the_project_verifies_bitwise(reference):
    """The README's recipe end to end: `kedro repro verify` of the run grades it bitwise."""
    import os
    import subprocess
    import sys

    project, record = reference
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "repro", "verify", record["run_id"], "--json"],
        cwd=project,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{") :])[0]
    assert verdict["overall"] == "bitwise"
    assert {d["dataset"] for d in verdict["datasets"]} >= {"raw_corpus", "manifest", "features"}
    assert "replay |" in result.stderr  # the replay shows its progress as the run did
