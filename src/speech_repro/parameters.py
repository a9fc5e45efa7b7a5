"""Every parameter the project reads, one typed section each, validated before the first node.

:class:`ProjectParameters` is the schema kedro-repro checks the run's parameters against (see
:mod:`kedro_repro.params`): an unknown key or a value of the wrong type stops the run, naming
the key and where it was set. Nodes receive each ``params:<section>`` as its type here
(:class:`~kedro_repro.parameter_hooks.TypedParametersHook`); the run record keeps the raw values.

A field without a default is one the nodes have always required; the defaults are the ones the
nodes used when a key was left out, so a configuration means what it meant before.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kedro_repro.determinism import DeterminismPolicy
from kedro_repro.params import ParameterSection
from speech_repro.asr.config import AudioPolicy, FeatureConfig, SpecAugmentConfig
from speech_repro.asr.text import TextNormalization


class IntRange(ParameterSection):
    """Inclusive bounds of a whole number."""

    min: int
    max: int


class FloatRange(ParameterSection):
    """Bounds of a real number."""

    min: float
    max: float


class CorpusParams(ParameterSection):
    """The embedded digits corpus (:func:`speech_repro.corpora.digits.plan_digit_corpus`)."""

    seed: int
    accents: list[str]
    variants: list[str]
    utterances_per_speaker: int
    digits: IntRange
    """Digits per utterance, uniform."""
    zero_as_oh_probability: float
    speaker_rate_wpm: FloatRange
    rate_jitter_wpm: float
    speaker_pitch: FloatRange
    pitch_jitter: float
    sample_rate: int


class SplitParams(ParameterSection):
    """The ``split`` parameters: how speakers are put into splits (``assign_splits``).

    ``method``: ``speaker_hash`` (salted hash of the speaker id, cut at ``fractions``),
    ``assigned`` (``assigned`` maps a split name to its speakers; unlisted speakers go to train)
    or ``given`` (the corpus's own split column). The node refuses an unknown method, and a
    split in ``names`` that receives no speaker (except a ``speaker_hash`` split of fraction 0).
    """

    method: str
    salt: str = ""
    names: tuple[str, ...] = ("train", "dev", "test")
    fractions: dict[str, float] = Field(default_factory=dict)
    assigned: dict[str, list[str | int] | None] = Field(default_factory=dict)
    """``{split: [speaker]}``; ids are compared as text."""


class ShardingParams(ParameterSection):
    """How features are written in shards and computed by a process pool."""

    utterances_per_shard: int
    workers: int
    min_utterances_for_pool: int


class DriftParams(ParameterSection):
    """Dev/test feature statistics against train's: flag (or fail) beyond ``max_ks``."""

    max_ks: float
    alpha: float
    fail: bool


class DistributedParams(ParameterSection):
    """Data-parallel training: ``world_size`` processes in all, on ``nnodes`` machines, ``backend``.

    With ``nnodes`` > 1 (docs/scaling.md) each machine runs ``world_size // nnodes`` processes;
    the Kedro machine hosts the c10d ``rendezvous`` (``host:port``) and writes the ranks' inputs to
    ``workdir``, a directory every machine reads and writes under the same path (a shared file
    system). ``join_timeout_s``: how long the machines wait for each other to join.
    """

    world_size: int = 1
    backend: str = "auto"
    nnodes: int = Field(default=1, ge=1)
    rendezvous: str | None = None
    workdir: str | None = None
    join_timeout_s: int = Field(default=600, ge=1)

    @model_validator(mode="after")
    def _fits_the_nodes(self) -> DistributedParams:
        if self.world_size % self.nnodes:
            raise ValueError(
                f"world_size {self.world_size} does not split evenly over nnodes {self.nnodes}: "
                "every machine runs the same number of training processes"
            )
        if self.nnodes > 1 and not (self.rendezvous and self.workdir):
            raise ValueError(
                f"nnodes {self.nnodes} needs rendezvous (host:port of this machine, where the "
                "other machines join) and workdir (a directory every machine shares)"
            )
        return self

    @property
    def nproc_per_node(self) -> int:
        """Training processes on each machine."""
        return self.world_size // self.nnodes


class SelectionParams(ParameterSection):
    """Which weights training returns, judged on ``split`` (greedy raw WER, evaluation's decoding).

    ``criterion``: ``last`` (the final step's weights; what training always returned) or
    ``best_dev_wer`` (the evaluated step with the lowest WER on ``split``; ties: the earlier).
    ``eval_every_steps``: None (once per epoch, at its end), N (every N steps and at the last
    step) or 0 (never: only with ``last`` and no ``patience``). ``patience``: None (train every
    epoch), or stop after K evaluations in a row that do not improve on the best WER by more than
    ``min_delta``. The evaluation consumes no random numbers and leaves the model in train mode,
    so it never changes the trained weights.
    """

    criterion: Literal["last", "best_dev_wer"] = "last"
    split: str = "dev"
    eval_every_steps: int | None = Field(default=None, ge=0)
    patience: int | None = Field(default=None, ge=1)
    min_delta: float = Field(default=0.0, ge=0.0)
    batch_size: int = Field(default=64, ge=1)
    """Utterances per batch when decoding ``split``."""

    @model_validator(mode="after")
    def _needs_evaluations(self) -> SelectionParams:
        if self.eval_every_steps == 0 and (self.criterion != "last" or self.patience is not None):
            raise ValueError(
                f"eval_every_steps 0 evaluates nothing, but criterion {self.criterion!r} and "
                f"patience {self.patience} need dev evaluations: set eval_every_steps to null "
                "(once per epoch) or a number of steps"
            )
        return self


class TrainingParams(ParameterSection):
    """The training loop's settings (:func:`speech_repro.pipelines.training.loop.fit`)."""

    seed: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_fraction: float
    grad_clip: float
    num_workers: int
    checkpoint_every_steps: int | None = None
    """None (or 0): at the end of every epoch only."""
    device: str = "cpu"
    specaugment: SpecAugmentConfig | None
    """None (or an empty mapping): no augmentation."""
    distributed: DistributedParams = Field(default_factory=DistributedParams)
    selection: SelectionParams = Field(default_factory=SelectionParams)

    @field_validator("specaugment", mode="before")
    @classmethod
    def _empty_is_off(cls, value: Any) -> Any:
        # The loop has always trained without augmentation for any false value ({} included).
        return value or None

    @field_validator("distributed", "selection", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return value or {}


class ModelParams(ParameterSection):
    """The tunable architecture of :class:`~speech_repro.asr.model.CTCModel`; its input and
    output sizes come from the data (mel bands, vocabulary), not from parameters."""

    conv_channels: int = 128
    conv_kernel: int = 5
    stride: int = 2
    rnn_hidden: int = 128
    rnn_layers: int = 2
    dropout: float = 0.1


class EvaluationParams(ParameterSection):
    """Which splits are decoded and scored, in batches of ``batch_size``.

    ``lexicon``: None (off), or the words greedy output may be constrained to: each hypothesis
    word is replaced by the closest lexicon word by edit distance (ties: the one listed first),
    and the constrained WER is reported beside the raw one. Words are normalised like the
    transcripts; each must be one non-empty word.
    """

    splits: list[str]
    batch_size: int
    lexicon: list[str] | None = None

    @field_validator("lexicon")
    @classmethod
    def _words(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("an empty lexicon constrains nothing: use null to turn it off")
        bad = [w for w in value if not w.strip() or len(w.split()) != 1]
        if bad:
            raise ValueError(f"lexicon entries must be single words, not {bad}")
        return value


class TextParams(ParameterSection):
    """The character vocabulary and the normalisation training and scoring share."""

    vocabulary: str
    normalization: TextNormalization


class BootstrapParams(ParameterSection):
    """The speaker bootstrap of a run's WER interval."""

    replicates: int
    seed: int


class ReportingParams(ParameterSection):
    """Intervals in the run report."""

    confidence_level: float
    bootstrap: BootstrapParams


class SeedSweepParams(ParameterSection):
    """The seeds the sweep pipeline trains, and the level of the interval across them."""

    seeds: list[int]
    confidence_level: float


class ProjectParameters(ParameterSection):
    """All parameter sections of the project: the schema the run's parameters must fit."""

    corpus: CorpusParams
    audio: AudioPolicy = Field(default_factory=AudioPolicy)
    split: SplitParams
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    sharding: ShardingParams
    drift: DriftParams
    training: TrainingParams
    model: ModelParams = Field(default_factory=ModelParams)
    evaluation: EvaluationParams
    text: TextParams
    determinism: DeterminismPolicy = Field(default_factory=DeterminismPolicy)
    reporting: ReportingParams
    seed_sweep: SeedSweepParams
    relock: Any = None
    """Runtime flag, free-form: ``kedro run --params relock=true`` accepts a changed split lock."""


PARAMETER_SCHEMA = ProjectParameters

# Fixed design choices (what the experiment *is*), recorded apart from the tunable knobs.
DESIGN_SECTIONS = ("text", "audio", "features", "split", "determinism")
