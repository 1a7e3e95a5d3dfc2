"""The Chinese sample of notebook 02: real text shipped with the kit, and the three tokenizers
measured on chapters they were not trained on (what is unknown, what comes back exactly, which
ID width). spaCy and BPE are installed in CI (the 'spacy' and 'bpe' extras)."""

from __future__ import annotations

import numpy as np

from iokit.lab.tokenizers import chinese_sample, cjk_code_points, compare_chinese
from iokit.shards import choose_dtype
from iokit.tokenize import word_tokenize


def test_the_sample_is_the_daodejing_offline():
    chapters = chinese_sample()
    assert len(chapters) == 19
    assert chapters[0].startswith("道可道，非常道。名可名，非常名。")
    assert all(not any(c.isascii() and c.isalnum() for c in ch) for ch in chapters)
    assert len(set("".join(chapters))) > 300  # real text: hundreds of distinct characters


def test_compare_chinese_trains_on_the_first_chapters_and_measures_the_rest():
    zh = compare_chinese(repeat=1)
    assert zh.skipped == {}
    assert [r.kind for r in zh.rows] == ["word", "bpe", "spacy"]
    assert zh.train_docs == 15
    chapters = chinese_sample()
    seen = set("".join(chapters[:15]))
    held = "".join(chapters[15:])
    word, bpe, spacy = (zh.row(k) for k in ("word", "bpe", "spacy"))
    for r in zh.rows:
        assert r.docs == 4 and r.chars == len(held)
        assert r.text_bytes == len(held.encode("utf-8")) == 3 * len(held)
        assert r.dtype == np.uint16 and r.id_bytes_per_char == r.tokens_per_char * 2
    # spaCy "zh" cuts characters: one token each, <unk> exactly for the characters not seen
    assert spacy.tokens == len(held)
    assert spacy.unknown == sum(c not in seen for c in held) > 0
    # the word tokenizer: one token per ideograph, punctuation runs joined
    assert word.tokens == sum(len(word_tokenize(ch)) for ch in chapters[15:])
    assert word.unknown > 0 and word.exact_docs == 0
    # byte-level BPE: nothing unknown, every chapter back exactly, an unseen character in bytes
    assert bpe.unknown == 0 and bpe.exact_share == 1.0
    assert bpe.tokens_per_char > 1.0
    again = compare_chinese(repeat=1)  # same inputs, same counts
    assert [(r.tokens, r.unknown, r.exact_docs) for r in again.rows] == \
        [(r.tokens, r.unknown, r.exact_docs) for r in zh.rows]


def test_every_cjk_character_as_an_id_needs_uint32():
    assert cjk_code_points() > 65_536
    assert choose_dtype(cjk_code_points() + 2) == np.uint32
