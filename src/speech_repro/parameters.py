"""Every parameter key the project reads, so an unknown key in conf/ stops the run (see repro.params)."""

from kedro_repro.determinism import DeterminismPolicy
from speech_repro.asr.audio import AudioPolicy
from speech_repro.asr.augment import SpecAugmentConfig
from speech_repro.asr.features import FeatureConfig
from speech_repro.asr.model import ModelConfig
from speech_repro.asr.text import TextNormalization

_RANGE = {"min", "max"}

PARAMETER_SCHEMA = {
    "corpus": {
        "seed": None,
        "accents": None,
        "variants": None,
        "utterances_per_speaker": None,
        "digits": _RANGE,
        "zero_as_oh_probability": None,
        "speaker_rate_wpm": _RANGE,
        "rate_jitter_wpm": None,
        "speaker_pitch": _RANGE,
        "pitch_jitter": None,
        "sample_rate": None,
    },
    "audio": AudioPolicy,
    "split": {"method", "salt", "names", "fractions", "assigned"},  # assigned: {split: [speaker]}
    "features": FeatureConfig,
    "sharding": {"utterances_per_shard", "workers", "min_utterances_for_pool"},
    "drift": {"max_ks", "alpha", "fail"},
    "training": {
        "seed": None,
        "epochs": None,
        "batch_size": None,
        "learning_rate": None,
        "weight_decay": None,
        "warmup_fraction": None,
        "grad_clip": None,
        "num_workers": None,
        "checkpoint_every_steps": None,
        "device": None,
        "specaugment": SpecAugmentConfig,
        "distributed": {"world_size", "backend"},
    },
    "model": ModelConfig,
    "evaluation": {"splits", "batch_size"},
    "text": {"vocabulary": None, "normalization": TextNormalization},
    "determinism": DeterminismPolicy,
    "reporting": {"confidence_level": None, "bootstrap": {"replicates", "seed"}},
    "seed_sweep": {"seeds", "confidence_level"},
    "relock": None,  # runtime flag: `kedro run --params relock=true` accepts a changed split lock
}

# Fixed design choices (what the experiment *is*), recorded apart from the tunable knobs.
DESIGN_SECTIONS = ("text", "audio", "features", "split", "determinism")
