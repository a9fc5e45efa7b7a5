"""One `kedro run --env test`: the report a researcher keeps, the kedro-viz site, a bitwise replay."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from .conftest import copy_project, run_kedro

LAYERS = ["raw", "intermediate", "features", "model", "reporting"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("report") / "speech-repro")
    run_kedro(project, "run", "--env", "test")
    return project


@pytest.fixture(scope="module")
def run_id(project) -> str:
    runs = json.loads(run_kedro(project, "repro", "runs", "--json").stdout)
    (run,) = runs
    return run["run_id"]


@pytest.fixture(scope="module")
def record(project, run_id) -> dict:
    return json.loads((project / "data/09_runs" / run_id / "record.json").read_text())


@pytest.fixture(scope="module")
def html(project, run_id) -> str:
    return (project / "data/08_reporting/run_report.md" / run_id / "run_report.html").read_text()


@pytest.fixture(scope="module")
def markdown(project, run_id) -> str:
    return (project / "data/08_reporting/run_report.md" / run_id / "run_report.md").read_text()


def test_report_page_opens_with_run_id_commit_data_digest_and_verdicts(project, run_id, record,
                                                                      html):  # fmt: skip
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()
    header = html[: html.index("Error rates")]
    assert run_id in header
    assert commit in header
    assert record["data_snapshot"]["digest"] in header
    assert f"not yet verified: kedro repro verify {run_id}" in header
    assert "Needs attention" in header  # the tiny test split has one speaker
    assert "Determinism" in header and "strict" in header


def test_report_page_embeds_the_runs_figures(project, run_id, html):
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', html)
    assert {alt for _, alt in images} >= {"Learning curve", "WER per speaker (dev, test)"}
    for data, _ in images:
        assert base64.b64decode(data).startswith(b"\x89PNG")


def test_markdown_is_the_ledgered_node_output_and_links_its_figures(project, run_id, markdown,
                                                                   record):  # fmt: skip
    assert run_id not in markdown  # the identity is in the page, not in the replayable bytes
    names = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", markdown)
    assert sorted(names) == ["learning_curve.png", "speaker_wer.png"]
    for name in names:
        folder = project / "data/08_reporting/run_report.md" / run_id
        assert (folder / name).read_bytes().startswith(b"\x89PNG"), name
    files = record["ledger"]["run_report"]["files"]
    assert any(path.endswith("run_report.html") for path in files)


def test_report_lists_the_20_worst_utterances_aligned_and_character_confusions(markdown):
    worst = markdown[markdown.index("## 20 worst utterances") :]
    assert len(re.findall(r"^REF: ", worst, flags=re.M)) == 20
    assert len(re.findall(r"^HYP: ", worst, flags=re.M)) == 20
    assert "## Character confusions" in markdown
    assert re.search(r"\| `.` → `.` \| \d+ \|", markdown)  # a substitution with its count


def test_report_prints_the_normalisation_as_rules(markdown):
    assert "{'lowercase'" not in markdown
    for rule in ("lower-case", "punctuation removed except `'`", "Unicode NFKC"):
        assert rule in markdown


def test_report_check_passes_for_the_page_and_its_figures(project, run_id):
    run_kedro(project, "repro", "check", run_id)


@pytest.fixture(scope="module")
def site(project, run_id) -> tuple[Path, str]:
    env = {**os.environ, "KEDRO_ENV": "test", "KEDRO_DISABLE_TELEMETRY": "1"}
    result = run_kedro(project, "viz", "build", "--include-previews", env=env)
    return project / "build", result.stdout + result.stderr


def test_viz_build_warns_about_no_dataset_of_a_pipeline_that_has_not_run(site):
    _, output = site
    assert "could not be previewed" not in output
    assert not re.search(r"WARNING\s+kedro_viz", output)


def test_viz_pipeline_has_layers_on_every_dataset_and_tags_on_every_node(site):
    build, _ = site
    main = json.loads((build / "api/main").read_text())
    assert main["layers"] == LAYERS
    data = [n for n in main["nodes"] if n["type"] == "data"]
    assert data and all(n["layer"] in LAYERS for n in data), [
        n["name"] for n in data if n["layer"] not in LAYERS
    ]
    assert {"data", "training", "evaluation", "reporting"} <= {t["id"] for t in main["tags"]}
    tasks = [n for n in main["nodes"] if n["type"] == "task"]
    assert all(n["tags"] for n in tasks), [n["name"] for n in tasks if not n["tags"]]
    seeds = json.loads((build / "api/pipelines/seeds").read_text())
    seed_data = [n for n in seeds["nodes"] if n["type"] == "data"]
    assert all(n["layer"] in LAYERS for n in seed_data)
    assert "seeds" in {t["id"] for t in seeds["tags"]}


def test_viz_previews_the_report_page_with_its_header_and_figures(site, run_id):
    build, _ = site
    main = json.loads((build / "api/main").read_text())
    report = next(n for n in main["nodes"] if n["name"] == "run_report")
    preview = json.loads((build / "api/nodes" / report["id"]).read_text())["preview"]
    assert run_id in preview and "data:image/png;base64," in preview


def test_the_run_still_replays_bitwise(project, run_id, tmp_path):
    result = run_kedro(
        project, "repro", "verify", run_id, "--require", "bitwise",
        "--workdir", str(tmp_path / "w"),
    )  # fmt: skip
    assert "verdict: bitwise" in result.stdout
    assert re.search(r"bitwise\s+run_report\s", result.stdout)


@pytest.mark.browser
def test_report_page_shows_its_figures_in_headless_chromium(project, run_id, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    page = project / "data/08_reporting/run_report.md" / run_id / "run_report.html"
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,2400",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=180,
    )  # fmt: skip
    pixels = (imread(shot)[..., :3] * 255).round().astype(int)
    # matplotlib's first colour (#1f77b4): the loss line and the dev speakers' points, drawn
    # only if the embedded PNGs decoded; the page's own styles use no blue.
    blue = (np.abs(pixels - [31, 119, 180]).max(axis=-1) <= 8).sum()
    assert blue > 200
