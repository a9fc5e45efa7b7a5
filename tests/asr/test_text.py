"""Transcript normalisation and the CTC character vocabulary."""

from __future__ import annotations

import pytest

from speech_repro.asr.text import BLANK, CharVocabulary, TextNormalization

CHARS = "abcdefghijklmnopqrstuvwxyz' "


def test_default_normalization():
    norm = TextNormalization()
    assert norm("Hello, World!  It's") == "hello world it's"
    assert norm("  a\t-\nb  ") == "a b"
    assert norm("O'CLOCK... 3+4=7") == "o'clock 3 4 7"  # symbols (S*) become spaces too
    assert norm("") == ""


def test_normalization_unicode_form_and_switches():
    assert (
        TextNormalization()("\ufb01ne \uff23af\u00e9") == "fine caf\u00e9"
    )  # NFKC: ligature, full width
    assert TextNormalization(lowercase=False)("Hi, There") == "Hi There"
    assert TextNormalization(remove_punctuation=False)("Hi,  there!") == "hi, there!"
    assert TextNormalization(keep_characters="-")("don't re-do") == "don t re-do"


def test_normalization_is_idempotent():
    norm = TextNormalization()
    text = "Well — it's, like, 42%?!"
    assert norm(norm(text)) == norm(text)


def test_vocabulary_layout_and_round_trip():
    vocab = CharVocabulary(CHARS)
    assert len(vocab) == len(CHARS) + 1
    assert vocab.symbols[0] == BLANK
    encoded = vocab.encode("it's a b")
    assert encoded[:2] == [9, 20]  # 'i' is the 9th character, after the blank at 0
    assert 0 not in encoded
    assert vocab.decode(encoded) == "it's a b"
    assert vocab.decode([0, 1, 0, 0, 2, 0]) == "ab"  # blanks are skipped


def test_vocabulary_rejects_out_of_vocabulary_characters():
    vocab = CharVocabulary(CHARS)
    assert vocab.out_of_vocabulary("ab7c!") == {"7", "!"}
    with pytest.raises(ValueError, match=r"\['7'\]"):
        vocab.encode("route 7")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("A")  # case matters: normalise first


def test_vocabulary_rejects_repeated_characters():
    with pytest.raises(ValueError, match="repeated"):
        CharVocabulary("abca")
