"""How identifiers (utterance, speaker, file names) are compared: after Unicode normalisation.

Two spellings that a reader cannot tell apart -- fullwidth ``en`` (U+FF45 U+FF4E) and ``en``, NFC and NFD
``é``, a name with a zero-width space -- are one identifier. Stored ids keep their spelling; every
comparison (uniqueness, leakage between splits) goes through :func:`normalize_id`.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable

# Format characters (Cf: zero-width space/joiners, BOM, bidi marks) and controls (Cc) render as
# nothing; NFKC keeps them, so they are removed explicitly.
_INVISIBLE = {"Cc", "Cf"}


def normalize_id(identifier: str) -> str:
    """``identifier`` in NFKC with control and zero-width (format) characters removed."""
    folded = unicodedata.normalize("NFKC", identifier)
    return "".join(c for c in folded if unicodedata.category(c) not in _INVISIBLE)


def colliding_ids(identifiers: Iterable[str]) -> dict[str, list[str]]:
    """Normalised id -> the distinct spellings of it, for every id spelled more than one way."""
    spellings: dict[str, dict[str, None]] = defaultdict(dict)
    for identifier in identifiers:
        spellings[normalize_id(identifier)][identifier] = None
    return {key: list(found) for key, found in spellings.items() if len(found) > 1}


def spellings(identifiers: Iterable[str]) -> str:
    """The spellings of one normalised id, each as ``repr`` shows it (invisible characters escaped)."""
    return " and ".join(repr(identifier) for identifier in identifiers)
