"""Greedy transcription of a dataset's utterances, and constraining words to a lexicon.

Evaluation and the dev evaluation inside training both decode through :func:`greedy_transcripts`,
so the dev WER that selects a checkpoint is the WER evaluation reports for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from speech_repro.asr.batching import UtteranceDataset, collate
from speech_repro.asr.model import greedy_decode
from speech_repro.asr.text import CharVocabulary


def greedy_transcripts(
    net: torch.nn.Module,
    dataset: UtteranceDataset,
    vocabulary: CharVocabulary,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: str | None = None,
) -> dict[str, str]:
    """Greedy CTC output of every utterance of ``dataset``, by utterance id (not normalised).

    Runs ``net`` in eval mode under ``torch.inference_mode`` and puts back the mode it found:
    nothing here draws random numbers or changes the weights, so a training loop can call it
    between steps. ``progress`` names a progress bar (tqdm; shown only when stderr is a
    terminal); None shows none.
    """
    training = net.training
    net.eval()
    transcripts: dict[str, str] = {}
    starts = range(0, len(dataset), batch_size)
    # disable=None: tqdm turns itself off when stderr is not a terminal (logs, CI, subprocesses).
    bar = tqdm(
        starts, desc=progress, unit="batch", mininterval=1.0, disable=None if progress else True
    )
    try:
        with torch.inference_mode():
            for start in bar:
                batch = collate(
                    [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
                )
                log_probs, lengths = net(batch["features"].to(device), batch["lengths"].to(device))
                paths = greedy_decode(log_probs, lengths)
                for utt_id, path in zip(batch["utt_ids"], paths, strict=True):
                    transcripts[utt_id] = vocabulary.decode(path)
    finally:
        bar.close()
        net.train(training)
    return transcripts


def constrain_to_lexicon(hypotheses: Sequence[str], lexicon: Sequence[str]) -> list[str]:
    """Each word of each hypothesis replaced by the closest ``lexicon`` word by edit distance.

    Levenshtein distance over characters (rapidfuzz, which jiwer already depends on); a tie goes
    to the word listed first in ``lexicon``, so the mapping is a pure function of its inputs.
    Words are split on whitespace and joined with single spaces; an empty hypothesis stays empty.
    """
    import numpy as np
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cdist

    if not lexicon:
        raise ValueError("the lexicon is empty")
    words = sorted({w for h in hypotheses for w in h.split()})
    closest: dict[str, str] = {}
    if words:
        distances = cdist(words, list(lexicon), scorer=Levenshtein.distance, dtype=np.int32)
        # argmin returns the first minimum: ties go to the earlier lexicon entry.
        closest = {w: lexicon[i] for w, i in zip(words, distances.argmin(axis=1), strict=True)}
    return [" ".join(closest[w] for w in h.split()) for h in hypotheses]
