"""Seed sweep nodes: one seed into the training settings, then statistics across the seeds."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from kedro_repro.seed_stats import (
    OUTLIER_METHOD,
    T_INTERVAL_METHOD,
    outlying_seeds,
    t_interval,
)
from speech_repro.asr.stats import format_interval
from speech_repro.parameters import SeedSweepParams, TrainingParams
from speech_repro.pipelines.reporting.nodes import (
    FIGSIZE,
    attention_section,
    flags_section,
    interval_methods,
    plot_learning_curves,
)


def with_seed(training: TrainingParams, seed_sweep: SeedSweepParams, seed: int) -> TrainingParams:
    """The training settings with ``seed`` in place of ``training.seed``.

    The sweep's namespaces are built from ``seed_sweep.seeds`` when the pipeline is registered;
    a run whose parameters list other seeds (``--params``, another environment) stops here,
    before anything is trained, instead of reporting seeds it did not run.
    """
    if seed not in seed_sweep.seeds:
        raise ValueError(
            f"the seeds pipeline was built for seed {seed}, but seed_sweep.seeds is "
            f"{seed_sweep.seeds}: the seed list shapes the pipeline, so set it in "
            "conf/<env>/parameters_seeds.yml and run with KEDRO_ENV=<env>"
        )
    return training.model_copy(update={"seed": seed})


def summarize_seeds(seed_sweep: SeedSweepParams, *wer_summaries: dict[str, Any]) -> dict[str, Any]:
    """Per split: each seed's WER (with its interval over speakers), then statistics across seeds.

    ``wer_summaries`` come in the order of ``seed_sweep.seeds``.
    """
    seeds = list(seed_sweep.seeds)
    if len(seeds) != len(wer_summaries):
        raise ValueError(f"{len(wer_summaries)} results for {len(seeds)} seeds")
    level = seed_sweep.confidence_level
    splits: dict[str, Any] = {}
    for split in wer_summaries[0]["splits"]:
        per_seed = {seed: s["splits"][split] for seed, s in zip(seeds, wer_summaries, strict=True)}
        wers = {seed: entry["wer"] for seed, entry in per_seed.items()}
        splits[split] = {
            "per_seed": {
                str(seed): {k: entry.get(k) for k in ("wer", "ci_low", "ci_high", "ci_undefined")}
                for seed, entry in per_seed.items()
            },
            "across_seeds": t_interval(list(wers.values()), level),
            "outlier_seeds": outlying_seeds(wers, level),
        }
    return {
        "seeds": seeds,
        "metric": "wer",
        "splits": splits,
        "methods": {
            "across_seeds": T_INTERVAL_METHOD,
            "within_run": interval_methods(list(wer_summaries)),
            "outliers": OUTLIER_METHOD,
        },
    }


def plot_seed_wer(summary: dict[str, Any]) -> Figure:
    """WER per seed with its interval over speakers, and the across-seed mean with its t-interval."""
    splits = list(summary["splits"])
    figure = Figure(figsize=(FIGSIZE[0], FIGSIZE[1] * max(1, len(splits)) * 0.6))
    for row, split in enumerate(splits):
        entry = summary["splits"][split]
        axes = figure.add_subplot(len(splits), 1, row + 1)
        seeds = list(entry["per_seed"])
        wer = [entry["per_seed"][s]["wer"] for s in seeds]
        results = [entry["per_seed"][s] for s in seeds]
        # A seed without an interval over speakers (fewer than 2 speakers) gets no error bar.
        errors = [
            [0.0 if r["ci_low"] is None else r["wer"] - r["ci_low"] for r in results],
            [0.0 if r["ci_high"] is None else r["ci_high"] - r["wer"] for r in results],
        ]
        outliers = {str(s) for s in entry["outlier_seeds"]}
        colours = ["C3" if s in outliers else "C0" for s in seeds]
        axes.scatter(range(len(seeds)), wer, color=colours, zorder=3)
        axes.errorbar(range(len(seeds)), wer, yerr=errors, fmt="none", ecolor="C0", capsize=3)
        across = entry["across_seeds"]
        axes.axhline(across["mean"], color="C1", linewidth=1.0, label="mean over seeds")
        if across["ci_low"] is not None:
            axes.axhspan(
                across["ci_low"],
                across["ci_high"],
                color="C1",
                alpha=0.15,
                label=f"{round(100 * across['level'])} % t-interval",
            )
        axes.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
        axes.set(ylabel=f"{split} WER")
        axes.grid(axis="y", alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle("WER per seed (bars: interval over speakers)")
    figure.tight_layout()
    return figure


def plot_seed_learning_curves(seed_sweep: SeedSweepParams, *training_logs: pd.DataFrame) -> Figure:
    """The learning curves of every seed on one set of axes."""
    return plot_learning_curves(
        {f"seed {seed}": log for seed, log in zip(seed_sweep.seeds, training_logs, strict=True)}
    )


def write_sweep_report(summary: dict[str, Any], flags: dict[str, Any]) -> str:
    """The sweep's summary in Markdown: per-seed results, statistics across seeds, outliers."""
    outliers = {
        split: entry["outlier_seeds"]
        for split, entry in summary["splits"].items()
        if entry["outlier_seeds"]
    }
    attention = {
        **flags,
        "attention": [
            *flags["attention"],
            *(f"outlier seeds on {split}: {seeds}" for split, seeds in outliers.items()),
        ],
    }
    level = round(100 * next(iter(summary["splits"].values()))["across_seeds"]["level"])
    lines = [
        f"# Seed sweep report ({len(summary['seeds'])} seeds)",
        "",
        *attention_section(attention),
        "",
        "## WER across seeds",
        "",
        f"| split | mean | std | {level} % CI of the mean | outlier seeds |",
        "|---|---|---|---|---|",
    ]
    for split, entry in summary["splits"].items():
        across = entry["across_seeds"]
        spread = "–" if across["std"] is None else f"{across['std']:.2%}"
        interval = (
            "–"
            if across["ci_low"] is None
            else f"[{across['ci_low']:.2%}, {across['ci_high']:.2%}]"
        )
        lines.append(
            f"| {split} | {across['mean']:.2%} | {spread} | {interval}"
            f" | {entry['outlier_seeds'] or 'none'} |"
        )
    lines += [
        "",
        "## WER per seed",
        "",
        f"| split | seed | WER | {level} % CI over speakers |",
        "|---|---|---|---|",
    ]
    for split, entry in summary["splits"].items():
        for seed, result in entry["per_seed"].items():
            lines.append(f"| {split} | {seed} | {result['wer']:.2%} | {format_interval(result)} |")
    methods = summary["methods"]
    lines += [
        "",
        "## Methods",
        "",
        f"- Across seeds: {methods['across_seeds']}.",
        f"- Within a run: {methods['within_run']}.",
        f"- Outliers: {methods['outliers']}.",
        "",
        *flags_section(flags),
    ]
    return "\n".join(lines) + "\n"
