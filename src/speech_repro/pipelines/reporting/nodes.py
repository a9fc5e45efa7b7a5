"""Reporting: what a reviewer must see about one run, as numbers, figures and a Markdown summary.

Figures are built on ``matplotlib.figure.Figure`` directly, never through pyplot, so no global
figure state or GUI backend is involved and the PNG bytes depend only on the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from speech_repro.asr.stats import speaker_wer_interval
from speech_repro.schemas import in_several_splits

FIGSIZE = (7.0, 4.0)


def wer_intervals(hypotheses: pd.DataFrame, reporting: dict[str, Any]) -> dict[str, Any]:
    """Per split: WER with a confidence interval from a bootstrap over speakers."""
    bootstrap = reporting["bootstrap"]
    return {
        "splits": {
            split: speaker_wer_interval(
                frame,
                replicates=bootstrap["replicates"],
                seed=bootstrap["seed"],
                level=reporting["confidence_level"],
            )
            for split, frame in hypotheses.groupby("split", sort=True)
        }
    }


def review_flags(
    split_lock: pd.DataFrame, drift_report: dict[str, Any], determinism: dict[str, Any]
) -> dict[str, Any]:
    """What a reviewer must see before trusting a number: leakage, drift, determinism.

    Leakage is counted again here, from the lock itself, rather than trusted to have been
    checked: speakers and identical audio (by content digest) present in more than one split.
    """
    leaking_speakers = in_several_splits(split_lock, "speaker")
    leaking_audio = len(in_several_splits(split_lock, "digest"))
    strict = determinism["mode"] == "strict" and determinism["deterministic_algorithms"]
    flags = {
        "leakage": {
            "speakers_in_several_splits": leaking_speakers,
            "audio_in_several_splits": leaking_audio,
        },
        "drift": {
            "reference": drift_report["reference"],
            "flagged_splits": drift_report["flagged"],
            "max_ks": drift_report["max_ks"],
        },
        "determinism": {
            "mode": determinism["mode"],
            "threads": determinism["threads"],
            "nondeterministic_operations": (
                "none possible: strict mode stops the run at the first one"
                if strict
                else "allowed: listed in the run record (kedro repro show RUN_ID)"
            ),
        },
    }
    flags["attention"] = _attention(flags)
    return flags


def _attention(flags: dict[str, Any]) -> list[str]:
    """One sentence per problem found; empty when there is nothing to look at."""
    found = []
    leakage = flags["leakage"]
    if leakage["speakers_in_several_splits"]:
        found.append(f"speakers in several splits: {leakage['speakers_in_several_splits']}")
    if leakage["audio_in_several_splits"]:
        found.append(f"{leakage['audio_in_several_splits']} audio files in several splits")
    if flags["drift"]["flagged_splits"]:
        found.append(f"feature drift against train in {flags['drift']['flagged_splits']}")
    if flags["determinism"]["mode"] != "strict":
        found.append("non-deterministic operations were allowed (determinism.mode: warn)")
    return found


def plot_learning_curves(training_logs: Mapping[str, pd.DataFrame]) -> Figure:
    """Training loss per step, one line per run (a label per seed in a sweep)."""
    figure = Figure(figsize=FIGSIZE)
    axes = figure.add_subplot()
    for label, log in training_logs.items():
        axes.plot(log["step"], log["loss"], label=label, linewidth=1.0)
    axes.set(xlabel="step", ylabel="CTC loss", yscale="log", title="Learning curves")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def plot_run_learning_curve(training_log: pd.DataFrame) -> Figure:
    """The learning curve of one run."""
    return plot_learning_curves({"training loss": training_log})


def plot_speaker_wer(wer_per_speaker: pd.DataFrame) -> Figure:
    """WER of every speaker, grouped by split: who the model fails on."""
    ordered = wer_per_speaker.sort_values(["split", "wer", "speaker"]).reset_index(drop=True)
    figure = Figure(figsize=(FIGSIZE[0], max(FIGSIZE[1], 0.18 * len(ordered) + 1)))
    axes = figure.add_subplot()
    colours = {split: f"C{i}" for i, split in enumerate(sorted(ordered["split"].unique()))}
    axes.barh(
        range(len(ordered)),
        ordered["wer"],
        color=[colours[s] for s in ordered["split"]],
    )
    axes.set_yticks(range(len(ordered)), ordered["split"] + " / " + ordered["speaker"])
    axes.tick_params(axis="y", labelsize=6)
    axes.set(xlabel="WER", title="WER per speaker")
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def plot_feature_distributions(feature_stats: pd.DataFrame, split_lock: pd.DataFrame) -> Figure:
    """Per-utterance feature mean and deviation of each split against the train reference."""
    stats = feature_stats.merge(split_lock[["utt_id", "split"]], on="utt_id")
    figure = Figure(figsize=FIGSIZE)
    for i, column in enumerate(("mean", "std")):
        axes = figure.add_subplot(1, 2, i + 1)
        for split, frame in stats.groupby("split", sort=True):
            axes.hist(
                frame[column],
                bins=30,
                density=True,
                histtype="step" if split != "train" else "stepfilled",
                alpha=0.4 if split == "train" else 1.0,
                label=f"{split} (reference)" if split == "train" else split,
            )
        axes.set(xlabel=f"per-utterance log-mel {column}", ylabel="density")
        axes.legend(fontsize="small")
    figure.suptitle("Feature distributions against the train split")
    figure.tight_layout()
    return figure


def write_run_report(
    metrics: dict[str, Any], wer_summary: dict[str, Any], flags: dict[str, Any]
) -> str:
    """The run's summary in Markdown: errors with intervals, then what needs attention."""
    lines = ["# Run report", "", *attention_section(flags), "", "## Error rates", ""]
    lines += wer_table(metrics, wer_summary)
    lines += ["", *flags_section(flags)]
    return "\n".join(lines) + "\n"


def attention_section(flags: dict[str, Any]) -> list[str]:
    """A headline: either nothing to flag, or a bullet per problem."""
    if not flags["attention"]:
        return ["**Nothing flagged**: no leakage, no drift, strict determinism."]
    return ["**Needs attention:**", "", *(f"- {item}" for item in flags["attention"])]


def wer_table(metrics: dict[str, Any], wer_summary: dict[str, Any]) -> list[str]:
    """Markdown table of WER (with its interval), CER and sizes per split."""
    first = next(iter(wer_summary["splits"].values()))
    level = round(100 * first["level"])
    lines = [
        f"| split | WER | {level} % CI | CER | speakers | utterances | words |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, entry in wer_summary["splits"].items():
        lines.append(
            f"| {split} | {entry['wer']:.2%} | [{entry['ci_low']:.2%}, {entry['ci_high']:.2%}]"
            f" | {metrics['splits'][split]['cer']:.2%} | {entry['speakers']}"
            f" | {entry['utterances']} | {entry['words']} |"
        )
    lines += ["", f"Interval: {interval_methods([wer_summary])}."]
    lines.append(f"Text normalization: `{metrics['normalization']}`.")
    return lines


def interval_methods(wer_summaries: list[dict[str, Any]]) -> str:
    """The interval methods used (BCa falls back to percentile where it is undefined)."""
    methods = {e["method"] for s in wer_summaries for e in s["splits"].values()}
    return "; ".join(sorted(methods))


def flags_section(flags: dict[str, Any]) -> list[str]:
    """Leakage, drift and determinism details as a list."""
    leakage, drift, determinism = flags["leakage"], flags["drift"], flags["determinism"]
    return [
        "## Checks",
        "",
        f"- Speakers in several splits: {len(leakage['speakers_in_several_splits'])}",
        f"- Identical audio in several splits: {leakage['audio_in_several_splits']}",
        f"- Feature drift against {drift['reference']} (KS > {drift['max_ks']} and above the "
        f"critical value): {drift['flagged_splits'] or 'none'}",
        f"- Determinism: mode {determinism['mode']}, {determinism['threads']} thread(s); "
        f"non-deterministic operations: {determinism['nondeterministic_operations']}",
    ]
