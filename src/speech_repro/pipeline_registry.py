"""Project pipelines, imported explicitly so ``kedro run --pipelines=<name>`` loads what it needs."""

from kedro.pipeline import Pipeline

from speech_repro.pipelines import data_processing, embedded_corpus, evaluation, training


def register_pipelines() -> dict[str, Pipeline]:
    """Register the pipelines.

    ``experiment`` (data processing, training, evaluation) runs on whatever corpus the catalog's
    ``raw_corpus`` names; ``__default__`` first renders the embedded digits corpus.
    """
    pipelines = {
        "embedded_corpus": embedded_corpus.create_pipeline(),
        "data_processing": data_processing.create_pipeline(),
        "training": training.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
    }
    pipelines["experiment"] = (
        pipelines["data_processing"] + pipelines["training"] + pipelines["evaluation"]
    )
    pipelines["__default__"] = pipelines["embedded_corpus"] + pipelines["experiment"]
    return pipelines
