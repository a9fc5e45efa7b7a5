"""Declared text normalisation and the character vocabulary, shared by training and scoring."""

from __future__ import annotations

import re
import unicodedata

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as pydantic_dataclass

BLANK = "<blank>"


# A pydantic dataclass: validated when built, unknown fields refused (parameters).
@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class TextNormalization:
    """How transcripts and hypotheses are normalised before training and before scoring."""

    lowercase: bool = True
    remove_punctuation: bool = True
    keep_characters: str = "'"  # punctuation that is part of words (don't, o'clock)
    unicode_form: str = "NFKC"

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize(self.unicode_form, text)
        if self.lowercase:
            text = text.lower()
        if self.remove_punctuation:
            text = "".join(
                c
                if c in self.keep_characters or not unicodedata.category(c).startswith(("P", "S"))
                else " "
                for c in text
            )
        return re.sub(r"\s+", " ", text).strip()


class CharVocabulary:
    """Index 0 is the CTC blank; then the declared characters in the declared order."""

    def __init__(self, characters: str):
        if len(set(characters)) != len(characters):
            raise ValueError(f"vocabulary has repeated characters: {characters!r}")
        self.symbols = [BLANK, *characters]
        self._index = {c: i for i, c in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def out_of_vocabulary(self, text: str) -> set[str]:
        """Characters of ``text`` that the vocabulary cannot encode."""
        return {c for c in text if c not in self._index or c == BLANK}

    def encode(self, text: str) -> list[int]:
        """Indices of ``text``'s characters; raises on characters outside the vocabulary."""
        if oov := self.out_of_vocabulary(text):
            raise ValueError(f"characters {sorted(oov)} of {text!r} are not in the vocabulary")
        return [self._index[c] for c in text]

    def decode(self, indices: list[int]) -> str:
        """Characters for indices, skipping the blank."""
        return "".join(self.symbols[i] for i in indices if i != 0)
