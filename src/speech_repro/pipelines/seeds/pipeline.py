"""Seed sweep: training, evaluation and the run report once per seed, each in its own namespace.

The namespaces (``seed_<n>``) are built from ``seed_sweep.seeds`` in the parameters when the
pipeline is registered, so kedro-viz shows one modular pipeline per seed; their outputs go
through the catalog's ``{namespace}.<dataset>`` patterns. Data preparation and the data review
are shared: every seed trains on the same features.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from kedro.framework.project import settings
from kedro.pipeline import Node, Pipeline
from kedro.utils import find_kedro_project

from speech_repro.pipelines import evaluation, reporting, training

from .nodes import (
    plot_seed_learning_curves,
    plot_seed_wer,
    summarize_seeds,
    with_seed,
    write_sweep_report,
)

SHARED_INPUTS = {
    "features",
    "split_lock",
    "manifest",
    "norm_stats",
    "review_flags",
}
SHARED_PARAMETERS = {
    "params:training",
    "params:model",
    "params:text",
    "params:evaluation",
    "params:reporting",
    "params:seed_sweep",
    "params:determinism",  # one policy for the process, applied by the DeterminismHook
}


def declared_seeds(project_path: Path | None = None, env: str | None = None) -> list[int]:
    """``seed_sweep.seeds`` from the project's parameters (``KEDRO_ENV`` picks the environment)."""
    project_path = project_path or find_kedro_project(Path.cwd()) or Path.cwd()
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(project_path / settings.CONF_SOURCE),
        env=env or os.environ.get("KEDRO_ENV"),
        **settings.CONFIG_LOADER_ARGS,
    )
    return [int(seed) for seed in loader["parameters"]["seed_sweep"]["seeds"]]


def seed_namespace(seed: int) -> str:
    """The namespace of one seed's modular pipeline."""
    return f"seed_{seed}"


def seed_pipeline(seed: int) -> Pipeline:
    """Train, evaluate and report one seed, in namespace ``seed_<seed>``."""
    set_seed = functools.update_wrapper(functools.partial(with_seed, seed=seed), with_seed)
    body = (
        Pipeline(
            [
                Node(
                    set_seed,
                    ["params:training", "params:seed_sweep"],
                    "training_params",
                    name="set_seed",
                )
            ]
        )
        + training.create_pipeline(training_params="training_params")
        + evaluation.create_pipeline()
        + reporting.run_report_pipeline()
    )
    return Pipeline(
        body,
        namespace=seed_namespace(seed),
        inputs=SHARED_INPUTS,
        parameters=SHARED_PARAMETERS,
        tags="seeds",
    )


def create_pipeline(seeds: Sequence[int] | None = None, **kwargs) -> Pipeline:
    """One namespaced pipeline per seed, then the statistics, figures and report of the sweep."""
    seeds = list(seeds) if seeds is not None else declared_seeds()
    summaries = [f"{seed_namespace(s)}.wer_summary" for s in seeds]
    logs = [f"{seed_namespace(s)}.training_log" for s in seeds]
    with warnings.catch_warnings():
        # The aggregation reads the namespaced outputs by their full names, by design.
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        aggregate = _aggregation(seeds, summaries, logs)
    return sum((seed_pipeline(s) for s in seeds), Pipeline([])) + aggregate


def _aggregation(seeds: list[int], summaries: list[str], logs: list[str]) -> Pipeline:
    """Statistics across the seeds, their figures and the sweep report."""
    return Pipeline(
        [
            Node(
                summarize_seeds,
                ["params:seed_sweep", *summaries],
                "seed_summary",
                name="summarize_seeds",
            ),
            Node(plot_seed_wer, "seed_summary", "seed_wer_plot", name="plot_seed_wer"),
            Node(
                plot_seed_learning_curves,
                ["params:seed_sweep", *logs],
                "seed_learning_curves_plot",
                name="plot_seed_learning_curves",
            ),
            Node(
                write_sweep_report,
                ["seed_summary", "review_flags"],
                "seed_report",
                name="write_sweep_report",
            ),
        ],
        tags="seeds",
    )
