"""`kedro run --pipelines seeds` on the tiny configuration, its reports, and the kedro-viz build."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from kedro_repro.hashing import tensors_digest
from kedro_repro.state import load_state

from .conftest import copy_project, run_kedro

SEEDS = [1234, 1235, 1236]  # conf/base/parameters_seeds.yml


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("seeds") / "speech-repro")
    result = run_kedro(project, "run", "--env", "test", "--pipelines", "seeds")
    (project / "seeds-run.log").write_text(result.stderr)  # its last lines: the sweep's result
    return project


def _latest(project: Path, dataset: str) -> Path:
    """The newest version of a versioned file dataset."""
    folder = project / dataset
    return max(folder.iterdir()) / folder.name


def test_the_sweep_ends_with_every_seed_s_wer_and_the_mean_across_seeds(project):
    lines = (project / "seeds-run.log").read_text().rstrip("\n").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"Run \S+ complete in ", line))
    keys = [line[2:].split("  ")[0] for line in lines[start + 1 :]]  # "" on continuation lines
    shown = [key for key in keys if "WER" in key]
    assert shown == [
        *(f"seed_{seed} test WER" for seed in SEEDS),
        *(f"seed_{seed} dev WER" for seed in SEEDS),
        "test WER across seeds",
    ]
    summary = json.loads(_latest(project, "data/08_reporting/seed_summary.json").read_text())
    mean = summary["splits"]["test"]["across_seeds"]["mean"]
    assert f"test WER across seeds  {100 * mean:.2f} %" in "\n".join(lines[start:])
    reports = [line for line in lines[start:] if line.lstrip().startswith("report")]
    assert len(reports) == len(SEEDS) + 1 and "seed_report.md/" in reports[-1]


def test_every_seed_trains_its_own_model(project):
    digests = {
        seed: tensors_digest(
            load_state(_latest(project, f"data/06_models/seeds/seed_{seed}/model.safetensors"))[
                "weights"
            ]
        )
        for seed in SEEDS
    }
    assert len(set(digests.values())) == len(SEEDS)


def test_summary_reports_each_seed_and_the_statistics_across_them(project):
    summary = json.loads(_latest(project, "data/08_reporting/seed_summary.json").read_text())
    assert summary["seeds"] == SEEDS
    for split in ("train", "dev", "test"):
        entry = summary["splits"][split]
        assert list(entry["per_seed"]) == [str(s) for s in SEEDS]
        wers = [entry["per_seed"][str(s)]["wer"] for s in SEEDS]
        across = entry["across_seeds"]
        assert across["n"] == 3 and across["mean"] == pytest.approx(np.mean(wers))
        assert across["ci_low"] <= across["mean"] <= across["ci_high"]
    assert "Student-t" in summary["methods"]["across_seeds"]
    assert "over speakers" in summary["methods"]["within_run"]


def test_sweep_and_run_reports_and_figures_are_written(project):
    report = _latest(project, "data/08_reporting/seed_report.md")
    assert "Seed sweep report (3 seeds)" in report.read_text()
    assert "<table>" in report.with_suffix(".html").read_text()
    figures = [
        "data/08_reporting/seed_wer.png",
        "data/08_reporting/seed_learning_curves.png",
        "data/08_reporting/feature_distributions.png",
        *(f"data/08_reporting/seeds/seed_{s}/learning_curve.png" for s in SEEDS),
        *(f"data/08_reporting/seeds/seed_{s}/speaker_wer.png" for s in SEEDS),
    ]
    for figure in figures:
        assert _latest(project, figure).read_bytes().startswith(b"\x89PNG"), figure
    for seed in SEEDS:
        assert (
            "# Run report"
            in _latest(project, f"data/08_reporting/seeds/seed_{seed}/run_report.md").read_text()
        )


def test_a_seed_list_that_differs_from_the_pipeline_stops_before_training(project):
    models = project / f"data/06_models/seeds/seed_{SEEDS[0]}/model.safetensors"
    before = sorted(models.iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--env", "test", "--pipelines", "seeds",
         "--params", "seed_sweep.seeds=[7]"],
        cwd=project, capture_output=True, text=True, timeout=600,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "the seeds pipeline was built for seed" in result.stdout + result.stderr
    assert sorted(models.iterdir()) == before


@pytest.fixture(scope="module")
def site(project) -> Path:
    """``kedro viz build --include-previews`` of the project after the sweep."""
    env = {**os.environ, "KEDRO_ENV": "test", "KEDRO_DISABLE_TELEMETRY": "1"}
    run_kedro(project, "viz", "build", "--include-previews", env=env)
    return project / "build"


def test_viz_build_shows_one_modular_pipeline_per_seed_with_previews(site):
    seeds = json.loads((site / "api/pipelines/seeds").read_text())
    assert {f"seed_{s}" for s in SEEDS} <= set(seeds["modular_pipelines"])
    by_name = {n["name"]: n["id"] for n in seeds["nodes"]}
    expected = {
        "seed_wer_plot": "ImagePreview",
        "seed_learning_curves_plot": "ImagePreview",
        f"seed_{SEEDS[0]}.speaker_wer_plot": "ImagePreview",
        "seed_summary": "JSONPreview",
        f"seed_{SEEDS[0]}.metrics": "JSONPreview",
        "seed_report": "HTMLPreview",
        f"seed_{SEEDS[0]}.wer_per_speaker": "TablePreview",
    }
    for name, preview_type in expected.items():
        node = json.loads((site / "api/nodes" / by_name[name]).read_text())
        assert node["preview_type"] == preview_type, name
        assert node["preview"], name


@pytest.mark.browser
def test_built_site_renders_the_sweep_in_headless_chromium(site, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/?pid=seeds"
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900",
               "--virtual-time-budget=20000"]  # fmt: skip
    try:
        shot = tmp_path / "seeds.png"
        subprocess.run([*browser, f"--screenshot={shot}", url], capture_output=True, timeout=180)
        dom = subprocess.run(
            [*browser, "--dump-dom", url], capture_output=True, text=True, timeout=180
        ).stdout
    finally:
        server.shutdown()
    pixels = imread(shot)
    assert pixels.shape[:2] == (900, 1400)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50  # drawn, not blank
    for seed in SEEDS:
        assert f"seed_{seed}" in dom
    assert "summarize_seeds" in dom


def test_compare_treats_a_sweep_as_one_configuration(project):
    runs = json.loads(run_kedro(project, "repro", "runs", "--json").stdout)
    sweep = next(
        r["run_id"] for r in runs if r["pipelines"] == "seeds" and r["status"] == "complete"
    )
    result = json.loads(
        run_kedro(project, "repro", "compare", sweep, sweep, "--split", "dev", "--json").stdout
    )
    assert result["models_a"] == [f"seed_{s}.hypotheses" for s in SEEDS]
    assert result["delta"] == 0 and result["equivalent"] and result["p_improvement"] == 0


def test_a_sweep_replays_bit_for_bit(project, tmp_path):
    """Every seed's model, figures and reports, and the statistics across them, replay bitwise."""
    runs = json.loads(run_kedro(project, "repro", "runs", "--json").stdout)
    sweep = next(
        r["run_id"] for r in runs if r["pipelines"] == "seeds" and r["status"] == "complete"
    )
    result = run_kedro(
        project, "repro", "verify", sweep, "--require", "bitwise", "--workdir", str(tmp_path / "w")
    )
    assert "verdict: bitwise" in result.stdout
    for name in ("seed_summary", "seed_wer_plot", f"seed_{SEEDS[0]}.model"):
        assert re.search(rf"bitwise\s+{re.escape(name)}\s", result.stdout), name
