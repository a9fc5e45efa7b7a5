"""What a project tells the reproducibility machinery about itself: one typed object.

Nothing in :mod:`kedro_repro` names a project's datasets, folders, lock files or
environment variables. The project builds one :class:`ReproConfig` in its ``settings.py``
(``REPRO = ReproConfig(...)``), hands it to :class:`~kedro_repro.hooks.RunRecordHook`, and
its commands read it back through Kedro (:func:`project_config`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricTest:
    """The project's own test of whether a replay's metrics are equivalent to the run's."""

    dataset: str
    """What the test compares, loaded as each run saved it (e.g. per-item predictions)."""
    equivalent: Callable[[Any, Any], dict[str, Any]]
    """``equivalent(recorded, replayed)``: a JSON-native verdict holding at least
    ``{"equivalent": bool}``."""
    describe: Callable[[dict[str, Any]], str] | None = None
    """One line for people from a verdict (``verify`` prints it); the JSON otherwise."""


@dataclass(frozen=True)
class SnapshotTable:
    """A table written beside the record as the data snapshot: ``key`` column -> ``value`` column."""

    dataset: str
    key: str
    value: str


@dataclass(frozen=True)
class EnvironmentSpec:
    """The project-specific part of the captured environment (see :mod:`.environment`)."""

    variable_prefixes: tuple[str, ...] = ()
    """Variables whose names start with one of these are recorded, by name only (the project's
    own switches, e.g. ``MYPROJECT``), in addition to the generic ones."""
    value_variables: frozenset[str] = frozenset()
    """The project's variables that change behaviour: recorded with their values."""
    lock_files: tuple[str, ...] = ()
    """Files of the project root whose digests the record keeps (``uv.lock``, ...)."""
    torch_companions: Mapping[str, str] = field(default_factory=dict)
    """``record field -> distribution``: versions of the torch libraries the project uses, read
    from package metadata (nothing is imported), recorded in the torch section after its version."""


@dataclass(frozen=True)
class Headline:
    """A number the end of a run prints, with its interval: read from a dataset the run saved.

    Paths are dotted keys into the loaded dataset (``splits.test.wer``). A run that saved the
    dataset under namespaces (``seed_1.<dataset>``, ...) gets one line per namespace.
    """

    label: str
    """What the number is, e.g. ``test WER``."""
    dataset: str
    value: str
    low: str | None = None
    high: str | None = None
    level: str | None = None
    """The interval's confidence level (a fraction, e.g. 0.95)."""
    undefined: str | None = None
    """Why there is no interval, when the dataset says (e.g. ``1 speaker``)."""
    percent: bool = False
    """Print the value and interval as percentages."""


@dataclass(frozen=True)
class Presentation:
    """What the commands show of a run: the project's headline numbers and review output."""

    summary_metrics: Mapping[str, str] = field(default_factory=dict)
    """``column -> dotted path`` into the record's metrics that ``kedro repro runs`` lists,
    e.g. ``{"test_wer": "splits.test.wer"}``: name a column by what it scores.."""
    seed: str | None = None
    """The recorded seed (``record.seeds`` key, e.g. ``training.seed``) ``runs`` lists."""
    review_dataset: str | None = None
    """A JSON dataset with an ``attention`` list that ``show`` prints (a data review)."""
    describe_metrics: Callable[[Any], list[str]] | None = None
    """Lines ``show`` prints for the record's metrics (nothing without it)."""
    headlines: tuple[Headline, ...] = ()
    """What the last lines of ``kedro run`` report besides the run id (see :mod:`.outcome`)."""
    report_datasets: tuple[str, ...] = ()
    """Datasets whose stored files the end of a run names (a report), namespaced ones too."""


@dataclass(frozen=True)
class MetricSource:
    """Numbers read from one JSON dataset a run saved, for a tracking server (``mlflow-sync``).

    ``path`` is dotted into the document; one ``*`` segment stands for every key there, and
    that key names the group: ``MetricSource("scores", "splits.*", ("f1",))`` logs
    ``<split>/f1`` for every split under ``splits``. ``keys`` picks the numbers of the mapping
    the path reaches (empty: every number there); ``prefix`` goes before each key's name.
    """

    dataset: str
    path: str = ""
    keys: tuple[str, ...] = ()
    prefix: str = ""


@dataclass(frozen=True)
class Tracking:
    """What ``kedro repro mlflow-sync`` sends to an MLflow server besides parameters and tags."""

    metrics: tuple[MetricSource, ...] = ()
    """The headline numbers. A namespaced run part (``<namespace>.<dataset>`` in the ledger,
    e.g. one seed of a sweep) reads the same sources under its namespace. None configured: every
    number of the record's metrics, by its dotted path."""
    artifacts: tuple[str, ...] = ()
    """Datasets whose stored files are uploaded (reports, figures), besides the record."""
    experiment: str | None = None
    """The MLflow experiment runs go to (None: the project's :attr:`ReproConfig.name`)."""


@dataclass(frozen=True)
class StepReplay:
    """How ``kedro repro verify --bisect`` replays a run's training from a checkpoint.

    ``run(loaded, parameters, checkpoints, probe)`` trains as the run did: ``loaded`` holds the
    :attr:`inputs` as the run saved them, ``parameters`` every section (recorded values plus the
    replay's overrides; the determinism policy is already applied), ``checkpoints`` a
    :class:`~kedro_repro.checkpoints.CheckpointStore` to continue from, and ``probe`` a
    :class:`~kedro_repro.bisect.StepProbe` to call around each optimizer step (and to stop when
    it says so). It returns the per-step rows the run logs in :attr:`trace_dataset`.
    """

    inputs: tuple[str, ...]
    """The datasets the training reads, loaded as the run saved them (bytes checked)."""
    run: Callable[[dict[str, Any], dict[str, Any], Any, Any], list[dict[str, Any]]]
    trace_dataset: str | None = None
    """A table with one row per optimizer step (a training log): it dates a divergence before
    the oldest checkpoint the run kept."""
    step_column: str = "step"
    trace_columns: tuple[str, ...] = ()
    """The columns of :attr:`trace_dataset` compared bit for bit."""


@dataclass(frozen=True)
class ReproConfig:
    """Everything project-specific the run record, ``verify`` and ``export`` need."""

    name: str = "kedro-repro"
    """The project's name: the PROV namespace ``urn:<name>:`` and the replay-environment cache
    folder ``$XDG_CACHE_HOME/<name>/envs``."""
    environment: EnvironmentSpec = EnvironmentSpec()
    design_sections: tuple[str, ...] = ()
    """Parameter sections that are design choices (the rest are tunable)."""
    snapshot: SnapshotTable | None = None
    metric_dataset: str | None = None
    """The dataset the record copies as the run's ``metrics``; ``verify`` runs :attr:`metric_test`
    when it diverged."""
    metric_test: MetricTest | None = None
    resume_dataset: str | None = None
    """The checkpoint store a resumed run loads from the run it continues."""
    data_dirs: tuple[str, ...] = ()
    """Project-relative folders of raw data a replay mirrors (hard links), e.g. ``data/01_raw``."""
    current_data: SnapshotTable | None = None
    """A table read before a replay (with the run's parameters) whose ``key -> value`` is
    compared with the run's data snapshot, so changed data is named before anything runs."""
    parameter_schema: Any = None
    """Every parameter the project reads (see :mod:`.params`): a pydantic model of all sections
    (each a :class:`~.params.ParameterSection`), or the older mapping of accepted keys. An
    unknown key (with a model, also a mistyped value) stops a run before its first node; with a
    model, nodes receive each ``params:<section>`` as that section's type. None: parameters are
    not checked."""
    determinism_section: str | None = "determinism"
    """The parameter section holding a :class:`~.determinism.DeterminismPolicy`, applied before
    the first node when present (it needs torch)."""
    record: bool = True
    """Write run records (off only to measure what recording costs)."""
    presentation: Presentation = Presentation()
    rerun_pipelines: tuple[str, ...] = ("__default__",)
    """What ``kedro repro run --from-run`` runs unless told (e.g. the evaluation of a model)."""
    tracking: Tracking = Tracking()
    """What ``kedro repro mlflow-sync`` logs (see :class:`Tracking`)."""
    step_replay: StepReplay | None = None
    """How ``verify --bisect`` replays the training from a checkpoint (see :class:`StepReplay`);
    the checkpoint store is :attr:`resume_dataset`."""
    train_segment: Callable[[Mapping[str, Any], int], None] | None = None
    """``train_segment(inputs, stop_step)`` trains one checkpoint interval for ``kedro repro
    verify --segments`` (:mod:`.segments`), in a fresh process: ``inputs`` are the inputs of the
    node that reads :attr:`resume_dataset`, loaded as the run saved them (parameters typed, the
    checkpoint store continuing from the interval's first checkpoint); it returns once the
    checkpoint of ``stop_step`` is written. None: segment verification is not offered."""
    segment_warmup: Callable[[], None] | None = None
    """Called once in the segment host before it forks the segments: imports what
    :attr:`train_segment` would otherwise import in every child (no computation: nothing may
    pass from one segment to another)."""

    @property
    def namespace(self) -> str:
        """The URN the project's PROV identifiers live under (it has no web address)."""
        return f"urn:{self.name}:"


def project_config() -> ReproConfig:
    """The running Kedro project's ``REPRO`` setting (``settings.py``), for commands.

    A project that defines none gets the defaults (records of what every project has); a
    ``REPRO`` of another type is a ``TypeError`` naming it.
    """
    from kedro.framework.project import settings

    config = getattr(settings, "REPRO", None)
    if config is None:
        return ReproConfig()
    if not isinstance(config, ReproConfig):
        raise TypeError(
            f"settings.py's REPRO is a {type(config).__name__}, not a kedro_repro.config.ReproConfig"
        )
    return config
