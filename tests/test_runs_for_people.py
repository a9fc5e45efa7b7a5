"""Runs for people: a run ends with its result, run ids can be typed, tags, KEDRO_REPRO_RUN.

Real ``kedro`` processes on one project copy: three runs made once for the module (two full
runs with different training seeds, then a training-only run with Kedro's dataset lines on).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from kedro_repro.hashing import file_digest

from .conftest import copy_project, kedro_unchecked, run_kedro

RUNS = "data/09_runs"
VERBOSE = {
    **os.environ,
    "KEDRO_DISABLE_TELEMETRY": "1",
    "KEDRO_LOGGING_CONFIG": "conf/logging_verbose.yml",
}


def _newest(project: Path) -> str:
    return sorted(p.parent.name for p in (project / RUNS).glob("*/record.json"))[-1]


def _record(project: Path, run_id: str) -> dict:
    return json.loads((project / RUNS / run_id / "record.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    project = copy_project(tmp_path_factory.mktemp("people") / "speech-repro")
    first = run_kedro(project, "run", "--env", "test")
    a = _newest(project)
    second = run_kedro(project, "run", "--env", "test", "--params", "training.seed=7")
    b = _newest(project)
    partial = run_kedro(project, "run", "--env", "test", "--pipelines", "training", env=VERBOSE)
    c = _newest(project)
    return {"project": project, "a": a, "b": b, "c": c, "first": first, "second": second,
            "partial": partial}  # fmt: skip


def _fails(project: Path, *args: str) -> str:
    """``kedro <args>`` exits 1 with a one-line error and no traceback; the line."""
    result = kedro_unchecked(project, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# --- 1. a run tells you its result --------------------------------------------------------------


def test_a_run_ends_with_its_id_wer_intervals_review_and_report(runs):
    project, b = runs["project"], runs["b"]
    lines = runs["second"].stderr.rstrip("\n").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"Run {b} complete in "))
    assert "Pipeline execution completed successfully" in lines[start - 1]
    tail = lines[start:]
    summary = json.loads(
        (project / f"data/08_reporting/wer_summary.json/{b}/wer_summary.json").read_text()
    )["splits"]
    dev, test = summary["dev"], summary["test"]
    assert dev["ci_low"] is not None and test["ci_low"] is None  # the tiny test split: 1 speaker
    assert re.fullmatch(
        rf"  test WER +{100 * test['wer']:.2f} % \(no 95 % CI: {test['ci_undefined']}\)", tail[1]
    ), tail
    assert re.fullmatch(
        rf"  dev WER +{100 * dev['wer']:.2f} % \(95 % CI {100 * dev['ci_low']:.2f}-"
        rf"{100 * dev['ci_high']:.2f} %\)",
        tail[2],
    ), tail
    flags = json.loads(
        (project / f"data/08_reporting/review_flags.json/{b}/review_flags.json").read_text()
    )["attention"]
    assert re.fullmatch(
        rf"  review +{len(flags)} item\(s\) need attention \(review_flags\):", tail[3]
    )
    assert [line.strip() for line in tail[4 : 4 + len(flags)]] == [f"- {item}" for item in flags]
    report = next(line for line in tail if line.lstrip().startswith("report"))
    folder = report.split()[1]
    assert folder == f"data/08_reporting/run_report.md/{b}/"
    assert (project / folder / "run_report.md").is_file()
    assert tail[-1].split() == ["details", "kedro", "repro", "show", b]


def test_a_partial_run_prints_what_it_has(runs):
    lines = runs["partial"].stderr.rstrip("\n").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"Run {runs['c']} complete"))
    assert [line.split()[0] for line in lines[start + 1 :]] == ["results", "details"]
    assert "none: this run saved no seed_summary or wer_summary" in lines[start + 1]


def test_dataset_lines_are_off_by_default_and_the_verbose_logging_brings_them_back(runs):
    assert "Loading data from" not in runs["first"].stderr
    assert "Saving data to" not in runs["first"].stderr
    assert "Running node: train_model" in runs["first"].stderr  # the run's progress stays
    assert "Loading data from features (ShardedTensorsDataset)" in runs["partial"].stderr
    assert "Saving data to model (SafetensorsDataset)" in runs["partial"].stderr


def test_synthesis_and_features_show_progress_on_a_terminal_only(runs, tmp_path):
    # not a terminal: no bars in the log
    assert not re.search(r"(synthesize|features): +[0-9]+%", runs["first"].stderr)
    project = copy_project(tmp_path / "tty")
    leader, follower = os.openpty()
    # A terminal 120 columns wide (a new pty has none, and tqdm draws nothing in 0 columns).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "kedro", "run", "--env", "test", "--pipelines",
         "embedded_corpus,data_processing"],
        cwd=project, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "200"},
    )  # fmt: skip
    os.close(follower)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    assert process.wait(timeout=600) == 0
    reader.join(timeout=30)
    os.close(leader)
    output = b"".join(chunks).decode(errors="replace")
    assert re.search(r"synthesize: 100%\|[^\n\r]*\| 64/64", output), output[-3000:]
    assert re.search(r"features: 100%\|[^\n\r]*\| 64/64", output), output[-3000:]


# --- 2. run ids people can type -------------------------------------------------------------------


def test_show_takes_latest_latest_n_and_a_unique_prefix(runs):
    project, a, b, c = runs["project"], runs["a"], runs["b"], runs["c"]
    for name, expected in (("latest", c), ("latest~1", b), ("latest~2", a), (a[:19], a)):
        result = run_kedro(project, "repro", "show", name)
        assert f"run {expected}  [complete]" in result.stdout, name
        assert "TAMPERED" not in result.stderr, name


def test_an_unknown_or_ambiguous_name_is_one_line_naming_candidates(runs):
    project, a, b, c = runs["project"], runs["a"], runs["b"], runs["c"]
    line = _fails(project, "repro", "show", "nope")
    assert line.startswith("Error: no run 'nope' in ")
    assert f"latest: {c}, {b}, {a}" in line
    assert "closest: latest" in _fails(project, "repro", "show", "latets")
    line = _fails(project, "repro", "show", a[:4])
    assert "is the start of 3 run ids" in line and a in line
    assert "there are 3 recorded run(s)" in _fails(project, "repro", "show", "latest~3")
    # every command resolves before it does anything else
    for command in (["check", "nope"], ["sign", "nope"], ["diff", "nope", "latest"],
                    ["export", "nope"], ["resume", "nope"], ["verify", "nope"],
                    ["run", "--from-run", "nope"], ["compare", "latest", "nope"],
                    ["load-versions", "nope"], ["tag", "nope", "best"]):  # fmt: skip
        assert "no run 'nope'" in _fails(project, "repro", *command), command


def test_tags_name_runs_everywhere_and_live_outside_records(runs):
    project, a, b = runs["project"], runs["a"], runs["b"]
    record = project / RUNS / b / "record.json"
    before = file_digest(record)
    assert run_kedro(project, "repro", "tag", "latest~1", "best").stdout.strip() == (
        f"tagged run {b} as best"
    )
    assert file_digest(record) == before  # a tag writes nothing into a record
    assert json.loads((project / RUNS / "TAGS.json").read_text()) == {"tags": {"best": b}}
    assert f"run {b}  [complete]" in run_kedro(project, "repro", "show", "best").stdout
    check = json.loads(run_kedro(project, "repro", "check", "best", "--json").stdout)
    assert [(r["run_id"], r["verdict"]) for r in check["runs"]] == [(b, "intact")]
    assert run_kedro(project, "repro", "diff", "best", "latest~2").stdout.startswith(f"{b} -> {a}")
    assert f"{b}" in run_kedro(project, "repro", "export", "best").stdout
    compared = run_kedro(project, "repro", "compare", "latest~2", "best").stdout
    assert compared.startswith(f"A {a}: test WER") and f"B {b}: test WER" in compared
    listed = run_kedro(project, "repro", "runs").stdout.splitlines()
    row = next(line for line in listed if line.startswith(b))
    assert row.split()[-1] == "best"
    rows = json.loads(run_kedro(project, "repro", "runs", "--json").stdout)
    assert {r["run_id"]: r["tags"] for r in rows} == {a: [], b: ["best"], runs["c"]: []}
    assert f"already points to run {b}" in _fails(project, "repro", "tag", "latest", "best")
    assert "cannot be a tag" in _fails(project, "repro", "tag", "latest", "2026-x")
    assert run_kedro(project, "repro", "tag").stdout.splitlines()[1].split() == ["best", b]
    assert f"removed tag best (it pointed to run {b})" in (
        run_kedro(project, "repro", "tag", "--delete", "best").stdout
    )
    assert "no run 'best'" in _fails(project, "repro", "show", "best")


def test_a_hand_edited_tags_file_is_refused(runs):
    project = runs["project"]
    tags = project / RUNS / "TAGS.json"
    tags.write_text(json.dumps({"tags": {"evil": "../../../etc/passwd"}}))
    try:
        assert "is not a tags file" in _fails(project, "repro", "show", "evil")
    finally:
        tags.unlink()


def test_runs_table_labels_headline_columns_and_rounds_durations(runs):
    project = runs["project"]
    lines = run_kedro(project, "repro", "runs").stdout.splitlines()
    header = lines[0].split()
    assert header[header.index("test_wer") :] == [
        "test_wer",
        "test_cer",
        "duration",
        "status",
        "tags",
    ]
    assert "duration_s" not in header and "wer" not in header
    at = header.index("duration")
    for line in lines[1:]:
        assert re.fullmatch(r"[0-9]+\.[0-9]s|[0-9]+m[0-9]{2}s", line.split()[at]), line
    rows = json.loads(run_kedro(project, "repro", "runs", "--json").stdout)
    assert all(isinstance(r["duration_s"], float) for r in rows)
    assert rows[0]["test_wer"] == _record(project, runs["a"])["metrics"]["splits"]["test"]["wer"]


# --- KEDRO_REPRO_RUN: what notebooks, kedro ipython and kedro-viz show ----------------------------

LOAD_METRICS = """
import json, sys
from pathlib import Path
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
bootstrap_project(Path.cwd())
with KedroSession.create(project_path=Path.cwd(), env=sys.argv[1] or None) as session:
    catalog = session.load_context().catalog
    try:
        print(json.dumps(catalog.load("metrics")))
    except Exception as error:
        print(json.dumps({"error": str(error)}))
"""


def _catalog_metrics(project: Path, chosen: str | None, env: str = "test") -> dict:
    variables = {k: v for k, v in os.environ.items() if k != "KEDRO_REPRO_RUN"}
    if chosen is not None:
        variables["KEDRO_REPRO_RUN"] = chosen
    result = subprocess.run(
        [sys.executable, "-c", LOAD_METRICS, env], cwd=project, capture_output=True, text=True,
        env={**variables, "KEDRO_DISABLE_TELEMETRY": "1"}, timeout=300,
    )  # fmt: skip
    if result.returncode != 0:
        return {"failed": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_kedro_repro_run_chooses_what_the_catalog_loads(runs):
    project, a, b, c = runs["project"], runs["a"], runs["b"], runs["c"]
    metrics_a, metrics_b = (_record(project, r)["metrics"] for r in (a, b))
    assert metrics_a != metrics_b  # the two seeds score differently
    assert _catalog_metrics(project, None) == metrics_b  # the newest metrics
    assert _catalog_metrics(project, "latest~2") == metrics_a
    assert _catalog_metrics(project, a[:19]) == metrics_a
    assert _catalog_metrics(project, b) == metrics_b
    # the training-only run saved no metrics: none of another run's shown instead
    assert c in _catalog_metrics(project, "latest")["error"]
    assert "no run 'nope'" in _catalog_metrics(project, "nope")["failed"]
    assert (
        "ran in configuration environment 'test'" in _catalog_metrics(project, a, env="")["failed"]
    )


def test_a_run_with_kedro_repro_run_set_is_refused(runs):
    project = runs["project"]
    before = sorted((project / RUNS).iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--env", "test", "--pipelines", "evaluation"],
        cwd=project, capture_output=True, text=True, timeout=300,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "KEDRO_REPRO_RUN": "latest~1"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Error: KEDRO_REPRO_RUN=latest~1 is set" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted((project / RUNS).iterdir()) == before  # no run claimed, no record


# --- last: these runs add runs, so every test above sees the module's three ---------------------


def test_load_versions_and_run_from_run_take_a_tag(runs):
    project, b = runs["project"], runs["b"]
    run_kedro(project, "repro", "tag", b, "chosen")
    pins = run_kedro(project, "repro", "load-versions", "chosen").stdout.strip()
    assert f"model:{b}" in pins.split(",")
    run_kedro(project, "run", "--env", "test", "--pipelines", "evaluation", "--load-versions", pins)
    assert _record(project, _newest(project))["inputs"]["model"]["version"] == b
    result = run_kedro(project, "repro", "run", "--from-run", "chosen")
    assert f"Loading from run {b}" in result.stdout
    rerun = _record(project, _newest(project))
    assert rerun["inputs"]["model"]["version"] == b
    assert rerun["metrics"] == _record(project, b)["metrics"]
