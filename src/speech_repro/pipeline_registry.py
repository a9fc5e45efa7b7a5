"""Project pipelines, imported explicitly so ``kedro run --pipelines=<name>`` loads what it needs."""

from kedro.pipeline import Pipeline

from speech_repro.pipelines import (
    data_processing,
    embedded_corpus,
    evaluation,
    reporting,
    seeds,
    training,
    transcription,
)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the pipelines.

    ``experiment`` (data processing, training, evaluation, report) runs on whatever corpus the
    catalog's ``raw_corpus`` names; ``seed_sweep`` does the same for every seed in
    ``seed_sweep.seeds``. ``__default__`` and ``seeds`` first render the embedded digits corpus.
    """
    pipelines = {
        "embedded_corpus": embedded_corpus.create_pipeline(),
        "data_processing": data_processing.create_pipeline(),
        "training": training.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
        "reporting": reporting.create_pipeline(),
    }
    prepared = pipelines["data_processing"] + reporting.data_review_pipeline()
    pipelines["experiment"] = (
        prepared + pipelines["training"] + pipelines["evaluation"] + reporting.run_report_pipeline()
    )
    pipelines["seed_sweep"] = prepared + seeds.create_pipeline()
    pipelines["__default__"] = pipelines["embedded_corpus"] + pipelines["experiment"]
    pipelines["seeds"] = pipelines["embedded_corpus"] + pipelines["seed_sweep"]
    # A trained model on new audio; pin the run with --load-versions model:RUN,norm_stats:RUN.
    pipelines["transcription"] = transcription.create_pipeline()
    return pipelines
