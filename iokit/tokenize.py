"""Tokenizers: text to tokens (and, with a vocabulary, to integer IDs).

The word-level tokenizer is nltk's ``WordPunctTokenizer`` (runs of letters and digits, runs of
punctuation), which needs no downloaded nltk data. Call it per document or per chunk, never on
a whole file at once: nltk runs its pattern with a time limit per call.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _word_punct():
    from nltk.tokenize import WordPunctTokenizer

    return WordPunctTokenizer()


def word_tokenize(text: str) -> list[str]:
    """Split ``text`` into words and punctuation runs with nltk (no downloads needed)."""
    return _word_punct().tokenize(text)
