"""Tells the embedded corpus dataset which plan a run's parameters describe."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from kedro.framework.hooks import hook_impl

from speech_repro.parameters import CorpusParams

if TYPE_CHECKING:
    import pandas as pd


def _plan(corpus: dict[str, Any]) -> pd.DataFrame:
    from ..data_processing.nodes import plan_corpus  # the node itself; imported only when needed

    # The catalog holds the raw section; the node takes it typed, as a run hands it over.
    return plan_corpus(CorpusParams.of(corpus))


class EmbeddedCorpusHook:
    """Lets ``raw_corpus`` find the corpus of this run's ``corpus`` parameters without a save.

    Each corpus configuration lies in its own folder. A run that saves the plan (``plan_corpus``)
    reads the folder it rendered; one that starts after it (``--from-nodes build_manifest``, a
    partial replay, ``kedro repro verify``'s data check) reads the folder of the plan
    ``plan_corpus`` would save for these parameters.
    """

    def __init__(self, dataset: str = "raw_corpus", parameters: str = "corpus"):
        self._dataset, self._parameters = dataset, parameters

    @hook_impl
    def after_catalog_created(self, catalog: Any, parameters: dict[str, Any]) -> None:
        """Hand the dataset the plan of the run's parameters (computed only if a load needs it)."""
        corpus = parameters.get(f"params:{self._parameters}")
        if corpus is None or self._dataset not in catalog:
            return
        # Imported here: settings.py imports this module for every kedro command (pandas, audio).
        from speech_repro.corpora.dataset import SynthesizedCorpusDataset

        dataset = catalog.get(self._dataset)
        if isinstance(dataset, SynthesizedCorpusDataset):
            dataset.expect(partial(_plan, corpus))
