"""What this project tells kedro-repro about itself: one :class:`ReproConfig` (``REPRO``).

kedro-repro names no dataset, folder, metric or variable of its own; settings.py hands it this
object. The functions here are the speech-specific parts the commands call: the metric test of
a diverged replay (a speaker-level paired bootstrap) and how metrics read to people.
"""

from __future__ import annotations

import os
from typing import Any

from kedro_repro.config import (
    EnvironmentSpec,
    Headline,
    MetricSource,
    MetricTest,
    Presentation,
    ReproConfig,
    SnapshotTable,
    StepReplay,
    Tracking,
)
from speech_repro.names import HYPOTHESES, SUMMARY_SPLIT
from speech_repro.parameters import DESIGN_SECTIONS, PARAMETER_SCHEMA


def same_summary_wer(recorded: Any, replayed: Any) -> dict[str, Any]:
    """Speaker-level paired bootstrap of the summary split's WER difference between two runs'
    hypotheses: equivalent when the interval contains 0."""
    from speech_repro.asr.stats import paired_speaker_bootstrap  # jiwer and scipy: only if used

    return paired_speaker_bootstrap(
        recorded[recorded["split"] == SUMMARY_SPLIT], replayed[replayed["split"] == SUMMARY_SPLIT]
    )


def describe_wer_test(verdict: dict[str, Any]) -> str:
    """``test WER 0.0383 -> 0.0391 (delta +0.0008, speaker-bootstrap 95% CI [...], 4 speakers)``."""
    from speech_repro.asr.stats import format_interval

    return (
        f"{SUMMARY_SPLIT} WER {verdict['wer_a']:.4f} -> {verdict['wer_b']:.4f} "
        f"(delta {verdict['delta']:+.4f}, speaker-bootstrap {100 * verdict['level']:.0f}% CI "
        f"{format_interval(verdict, '+.4f')}, {verdict['speakers']} speakers)"
    )


def replay_training(*args: Any) -> list[dict[str, Any]]:
    """``verify --bisect``'s replay of the training (torch: imported only when it runs)."""
    from speech_repro.pipelines.training.replay import replay_training

    return replay_training(*args)


def train_segment(inputs: Any, stop_step: int) -> None:
    """``kedro repro verify --segments``: train one checkpoint interval (torch: only if used)."""
    from speech_repro.pipelines.training.segment import train_segment as train

    train(inputs, stop_step)


def segment_warmup() -> None:
    """What every segment would import again after the fork: the training code, and
    ``torch._dynamo``, which torch.optim's constructors import lazily (about 1 s)."""
    import torch._dynamo  # noqa: F401

    import speech_repro.pipelines.training.segment  # noqa: F401


def describe_metrics(metrics: dict[str, Any]) -> list[str]:
    """One line per scored split: WER, CER, MER, WIL and the number of utterances (with a
    lexicon, the constrained WER too); then which training step the model is, and why."""
    lines = [
        f"{split:<6} WER {r['wer']:.4f}  CER {r['cer']:.4f}  MER {r['mer']:.4f}  "
        f"WIL {r['wil']:.4f}"
        + (f"  constrained WER {r['constrained_wer']:.4f}" if "constrained_wer" in r else "")
        + f"  ({r['utterances']} utterances)"
        for split, r in (metrics.get("splits") or {}).items()
    ]
    if selection := metrics.get("selection"):  # runs from before selection was recorded: none
        lines.append(
            f"model  step {selection['selected_step']} of {selection['planned_steps']} "
            f"({selection['criterion']}): {selection['reason']}"
        )
    return lines


def wer_headline(split: str) -> Headline:
    """``test WER 4.84 % (95 % CI ...)`` from the run's ``wer_summary`` (speaker bootstrap)."""
    entry = f"splits.{split}"
    return Headline(
        label=f"{split} WER",
        dataset="wer_summary",
        value=f"{entry}.wer",
        low=f"{entry}.ci_low",
        high=f"{entry}.ci_high",
        level=f"{entry}.level",
        undefined=f"{entry}.ci_undefined",
        percent=True,
    )


SEED_HEADLINE = Headline(
    label=f"{SUMMARY_SPLIT} WER across seeds",
    dataset="seed_summary",
    value=f"splits.{SUMMARY_SPLIT}.across_seeds.mean",
    low=f"splits.{SUMMARY_SPLIT}.across_seeds.ci_low",
    high=f"splits.{SUMMARY_SPLIT}.across_seeds.ci_high",
    level=f"splits.{SUMMARY_SPLIT}.across_seeds.level",
    percent=True,
)
"""A seed sweep's mean WER with its Student-t interval over seeds."""

REPRO = ReproConfig(
    name="speech-repro",
    environment=EnvironmentSpec(
        variable_prefixes=("SPEECH_REPRO",),
        value_variables=frozenset({"SPEECH_REPRO_RECORD"}),
        lock_files=("uv.lock", "flake.lock"),
        torch_companions={"torchaudio_version": "torchaudio"},
    ),
    design_sections=DESIGN_SECTIONS,
    snapshot=SnapshotTable(dataset="split_lock", key="utt_id", value="digest"),
    current_data=SnapshotTable(dataset="raw_corpus", key="utt_id", value="digest"),
    metric_dataset="metrics",
    metric_test=MetricTest(
        dataset=HYPOTHESES, equivalent=same_summary_wer, describe=describe_wer_test
    ),
    resume_dataset="training_checkpoints",
    train_segment=train_segment,
    segment_warmup=segment_warmup,
    data_dirs=("data/01_raw",),
    parameter_schema=PARAMETER_SCHEMA,
    determinism_section="determinism",
    # SPEECH_REPRO_RECORD=0 runs without the record, only to measure what recording costs (bench/).
    record=os.environ.get("SPEECH_REPRO_RECORD", "1") != "0",
    rerun_pipelines=("evaluation",),  # re-evaluate a past run's model
    presentation=Presentation(
        # Columns say which split they score: test_wer, test_cer.
        summary_metrics={
            f"{SUMMARY_SPLIT}_{m}": f"splits.{SUMMARY_SPLIT}.{m}" for m in ("wer", "cer")
        },
        seed="training.seed",
        review_dataset="review_flags",
        describe_metrics=describe_metrics,
        # The last lines of `kedro run`: test and dev WER with their intervals, then the sweep's.
        headlines=(wer_headline(SUMMARY_SPLIT), wer_headline("dev"), SEED_HEADLINE),
        report_datasets=("run_report", "seed_report"),
    ),
    # `kedro repro verify --bisect`: the training replayed from a checkpoint, its log as the
    # per-step trace (loss and gradient norm, compared bit for bit).
    step_replay=StepReplay(
        inputs=("features", "split_lock", "manifest", "norm_stats"),
        run=replay_training,
        trace_dataset="training_log",
        trace_columns=("loss", "grad_norm", "learning_rate"),
    ),
    # `kedro repro mlflow-sync`: WER/CER/MER/WIL per split with the speaker-bootstrap interval,
    # and for a seed sweep the mean, spread and Student-t interval of the WER over seeds.
    tracking=Tracking(
        metrics=(
            MetricSource("metrics", "splits.*", ("wer", "cer", "mer", "wil", "utterances")),
            MetricSource("wer_summary", "splits.*", ("ci_low", "ci_high"), prefix="wer_"),
            MetricSource(
                "seed_summary",
                "splits.*.across_seeds",
                ("mean", "std", "ci_low", "ci_high"),
                prefix="wer_",
            ),
        ),
        artifacts=(
            "run_report",
            "review_flags",
            "feature_distribution_plot",
            "learning_curve_plot",
            "speaker_wer_plot",
            "seed_summary",
            "seed_report",
            "seed_wer_plot",
            "seed_learning_curves_plot",
        ),
    ),
)
