"""Tokenizers: round trips (what the word level loses, exactly; BPE loses nothing), save/load."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from iokit.corpus import iter_documents
from iokit.errors import FormatError, ParameterError
from iokit.tokenize import (
    EOD,
    UNK,
    WordTokenizer,
    encode_corpus,
    fast_word_tokenize,
    load_tokenizer,
    train_tokenizer,
    word_tokenize,
)


@pytest.fixture(scope="module")
def texts(tiny_corpus):
    return [d.text for d in itertools.islice(iter_documents(tiny_corpus), 120)]


@pytest.fixture(scope="module")
def word(texts):
    return WordTokenizer.train(texts, vocab_size=2_000)


def test_fast_tokenizer_matches_nltk(texts):
    for text in texts[:50]:
        assert fast_word_tokenize(text) == word_tokenize(text)
    odd = "Café naïve—déjà vu!!  Tabs\tand\nnewlines... 3.14 (x) «quotes»"
    assert fast_word_tokenize(odd) == word_tokenize(odd)


def test_vocabulary_is_most_frequent_words(texts, word):
    assert word.vocab_size == 2_000
    assert word.tokens[:2] == [UNK, EOD]
    assert (word.unk_id, word.eod_id) == (0, 1)
    assert word.tokens[2] == "the"  # the most frequent word comes first
    small = WordTokenizer.train(["b a a c c c"], vocab_size=4)
    assert small.tokens == [UNK, EOD, "c", "a"]  # most frequent first, "b" is cut off
    tie = WordTokenizer.train(["y x"], vocab_size=10)
    assert tie.tokens == [UNK, EOD, "x", "y"]  # ties broken alphabetically


def test_word_round_trip_loses_case_spacing_and_rare_words():
    tok = WordTokenizer(["hello", ",", "world", "."])
    text = "Hello,\n\n  WORLD   zebra."
    ids = tok.encode(text)
    assert ids.dtype == np.uint32
    assert ids.tolist() == [2, 3, 4, 0, 5]
    # Pinned: lower case, one space between every token, unknown words become <unk>.
    assert tok.decode(ids) == "hello , world <unk> ."
    assert tok.normalize(text) == tok.decode(ids)


def test_word_round_trip_is_normalize_on_corpus(texts, word):
    for text in texts[:30]:
        assert word.decode(word.encode(text)) == word.normalize(text)
    # With a vocabulary holding every word, only case and spacing are lost.
    full = WordTokenizer.train(texts[:5], vocab_size=1_000_000)
    for text in texts[:5]:
        back = full.decode(full.encode(text))
        assert UNK not in back
        assert back.split(" ") == [t.lower() for t in word_tokenize(text)]


def test_word_decode_rejects_foreign_ids(word):
    with pytest.raises(ParameterError, match=r"ID 2000 is outside this vocabulary \(0 to 1999\)"):
        word.decode([5, 2000])


def test_word_save_load(tmp_path, word, texts):
    path = word.save(tmp_path / "vocab.json")
    back = load_tokenizer(path)
    assert isinstance(back, WordTokenizer)
    assert back.tokens == word.tokens
    assert back.fingerprint == word.fingerprint
    assert np.array_equal(back.encode(texts[0]), word.encode(texts[0]))
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temporary files left


def test_fingerprint_tells_vocabularies_apart(texts, word):
    other = WordTokenizer.train(texts, vocab_size=1_999)
    assert other.fingerprint != word.fingerprint
    assert WordTokenizer.train(texts, vocab_size=2_000).fingerprint == word.fingerprint


def test_bad_vocabulary_files(tmp_path, word):
    with pytest.raises(FormatError, match="nope.json: no such vocabulary file"):
        load_tokenizer(tmp_path / "nope.json")
    p = tmp_path / "cut.json"
    p.write_bytes(word.to_json().encode()[:100])
    with pytest.raises(FormatError, match="cut.json: not a JSON vocabulary file.*truncated"):
        load_tokenizer(p)
    p = tmp_path / "other.json"
    p.write_text('{"hello": 1}')
    with pytest.raises(FormatError, match="other.json: field 'format' is missing"):
        load_tokenizer(p)
    p = tmp_path / "v9.json"
    p.write_text(word.to_json().replace('"version": 1', '"version": 9'))
    with pytest.raises(FormatError, match="v9.json: field 'version' is 9"):
        load_tokenizer(p)
    p = tmp_path / "dup.json"
    p.write_text('{"format": "iokit-word-vocab", "version": 1, "specials": ["<unk>", "<eod>"],'
                 ' "words": ["a", "a"]}')
    with pytest.raises(FormatError, match="dup.json: field 'words'.*twice"):
        load_tokenizer(p)


def test_bad_parameters(texts):
    with pytest.raises(ParameterError, match="vocab_size must be at least 3"):
        WordTokenizer.train(texts, vocab_size=2)
    with pytest.raises(ParameterError, match="unknown tokenizer 'sentencepiece'"):
        train_tokenizer("sentencepiece", texts)


def test_encode_corpus_ends_each_document(texts, word):
    arrays = list(encode_corpus(texts[:3], word))
    assert len(arrays) == 3
    for text, ids in zip(texts, arrays):
        assert ids[-1] == word.eod_id
        assert np.array_equal(ids[:-1], word.encode(text))


# --------------------------------------------------------------------------- BPE


@pytest.fixture(scope="module")
def bpe(texts):
    pytest.importorskip("tokenizers")
    return train_tokenizer("bpe", texts, vocab_size=600)


def test_bpe_round_trip_is_lossless(bpe, texts):
    samples = texts[:20] + ["", " leading and  double  spaces\n\n", "Ünïcødé ✓ 漢字 🙂",
                            "tabs\tand\r\nCRLF", "<|endoftext|> inside text"]
    for text in samples:
        assert bpe.decode(bpe.encode(text)) == text
        assert bpe.normalize(text) == text


def test_bpe_vocabulary_and_eod(bpe, texts):
    assert bpe.vocab_size <= 600
    ids = next(encode_corpus(texts[:1], bpe))
    assert ids[-1] == bpe.eod_id
    assert ids.max() < bpe.vocab_size


def test_bpe_save_load(bpe, tmp_path, texts):
    path = bpe.save(tmp_path / "bpe.json")
    back = load_tokenizer(path)
    assert back.kind == "bpe"
    assert back.fingerprint == bpe.fingerprint
    assert np.array_equal(back.encode(texts[1]), bpe.encode(texts[1]))


def test_bpe_missing_extra_names_it(monkeypatch, texts):
    import builtins

    real_import = builtins.__import__

    def no_tokenizers(name, *args, **kwargs):
        if name == "tokenizers" or name.startswith("tokenizers."):
            raise ImportError("no tokenizers")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tokenizers)
    with pytest.raises(ParameterError, match=r"optional 'bpe' extra.*pip install -e '\.\[bpe\]'"):
        train_tokenizer("bpe", texts[:2])


def test_round_trips_on_any_text(bpe, word):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(st.text())
    def check(text):
        assert bpe.decode(bpe.encode(text)) == text
        assert word.decode(word.encode(text)) == word.normalize(text)

    check()


def test_tokenizers_survive_pickling(word, bpe, texts):
    """Worker processes get tokenizers by pickle: the copies must encode the same."""
    import pickle

    for tok in (word, bpe):
        copy = pickle.loads(pickle.dumps(tok))
        assert copy.fingerprint == tok.fingerprint
        assert np.array_equal(copy.encode(texts[0]), tok.encode(texts[0]))
