"""Transcription pipeline: the ``model`` and ``norm_stats`` of a run on the ``new_audio`` dataset."""

from kedro.pipeline import Node, Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """Greedy CTC transcription of ``new_audio`` with a run's model (not part of ``__default__``).

    Pin the run: ``kedro run --pipelines transcription --load-versions model:RUN,norm_stats:RUN``,
    or ``kedro repro run --from-run RUN --pipelines transcription`` (the run's parameters too).
    """
    from .nodes import transcribe_new_audio  # node code (torch) only when the pipeline is built

    return Pipeline(
        [
            Node(
                transcribe_new_audio,
                [
                    "new_audio",
                    "model",
                    "norm_stats",
                    "params:features",
                    "params:audio",
                    "params:text",
                    "params:evaluation",
                ],
                "new_transcripts",
                name="transcribe_new_audio",
            )
        ]
    )
