"""Project pipelines, imported explicitly so ``kedro run --pipelines=<name>`` loads what it needs."""

from kedro.pipeline import Pipeline

from speech_repro.pipelines import data_processing, evaluation, training


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; ``__default__`` runs data processing, training, evaluation."""
    pipelines = {
        "data_processing": data_processing.create_pipeline(),
        "training": training.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
