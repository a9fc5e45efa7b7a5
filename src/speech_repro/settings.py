"""Project settings: https://docs.kedro.org/en/stable/kedro_project_setup/settings.html

kedro-repro's hooks (parameter check, determinism policy, run record) and its ``kedro repro``
commands come through its Kedro entry points; this file only tells it about the project
(``REPRO``, see :mod:`speech_repro.project_config`).
"""

from kedro.config import OmegaConfigLoader

from kedro_repro.context import ChosenRunContext
from kedro_repro.session import ClaimedRunSession
from speech_repro.pipelines.embedded_corpus.hooks import EmbeddedCorpusHook
from speech_repro.project_config import REPRO

__all__ = ["REPRO"]

# Registered before kedro-repro's plugin hooks, so those run first: parameters are checked and
# the record opened before the corpus is built.
HOOKS = (EmbeddedCorpusHook(),)  # raw_corpus reads the corpus of the run's corpus parameters

# Claims a unique run id and pins what a run saves to its own version (concurrent runs).
SESSION_CLASS = ClaimedRunSession

# Outside runs (kedro ipython, notebooks, kedro-viz), KEDRO_REPRO_RUN=<run> makes the catalog load
# that run's versions instead of the newest.
CONTEXT_CLASS = ChosenRunContext

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/test, conf/local) overrides single keys, not whole sections.
    "merge_strategy": {"parameters": "soft"},
}
