"""Shared fixtures: the project's own test configuration, a tiny real corpus, temp project copies."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from kedro_repro.shards import ShardedTensors, write_shards
from speech_repro.corpora.dataset import SynthesizedCorpusDataset
from speech_repro.pipelines.data_processing import nodes as dp

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["conf", "src", "pyproject.toml", ".telemetry", "uv.lock", ".gitignore"]
# git with a throwaway identity, for tests that make their own commits
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]


@pytest.fixture(scope="session")
def params() -> dict:
    """Parameters of the ``test`` environment (conf/base soft-merged with conf/test)."""
    loader = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"),
        base_env="base",
        default_run_env="test",
        merge_strategy={"parameters": "soft"},
    )
    return loader["parameters"]


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory, params) -> Path:
    """A tiny corpus rendered once per session by the real synthesizer."""
    corpora = SynthesizedCorpusDataset(path=str(tmp_path_factory.mktemp("corpus")), workers=2)
    corpora.save(dp.plan_corpus(params["corpus"]))
    return corpora.folder  # the plan's own folder: wav/, plan.csv, B3SUMS


@pytest.fixture(scope="session")
def prepared(corpus_dir, params, tmp_path_factory) -> dict:
    """Manifest, split lock, features, statistics of the tiny corpus, computed by the real nodes."""
    raw = SynthesizedCorpusDataset(path=str(corpus_dir)).load()
    manifest = dp.build_manifest(raw, params["audio"], params["text"])
    split_lock = dp.assign_splits(manifest, params["split"])
    store = tmp_path_factory.mktemp("features")
    write_shards(
        store,
        dp.compute_features(manifest, raw, params["features"], params["audio"], params["sharding"]),
    )
    features = ShardedTensors(store)
    feature_stats = dp.summarize_features(features, manifest, params["features"])
    norm_stats, drift_report = dp.fit_normalization(
        features, split_lock, feature_stats, params["drift"]
    )
    return {
        "raw_corpus": raw,
        "drift_report": drift_report,
        "manifest": manifest,
        "split_lock": split_lock,
        "features": features,
        "feature_stats": feature_stats,
        "norm_stats": norm_stats,
    }


def copy_project(destination: Path) -> Path:
    """A runnable copy of the project (configuration, sources, empty data/) at ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "local")
            )
        else:
            shutil.copy2(source, destination / name)
    (destination / "conf" / "local").mkdir(exist_ok=True)
    (destination / "data").mkdir(exist_ok=True)
    # A git checkout with one commit, as users have: runs record it and verify replays it.
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run([*GIT, *command], cwd=destination, check=True, capture_output=True)
    return destination


def run_kedro(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``kedro <args>`` in a fresh process inside ``project``; raises with output on failure.

    ``env`` replaces the inherited environment (telemetry is then up to the project's own opt-out).
    """
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"} if env is None else env
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        # Wide enough that rich does not wrap log lines the tests search.
        env={**env, "COLUMNS": "300"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise AssertionError(f"kedro {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def kedro_unchecked(project: Path, *args: str) -> subprocess.CompletedProcess:
    """``kedro <args>`` in ``project`` without raising: for tests of refusals and exit codes."""
    return subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


def ledger_file(project: Path, run_id: str, dataset: str, suffix: str) -> Path:
    """The one stored file of ``dataset`` ending in ``suffix`` that run ``run_id``'s ledger names."""
    record = json.loads((project / "data/09_runs" / run_id / "record.json").read_text())
    (path,) = [p for p in record["ledger"][dataset]["files"] if p.endswith(suffix)]
    return project / path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def process_group(command: list[str], log: Path, **popen: object) -> Iterator[subprocess.Popen]:
    """``command`` started in its own process group, output to ``log``; the whole group (a
    server and the workers or children it starts) is stopped on exit, killed if it lingers."""
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,
        )
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
