"""Reporting: what a reviewer must see about one run, as numbers, figures and a Markdown summary.

Figures are built on ``matplotlib.figure.Figure`` directly, never through pyplot, so no global
figure state or GUI backend is involved and the PNG bytes depend only on the data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import jiwer
import pandas as pd
import torch
import torchaudio
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from kedro_repro.determinism import DeterminismPolicy
from kedro_repro.report import IDENTITY_MARKER, Report
from speech_repro.asr.features import FeatureConfig
from speech_repro.asr.stats import (
    UNDEFINED_INTERVAL_METHOD,
    WORD_INTERVAL_METHOD,
    format_interval,
    speaker_wer_interval,
    speaker_word_intervals,
)
from speech_repro.asr.text import TextNormalization
from speech_repro.parameters import ReportingParams
from speech_repro.schemas import in_several_splits, normalized_ids

FIGSIZE = (7.0, 4.0)
TRAIN_SPLIT = "train"  # what the model is fitted on (training/loop.py): never "held out"
WORST_UTTERANCES = 20
TOP_CONFUSIONS = 10
LEARNING_CURVE_FIGURE = "learning_curve.png"
SPEAKER_FIGURE = "speaker_wer.png"


def held_out(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of every split but the training split (dev, test)."""
    return frame[frame["split"] != TRAIN_SPLIT]


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
    """Training loss per step and, where the log has a ``dev_wer`` column, the dev WER at each
    evaluation step (NaN elsewhere) on a second axis."""
    figure = Figure(figsize=FIGSIZE)
    axes = figure.add_subplot()
    lines = axes.plot(
        training_log["step"], training_log["loss"], color="C0", linewidth=1.0, label="training loss"
    )
    axes.set(xlabel="step", ylabel="CTC loss (training)", yscale="log")
    axes.grid(alpha=0.3)
    dev_wer = dev_wer_points(training_log)
    if len(dev_wer):
        dev_axes = axes.twinx()
        lines += dev_axes.plot(
            dev_wer["step"], dev_wer["dev_wer"], "o-", color="C1", markersize=3, label="dev WER"
        )
        dev_axes.set_ylabel("dev WER")
        dev_axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_title("Learning curve: training loss and dev WER")
    else:
        axes.set_title("Learning curve: training loss (the log has no dev WER)")
    axes.legend(handles=lines, fontsize="small")
    figure.tight_layout()
    return figure


def dev_wer_points(training_log: pd.DataFrame) -> pd.DataFrame:
    """Steps at which the log holds a dev WER; empty when it has none (or no such column).

    The CSV keeps an empty cell where training did not evaluate, read back as text: coerced.
    """
    if "dev_wer" not in training_log.columns:
        return pd.DataFrame({"step": [], "dev_wer": []})
    points = training_log.assign(dev_wer=pd.to_numeric(training_log["dev_wer"], errors="coerce"))
    return points.dropna(subset=["dev_wer"])[["step", "dev_wer"]]


def speakers_with_intervals(
    wer_per_speaker: pd.DataFrame, reporting: ReportingParams
) -> pd.DataFrame:
    """Held-out speakers with a per-speaker interval, worst first within each split."""
    speakers = speaker_word_intervals(held_out(wer_per_speaker), reporting.confidence_level)
    return speakers.sort_values(
        ["split", "wer", "speaker"], ascending=[True, False, True]
    ).reset_index(drop=True)


def plot_speaker_wer(wer_per_speaker: pd.DataFrame, reporting: ReportingParams) -> Figure:
    """WER of every held-out speaker (dev, test) with its interval, worst at the top of each split.

    Train speakers are left out: the model was fitted on them, so their WER says nothing about
    whom it fails on.
    """
    speakers = speakers_with_intervals(wer_per_speaker, reporting)
    splits = sorted(speakers["split"].unique())
    rows = [len(speakers[speakers["split"] == s]) for s in splits] or [1]
    figure = Figure(figsize=(FIGSIZE[0], max(FIGSIZE[1], 0.22 * sum(rows) + 1.2 * len(rows))))
    grid = figure.add_gridspec(len(rows), 1, height_ratios=rows)
    level = round(100 * reporting.confidence_level)
    for i, split in enumerate(splits):
        group = speakers[speakers["split"] == split].iloc[::-1]  # barh draws bottom-up
        axes = figure.add_subplot(grid[i], sharex=figure.axes[0] if figure.axes else None)
        low = (group["wer"] - group["ci_low"]).clip(lower=0)
        high = (group["ci_high"] - group["wer"]).clip(lower=0)
        axes.errorbar(
            group["wer"], range(len(group)), xerr=[low, high], fmt="o", color=f"C{i}", capsize=2
        )
        axes.set_yticks(
            range(len(group)),
            [
                f"{s} ({w} words)"
                for s, w in zip(group["speaker"], group["reference_words"], strict=True)
            ],
        )
        axes.tick_params(axis="y", labelsize=7)
        axes.set_ylabel(split)
        axes.set_xlim(left=0)
        axes.xaxis.set_major_formatter(PercentFormatter(1.0))
        axes.grid(axis="x", alpha=0.3)
    if splits:
        figure.axes[0].set_title(
            f"WER per speaker ({', '.join(splits)}), {level} % Wilson interval over words",
            fontsize="medium",
        )
        figure.axes[-1].set_xlabel("WER")
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
    metrics: dict[str, Any],
    wer_summary: dict[str, Any],
    flags: dict[str, Any],
    hypotheses: pd.DataFrame,
    wer_per_speaker: pd.DataFrame,
    training_log: pd.DataFrame,
    reporting: ReportingParams,
) -> Report:
    """The run's report: verdicts, errors with intervals, figures, worst utterances, checks.

    The run's identity (id, commit, data) is not a node's to know: the report dataset puts it
    where :data:`~kedro_repro.report.IDENTITY_MARKER` stands, in the HTML page only.
    """
    splits = sorted(held_out(hypotheses)["split"].unique())
    speaker_title = f"WER per speaker ({', '.join(splits)})"
    normalization = TextNormalization(**metrics["normalization"])
    lines = ["# Run report", "", IDENTITY_MARKER, "", *attention_section(flags), ""]
    lines += [determinism_verdict(flags), "", "## Error rates", ""]
    lines += wer_table(metrics, wer_summary)
    lines += ["", "Text normalisation, in this order:", ""]
    lines += [f"{i}. {rule}" for i, rule in enumerate(normalization_rules(normalization), 1)]
    lines += ["", "## Learning curve", "", f"![Learning curve]({LEARNING_CURVE_FIGURE})", ""]
    if not len(dev_wer_points(training_log)):
        lines += ["The training log has no dev WER: only the training loss is drawn.", ""]
    lines += [f"## {speaker_title}", "", f"![{speaker_title}]({SPEAKER_FIGURE})", ""]
    lines += speaker_table(speakers_with_intervals(wer_per_speaker, reporting), reporting)
    lines += ["", *worst_utterances_section(hypotheses), ""]
    lines += [*confusions_section(hypotheses), "", *flags_section(flags)]
    return Report(
        markdown="\n".join(lines) + "\n",
        figures={
            LEARNING_CURVE_FIGURE: plot_run_learning_curve(training_log),
            SPEAKER_FIGURE: plot_speaker_wer(wer_per_speaker, reporting),
        },
    )


def determinism_verdict(flags: dict[str, Any]) -> str:
    """One line: the determinism mode and what it guarantees."""
    determinism = flags["determinism"]
    return (
        f"**Determinism**: {determinism['mode']} mode, {determinism['threads']} thread(s); "
        f"non-deterministic operations: {determinism['nondeterministic_operations']}."
    )


def normalization_rules(normalization: TextNormalization) -> list[str]:
    """The declared normalisation as rules a reader can check, in the order they apply."""
    rules = [f"Unicode {normalization.unicode_form}"]
    if normalization.lowercase:
        rules.append("lower-case")
    if normalization.remove_punctuation:
        kept = ", ".join(f"`{c}`" for c in normalization.keep_characters)
        rules.append(
            (f"punctuation removed except {kept}" if kept else "punctuation removed")
            + " (Unicode punctuation and symbol characters become spaces)"
        )
    rules.append("runs of whitespace collapsed to one space, ends trimmed")
    return rules


def speaker_table(speakers: pd.DataFrame, reporting: ReportingParams) -> list[str]:
    """Held-out speakers, worst first per split, with WER, interval and edit counts."""
    level = round(100 * reporting.confidence_level)
    lines = [
        f"| split | speaker | WER | {level} % CI | errors (S/D/I) | words | utterances |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in speakers.itertuples():
        lines.append(
            f"| {row.split} | {row.speaker} | {row.wer:.2%} | [{row.ci_low:.2%}, {row.ci_high:.2%}]"
            f" | {row.errors} ({row.substitutions}/{row.deletions}/{row.insertions})"
            f" | {row.reference_words} | {row.utterances} |"
        )
    return [
        *lines,
        "",
        f"Interval: {WORD_INTERVAL_METHOD}. Speakers of the {TRAIN_SPLIT} split are left out:"
        " the model was fitted on them.",
    ]


def worst_utterances(hypotheses: pd.DataFrame, count: int = WORST_UTTERANCES) -> list[dict]:
    """The ``count`` held-out utterances of highest WER (then most errors, then id), aligned."""
    rows = []
    for row in held_out(hypotheses).itertuples():
        out = jiwer.process_words(row.reference, row.hypothesis)
        words = out.hits + out.substitutions + out.deletions
        errors = out.substitutions + out.deletions + out.insertions
        rows.append(
            {
                "utt_id": row.utt_id,
                "split": row.split,
                "speaker": row.speaker,
                "wer": errors / max(words, 1),
                "errors": errors,
                "words": words,
                "counts": (out.substitutions, out.deletions, out.insertions),
                "alignment": aligned_words(out),
            }
        )
    rows.sort(key=lambda r: (-r["wer"], -r["errors"], r["utt_id"]))
    return rows[:count]


def aligned_words(out: jiwer.WordOutput) -> list[str]:
    """``REF:``, ``HYP:`` and an edit line (S, D, I) of one utterance, word under word."""
    reference, hypothesis = out.references[0], out.hypotheses[0]
    columns: list[tuple[str, str, str]] = []
    for chunk in out.alignments[0]:
        ref = reference[chunk.ref_start_idx : chunk.ref_end_idx]
        hyp = hypothesis[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "delete":
            columns += [(r, "*" * len(r), "D") for r in ref]
        elif chunk.type == "insert":
            columns += [("*" * len(h), h, "I") for h in hyp]
        else:
            edit = "S" if chunk.type == "substitute" else ""
            columns += [(r, h, edit) for r, h in zip(ref, hyp, strict=True)]
    widths = [max(len(r), len(h)) for r, h, _ in columns]
    return [
        prefix + " ".join(c[i].ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
        for i, prefix in ((0, "REF: "), (1, "HYP: "), (2, "     "))
    ]


def worst_utterances_section(hypotheses: pd.DataFrame) -> list[str]:
    """The worst held-out utterances, each with its alignment in a code block."""
    worst = worst_utterances(hypotheses)
    splits = ", ".join(sorted(held_out(hypotheses)["split"].unique()))
    lines = [
        f"## {len(worst)} worst utterances ({splits})",
        "",
        "By utterance WER, then word errors; jiwer alignment, S substitution, D deletion,"
        " I insertion.",
    ]
    for i, row in enumerate(worst, 1):
        s, d, n = row["counts"]
        lines += [
            "",
            f"{i}. `{row['utt_id']}` ({row['split']}, speaker `{row['speaker']}`): WER "
            f"{row['wer']:.2%}, {s} S, {d} D, {n} I over {row['words']} words",
            "",
            "```text",
            *row["alignment"],
            "```",
        ]
    return lines


def character_confusions(hypotheses: pd.DataFrame) -> dict[str, Counter]:
    """Character substitutions (reference, hypothesis), deletions and insertions, held out only."""
    frame = held_out(hypotheses)
    found = {"substitutions": Counter(), "deletions": Counter(), "insertions": Counter()}
    if frame.empty:
        return found
    out = jiwer.process_characters(frame["reference"].tolist(), frame["hypothesis"].tolist())
    for reference, hypothesis, chunks in zip(
        out.references, out.hypotheses, out.alignments, strict=True
    ):
        for chunk in chunks:
            ref = reference[chunk.ref_start_idx : chunk.ref_end_idx]
            hyp = hypothesis[chunk.hyp_start_idx : chunk.hyp_end_idx]
            if chunk.type == "substitute":
                found["substitutions"].update(zip(ref, hyp, strict=True))
            elif chunk.type == "delete":
                found["deletions"].update(ref)
            elif chunk.type == "insert":
                found["insertions"].update(hyp)
    return found


def _char(c: str) -> str:
    """A character as a Markdown table cell: spaces visible, pipes escaped."""
    return {" ": "`␣`", "|": "`\\|`", "`": "`` ` ``"}.get(c, f"`{c}`")


def confusions_section(hypotheses: pd.DataFrame) -> list[str]:
    """The most frequent character substitutions, deletions and insertions, side by side."""
    found = character_confusions(hypotheses)

    def top(counter: Counter) -> list[tuple[Any, int]]:
        return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:TOP_CONFUSIONS]

    subs, dels, ins = (top(found[k]) for k in ("substitutions", "deletions", "insertions"))
    totals = {k: sum(v.values()) for k, v in found.items()}
    lines = [
        "## Character confusions",
        "",
        f"Held-out splits, jiwer character alignment: {totals['substitutions']} substitutions, "
        f"{totals['deletions']} deletions, {totals['insertions']} insertions; the "
        f"{TOP_CONFUSIONS} most frequent of each (`␣` is a space).",
        "",
        "| substitution | count | deletion | count | insertion | count |",
        "|---|---|---|---|---|---|",
    ]
    for i in range(max(len(subs), len(dels), len(ins))):
        cells = []
        if i < len(subs):
            (ref, hyp), n = subs[i]
            cells += [f"{_char(ref)} → {_char(hyp)}", str(n)]
        else:
            cells += ["", ""]
        for column in (dels, ins):
            cells += [_char(column[i][0]), str(column[i][1])] if i < len(column) else ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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
