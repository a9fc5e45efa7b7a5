"""Project settings: https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

import os
from typing import Any

from kedro.config import OmegaConfigLoader

from speech_repro.parameters import DESIGN_SECTIONS, PARAMETER_SCHEMA
from speech_repro.pipelines.embedded_corpus.hooks import EmbeddedCorpusHook
from speech_repro.repro.config import EnvironmentSpec, MetricTest, ReproConfig, SnapshotTable
from speech_repro.repro.hooks import DeterminismHook, ParameterCheckHook, RunRecordHook
from speech_repro.repro.session import ClaimedRunSession

SUMMARY_SPLIT = "test"
"""The split whose WER sums a run up (runs listing, metric equivalence of a replay)."""


def same_summary_wer(recorded: Any, replayed: Any) -> dict[str, Any]:
    """Speaker-level paired bootstrap of the summary split's WER difference between two runs'
    hypotheses: equivalent when the interval contains 0."""
    from speech_repro.asr.stats import paired_speaker_bootstrap  # jiwer and scipy: only if used

    return paired_speaker_bootstrap(
        recorded[recorded["split"] == SUMMARY_SPLIT], replayed[replayed["split"] == SUMMARY_SPLIT]
    )


# Everything project-specific the reproducibility machinery (speech_repro.repro) uses: it names
# no dataset, folder or variable itself. Commands read it as kedro.framework.project.settings.REPRO.
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
    metric_dataset="metrics",
    metric_test=MetricTest(dataset="hypotheses", equivalent=same_summary_wer),
    resume_dataset="training_checkpoints",
    data_dirs=("data/01_raw",),
)

RUN_RECORD = RunRecordHook(REPRO)

# Hooks run last-registered first: parameters are checked before anything else happens.
# SPEECH_REPRO_RECORD=0 runs without the record, only to measure what recording costs (bench/).
HOOKS = (
    *((RUN_RECORD,) if os.environ.get("SPEECH_REPRO_RECORD", "1") != "0" else ()),
    DeterminismHook(),
    EmbeddedCorpusHook(),  # raw_corpus reads the corpus of the run's corpus parameters
    ParameterCheckHook(PARAMETER_SCHEMA),
)

SESSION_CLASS = ClaimedRunSession

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/test, conf/local) overrides single keys, not whole sections.
    "merge_strategy": {"parameters": "soft"},
}
