"""Project settings: https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

import os

from kedro.config import OmegaConfigLoader

from speech_repro.parameters import DESIGN_SECTIONS, PARAMETER_SCHEMA
from speech_repro.pipelines.embedded_corpus.hooks import EmbeddedCorpusHook
from speech_repro.repro.hooks import DeterminismHook, ParameterCheckHook, RunRecordHook
from speech_repro.repro.session import ClaimedRunSession

RUN_RECORD = RunRecordHook(
    design_sections=DESIGN_SECTIONS,
    snapshot={"dataset": "split_lock", "key": "utt_id", "value": "digest"},
    metrics_dataset="metrics",
    resume_dataset="training_checkpoints",
)

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
