"""A recorded run's trained model, ready to use: its bytes checked against the run's ledger first.

``transcribe`` and ``export-model`` start here. :func:`run_settings` reads the feature settings,
audio policy and text normalisation a run was recorded with; :func:`load_trained` loads its
``model`` and ``norm_stats`` through the catalog after :func:`kedro_repro.integrity.require_intact`
checked their stored bytes (a tampered file is refused, named). A run that did not train its
model itself (``--load-versions model:<run>``, ``kedro repro run --from-run``) is followed to the
run whose ledger holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from kedro_repro.params import ParameterSection
from kedro_repro.record import RUNS_DIR, RunRecord, load_run
from kedro_repro.rerun import RunRefused, load_recorded_many, recorded_parameters
from speech_repro.asr.config import AudioPolicy, FeatureConfig
from speech_repro.parameters import TextParams

MODEL = "model"
NORM_STATS = "norm_stats"
SETTINGS_SECTIONS = ("audio", "features", "text")


class DecodingSettings(ParameterSection):
    """The parameter sections decoding new audio depends on, as a run recorded them."""

    audio: AudioPolicy = Field(default_factory=AudioPolicy)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    text: TextParams


@dataclass(frozen=True)
class TrainedModel:
    """What a run trained and how it prepared audio: everything a recogniser needs."""

    run_id: str
    model: dict
    """The ``model`` dataset: ``config`` (architecture), ``weights``, ``vocabulary``."""
    norm_stats: dict
    settings: DecodingSettings
    sources: dict[str, str]
    """Dataset -> the run whose ledger vouched for its bytes."""


def run_settings(record: RunRecord) -> DecodingSettings:
    """The audio policy, feature settings and text parameters ``record`` ran with."""
    recorded = recorded_parameters(record)
    return DecodingSettings.model_validate(
        {name: recorded[name] for name in SETTINGS_SECTIONS if name in recorded}
    )


def source_run(project: Path, record: RunRecord, dataset: str) -> str:
    """The run whose ledger holds the version of ``dataset`` that ``record`` saved or loaded."""
    if dataset in record.ledger:
        return record.run_id
    loaded = record.inputs.get(dataset)
    origin = None if loaded is None else (loaded.run or loaded.version)
    if origin is None or origin == record.run_id:
        raise RunRefused(
            f"run {record.run_id} neither saved nor loaded a recorded {dataset}: nothing to use"
        )
    if dataset not in load_run(project / RUNS_DIR, origin).ledger:
        raise RunRefused(
            f"run {record.run_id} loaded {dataset} version {origin}, which no run record saved"
        )
    return origin


def load_trained(project: Path, run_id: str, model: str = MODEL) -> TrainedModel:
    """The ``model`` dataset (``<namespace>.model`` for a seed of a sweep) and ``norm_stats`` of
    run ``run_id``, with the run's decoding settings, after checking their bytes."""
    project = Path(project)
    record = load_run(project / RUNS_DIR, run_id)
    settings = run_settings(record)
    sources = {name: source_run(project, record, name) for name in (model, NORM_STATS)}
    loaded: dict[str, Any] = {}
    for origin in dict.fromkeys(sources.values()):
        names = [name for name, run in sources.items() if run == origin]
        loaded |= dict(zip(names, load_recorded_many(project, origin, names), strict=True))
    return TrainedModel(record.run_id, loaded[model], loaded[NORM_STATS], settings, sources)


def recognizer_of(trained: TrainedModel) -> Any:
    """A :class:`~speech_repro.asr.recognizer.Recognizer` with the run's model and settings."""
    from speech_repro.asr.recognizer import Recognizer

    settings = trained.settings
    return Recognizer.from_bundle(
        trained.model, trained.norm_stats, settings.features, settings.audio, settings.text
    )


EXPORT_FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class ExportedModel:
    """Files an export wrote and how closely the exported model matches the PyTorch one."""

    files: list[Path]
    max_abs_diff: float
    """Largest log-probability difference on a seeded probe waveform (exported vs PyTorch)."""
    same_text: bool
    """Whether both decode the probe to the same text."""


def export_model(trained: TrainedModel, format: str, path: Path) -> ExportedModel:
    """Write ``trained`` with its front end and vocabulary as ``format`` (``torchscript`` or
    ``onnx``) at ``path``, load the file back and compare it with the PyTorch model on a seeded
    noise waveform of ``PROBE_SECONDS``."""
    import torch

    from speech_repro.asr import export

    recognizer = recognizer_of(trained)
    module = export.standalone_model(
        recognizer.model,
        recognizer.features,
        recognizer.mean,
        recognizer.std,
        dft_front_end=format == "onnx",
    )
    description = export.describe(
        recognizer.vocabulary.symbols,
        recognizer.features,
        recognizer.normalization,
        trained.model["config"],
        {"run_id": trained.run_id, "sources": trained.sources, "format": format},
    )
    generator = torch.Generator().manual_seed(0)
    samples = int(PROBE_SECONDS * recognizer.features.sample_rate)
    probe = 0.1 * torch.randn(samples, generator=generator)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "torchscript":
        files = [export.export_torchscript(module, path, description)]
        with torch.inference_mode():
            exported = torch.jit.load(str(path))(probe)
    elif format == "onnx":
        import onnxruntime

        files = list(export.export_onnx(module, path, description, probe))
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        exported = torch.from_numpy(session.run(None, {"waveform": probe.numpy()})[0])
    else:
        raise ValueError(f"unknown export format {format!r}; known: {', '.join(EXPORT_FORMATS)}")
    log_probs, lengths = recognizer.log_probs([probe])
    reference = log_probs[0, : int(lengths[0])]
    text = recognizer.normalization(export.greedy_text(exported, description["vocabulary"]))
    return ExportedModel(
        files,
        float((exported - reference).abs().max()),
        text == recognizer.transcribe([probe])[0],
    )
