"""Reporting: what a reviewer must see about one run, as numbers, figures and a Markdown summary.

Figures are built on ``matplotlib.figure.Figure`` directly, never through pyplot, so no global
figure state or GUI backend is involved and the PNG bytes depend only on the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
import torchaudio
from matplotlib.figure import Figure

from kedro_repro.determinism import DeterminismPolicy
from speech_repro.asr.features import FeatureConfig
from speech_repro.asr.stats import UNDEFINED_INTERVAL_METHOD, format_interval, speaker_wer_interval
from speech_repro.parameters import ReportingParams
from speech_repro.schemas import in_several_splits, normalized_ids

FIGSIZE = (7.0, 4.0)


def wer_intervals(hypotheses: pd.DataFrame, reporting: ReportingParams) -> dict[str, Any]:
    """Per split: WER with a confidence interval from a bootstrap over speakers."""
    bootstrap = reporting.bootstrap
    return {
        "splits": {
            split: speaker_wer_interval(
                frame,
                replicates=bootstrap.replicates,
                seed=bootstrap.seed,
                level=reporting.confidence_level,
            )
            for split, frame in hypotheses.groupby("split", sort=True)
        }
    }


MIN_SPEAKERS_FOR_INTERVAL = 2  # an interval over speakers needs at least two to resample


def review_flags(
    split_lock: pd.DataFrame,
    drift_report: dict[str, Any],
    determinism: DeterminismPolicy,
    manifest: pd.DataFrame,
    features: FeatureConfig,
) -> dict[str, Any]:
    """What a reviewer must see before trusting a number: leakage, drift, determinism, splits
    too small for an interval, and audio narrower than the features assume.

    Leakage is counted again here, from the lock itself, rather than trusted to have been
    checked: speakers (after Unicode normalisation) and identical audio (by content digest)
    present in more than one split. A split of fewer than two speakers gets no confidence
    interval. Audio whose native rate puts its bandwidth (rate / 2) below ``features.f_max`` is
    upsampled without new content, so its top mel bands hold only the log floor.
    """
    leaking_speakers = in_several_splits(split_lock, "speaker")
    leaking_audio = len(in_several_splits(split_lock, "digest"))
    strict = determinism.mode == "strict" and determinism.deterministic_algorithms
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
            "mode": determinism.mode,
            "threads": determinism.threads,
            "nondeterministic_operations": (
                "none possible: strict mode stops the run at the first one"
                if strict
                else "allowed: listed in the run record (kedro repro show RUN_ID)"
            ),
        },
        "splits": split_sizes(split_lock),
        "bandwidth": narrow_band_audio(manifest, features),
    }
    flags["attention"] = _attention(flags)
    return flags


def split_sizes(split_lock: pd.DataFrame) -> dict[str, Any]:
    """Speakers and utterances per split, and the splits too small for an interval over speakers."""
    voices = split_lock.assign(voice=normalized_ids(split_lock["speaker"]))
    sizes = {
        split: {"speakers": int(group["voice"].nunique()), "utterances": len(group)}
        for split, group in voices.groupby("split", sort=True)
    }
    return {
        "sizes": sizes,
        "too_few_speakers": [
            split for split, size in sizes.items() if size["speakers"] < MIN_SPEAKERS_FOR_INTERVAL
        ],
    }


def narrow_band_audio(manifest: pd.DataFrame, features: FeatureConfig) -> dict[str, Any]:
    """Utterances whose native bandwidth (rate / 2) is below ``features.f_max``, by rate.

    ``empty_mel_bands`` counts, per rate, the mel bands whose filter has no weight below that
    bandwidth: resampling adds no content there, so they hold only the log floor.
    """
    narrow = manifest.loc[manifest["sample_rate"] / 2 < features.f_max, "sample_rate"]
    counts = narrow.value_counts().sort_index()
    return {
        "f_max": float(features.f_max),
        "utterances": len(narrow),
        "sample_rates": {str(rate): int(n) for rate, n in counts.items()},
        "empty_mel_bands": {
            str(rate): mel_bands_above(features, rate / 2) for rate in counts.index
        },
        "n_mels": features.n_mels,
    }


def mel_bands_above(features: FeatureConfig, frequency: float) -> int:
    """How many mel bands of ``features`` have no filter weight below ``frequency`` (Hz)."""
    n_freqs = features.n_fft // 2 + 1
    filters = torchaudio.functional.melscale_fbanks(
        n_freqs,
        features.f_min,
        features.f_max,
        features.n_mels,
        features.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )  # the filterbank of asr.features.LogMel
    below = torch.linspace(0, features.sample_rate / 2, n_freqs) < frequency
    return int((filters[below].sum(0) == 0).sum())


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
    for split in flags["splits"]["too_few_speakers"]:
        speakers = flags["splits"]["sizes"][split]["speakers"]
        found.append(
            f"split {split} has {speakers} speaker{'' if speakers == 1 else 's'}: its WER has no "
            f"confidence interval (an interval over speakers needs {MIN_SPEAKERS_FOR_INTERVAL})"
        )
    bandwidth = flags["bandwidth"]
    for rate, count in bandwidth["sample_rates"].items():
        found.append(
            f"{count} utterance(s) at {rate} Hz have no content above {int(rate) // 2} Hz, below "
            f"features.f_max {bandwidth['f_max']:g} Hz: the top {bandwidth['empty_mel_bands'][rate]}"
            f" of {bandwidth['n_mels']} mel bands lie entirely above {int(rate) // 2} Hz and hold"
            " only the log floor (upsampling adds no bandwidth)"
        )
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
        return [
            "**Nothing flagged**: no leakage, no drift, strict determinism, every evaluated split"
            " has an interval over speakers, no audio narrower than the features."
        ]
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
            f"| {split} | {entry['wer']:.2%} | {format_interval(entry)}"
            f" | {metrics['splits'][split]['cer']:.2%} | {entry['speakers']}"
            f" | {entry['utterances']} | {entry['words']} |"
        )
    lines += ["", f"Interval: {interval_methods([wer_summary])}."]
    lines.append(f"Text normalization: `{metrics['normalization']}`.")
    return lines


def interval_methods(wer_summaries: list[dict[str, Any]]) -> str:
    """The interval methods used (BCa falls back to percentile where it is undefined).

    Splits without an interval (fewer than two speakers) name no method; the table says why.
    """
    methods = {e["method"] for s in wer_summaries for e in s["splits"].values()}
    return (
        "; ".join(sorted(methods - {UNDEFINED_INTERVAL_METHOD}))
        or "none (every split has fewer than 2 speakers)"
    )


def flags_section(flags: dict[str, Any]) -> list[str]:
    """Leakage, drift and determinism details as a list."""
    leakage, drift, determinism = flags["leakage"], flags["drift"], flags["determinism"]
    sizes = flags["splits"]["sizes"]
    bandwidth = flags["bandwidth"]
    return [
        "## Checks",
        "",
        "- Speakers per split: "
        + ", ".join(f"{split} {size['speakers']}" for split, size in sizes.items()),
        f"- Audio narrower than features.f_max {bandwidth['f_max']:g} Hz: "
        f"{bandwidth['utterances']} utterance(s)"
        + (f" at {', '.join(bandwidth['sample_rates'])} Hz" if bandwidth["utterances"] else ""),
        f"- Speakers in several splits: {len(leakage['speakers_in_several_splits'])}",
        f"- Identical audio in several splits: {leakage['audio_in_several_splits']}",
        f"- Feature drift against {drift['reference']} (KS > {drift['max_ks']} and above the "
        f"critical value): {drift['flagged_splits'] or 'none'}",
        f"- Determinism: mode {determinism['mode']}, {determinism['threads']} thread(s); "
        f"non-deterministic operations: {determinism['nondeterministic_operations']}",
    ]
