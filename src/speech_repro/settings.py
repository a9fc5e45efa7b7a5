"""Project settings: https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from kedro.config import OmegaConfigLoader

from speech_repro.parameters import PARAMETER_SCHEMA
from speech_repro.repro.hooks import DeterminismHook, ParameterCheckHook

# Hooks run last-registered first: parameters are checked before anything else happens.
HOOKS = (DeterminismHook(), ParameterCheckHook(PARAMETER_SCHEMA))

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/test, conf/local) overrides single keys, not whole sections.
    "merge_strategy": {"parameters": "soft"},
}
