"""Tokenizers: round trips (what the word level loses, exactly; BPE loses nothing), save/load."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from iokit.corpus import iter_documents
from iokit.errors import FormatError, ParameterError
from iokit.tokenize import (
    EOD,
    UNK,
    TokenizerWarning,
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


# ---------------------------------------------------------------- scripts without spaces

CHINESE = [
    "春天来了，山上的花都开了。", "我们在河边散步，看见一只白色的小鸟。",
    "老师说，读书要认真，写字要清楚。", "这个城市很大，街上有很多人和车。",
    "他每天早上六点起床，然后去公园跑步。", "妈妈在厨房里做饭，香味飘满了整个房子。",
    "下雨的时候，孩子们喜欢在窗前听雨声。", "我们的学校旁边有一条小河，河水很清。",
    "朋友从远方来，我们一起喝茶聊天。", "晚上的月亮又圆又亮，照在安静的村子里。",
    "火车开得很快，窗外的风景一闪而过。", "她把新买的书放在桌子上，准备明天再看。",
]
THAI_SYLLABLES = "กา ขอ มา นา ดาว ใจ ราง ไป ลม ฝน ตา ปลา งาน หมา แมว เรา".split()


def _chinese_documents(n=200, seed=0):
    import random

    rng = random.Random(seed)
    return ["".join(rng.choice(CHINESE) for _ in range(5)) for _ in range(n)]


def _thai_documents(n=60, seed=0):
    """Thai writes words without spaces between them: each run of syllables is one 'word'."""
    import random

    rng = random.Random(seed)
    return [" ".join("".join(rng.choice(THAI_SYLLABLES) for _ in range(rng.randint(4, 7)))
                     for _ in range(20)) for _ in range(n)]


def test_cjk_characters_are_tokens_of_their_own():
    assert word_tokenize("我们去北京。Hello, 世界!") == \
        ["我", "们", "去", "北", "京", "。", "Hello", ",", "世", "界", "!"]
    assert word_tokenize("カタカナとひらがな") == list("カタカナとひらがな")
    assert word_tokenize("한국어 문장") == ["한", "국", "어", "문", "장"]
    for text in ["我们去北京。Hello, 世界!", "mixed漢字text", "日本語のテキスト"]:
        assert fast_word_tokenize(text) == word_tokenize(text)


def test_chinese_gets_a_vocabulary_of_characters_with_few_unknowns():
    import re
    import warnings

    docs = _chinese_documents()
    with warnings.catch_warnings():
        warnings.simplefilter("error", TokenizerWarning)  # no warning for this text
        tok = WordTokenizer.train(docs[:150], vocab_size=32_768)
    words = tok.tokens[2:]
    assert sum(len(w) == 1 for w in words) / len(words) >= 0.95  # characters, not clauses
    assert tok.training.unk_rate == 0 and tok.training.one_off_share < 0.2
    held_out = np.concatenate([tok.encode(d) for d in docs[150:]])
    assert (held_out == tok.unk_id).mean() < 0.01
    # What the pattern alone did before: whole clauses between punctuation marks as "words".
    clauses = re.findall(r"\w+", "".join(docs))
    assert sum(len(c) > 1 for c in clauses) / len(clauses) > 0.9


def test_a_vocabulary_of_one_off_entries_warns_and_points_to_bpe():
    docs = _thai_documents()
    with pytest.warns(TokenizerWarning, match=r"entries were seen only once.*--tokenizer bpe"):
        tok = WordTokenizer.train(docs, vocab_size=32_768)
    assert tok.training.one_off_share > 0.8
    with pytest.warns(TokenizerWarning, match=r"% of the training text's tokens are <unk>"):
        WordTokenizer.train(docs, vocab_size=50)


def test_the_command_line_says_the_warning_in_one_line(tmp_path, capsys, monkeypatch):
    from iokit.app.cli import main

    monkeypatch.setenv("IOKIT_DATA", str(tmp_path / "data"))
    (tmp_path / "thai").mkdir()
    for i, doc in enumerate(_thai_documents()):
        (tmp_path / "thai" / f"{i:02d}.txt").write_text(doc, encoding="utf-8")
    assert main(["shards", "--corpus", str(tmp_path / "thai"), "--engine", "serial",
                 "--parts", "2", "--out", str(tmp_path / "s")]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("iokit: warning: ")]
    assert len(lines) == 1 and "seen only once" in lines[0] and "bpe" in lines[0]
    assert "scripts (share of letters): Thai 100.0%" in out
    assert "tokens stored as uint16" in out


def test_bpe_on_chinese_from_the_command_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("tokenizers")
    from iokit.app.cli import main
    from iokit.shards import open_shards

    monkeypatch.setenv("IOKIT_DATA", str(tmp_path / "data"))
    text = tmp_path / "novel.txt"
    text.write_text("\n".join(_chinese_documents(60)), encoding="utf-8")
    assert main(["shards", "--corpus", str(text), "--engine", "serial", "--parts", "1",
                 "--tokenizer", "bpe", "--vocab-size", "2000", "--out", str(tmp_path / "s")]) == 0
    out, err = capsys.readouterr()
    assert "training the bpe vocabulary (2,000 IDs)" in out and "warning" not in err
    tok = load_tokenizer(tmp_path / "s" / "vocab.json")
    doc = text.read_text(encoding="utf-8")
    ids = tok.encode(doc)
    assert tok.decode(ids) == doc  # exact round trip
    assert len(ids) / len(doc) < 1.0  # fewer tokens than characters
    with open_shards(tmp_path / "s") as s:
        assert s.n_tokens == len(ids) + 1


def test_the_token_width_is_said_aloud():
    from iokit.app.cli import _token_width

    assert _token_width(100_000) == "vocabulary 100,000 IDs > 65,536: tokens stored as uint32"
    assert _token_width(32_768) == "vocabulary 32,768 IDs ≤ 65,536: tokens stored as uint16"


def test_the_command_line_checks_the_tokenizer_before_any_work(tmp_path, capsys):
    from iokit.app.cli import main

    assert main(["shards", "--scale", "tiny", "--tokenizer", "sentencepiece",
                 "--out", str(tmp_path / "x")]) == 2
    assert "unknown tokenizer 'sentencepiece'; choose one of: bpe, spacy, word" in \
        capsys.readouterr().err
    assert main(["tour", "--scale", "tiny", "--vocab-size", "0"]) == 2
    assert "--vocab-size must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_fast_pattern_is_nltks_own():
    from nltk.tokenize import WordPunctTokenizer

    from iokit.tokenize import WORD_PUNCT_FLAGS, WORD_PUNCT_PATTERN

    nltk_tok = WordPunctTokenizer()
    assert (WORD_PUNCT_PATTERN, WORD_PUNCT_FLAGS) == (nltk_tok._pattern, nltk_tok._flags)


def test_encoding_never_imports_nltk():
    # A worker that encodes with the fast path must not pay for importing nltk.
    code = ("import sys\n"
            "from iokit.tokenize import WordTokenizer, fast_word_tokenize\n"
            "tok = WordTokenizer.train(['a b, c.'] * 3, vocab_size=16, progress=False)\n"
            "tok.encode('a b, c.'); fast_word_tokenize('x y')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'nltk'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- the batch paths


def _one_by_one(texts, tok):
    eod = np.array([tok.eod_id], dtype=np.uint32)
    return [np.concatenate([tok.encode(t), eod]) for t in texts]


LONG = ("Tokens cross no slice boundary; " * 40_000 + "end.",  # about 1.3 MB, several slices
        "短" * 300_000 + "。" + "x" * 10,  # no spaces: cut at the punctuation only
        "a" * 700_000)  # one word with no cut at all: one slice


def test_encode_many_gives_the_ids_of_encode(texts, word, bpe):
    odd = ["", "İstanbul K kelvin", "tab\x1csep\x1fx", "x\u3000y", "snake_case_word 3.14"]
    for tok in (word, bpe):
        many = tok.encode_many(texts + odd + list(LONG))
        for text, ids in zip(texts + odd + list(LONG), many):
            assert ids.dtype == np.uint32
            assert np.array_equal(ids, tok.encode(text))


def test_encode_corpus_in_batches_matches_one_by_one(texts, word, bpe, monkeypatch):
    from iokit import tokenize

    monkeypatch.setattr(tokenize, "BATCH_CHARS", 5_000)  # many batches, long texts alone
    docs = texts + list(LONG) + texts[:3]
    for tok in (word, bpe):
        got = list(encode_corpus(docs, tok))
        assert len(got) == len(docs)
        assert all(np.array_equal(a, b) for a, b in zip(got, _one_by_one(docs, tok)))


def test_ascii_bytes_pattern_splits_every_character_as_the_str_one():
    from iokit.tokenize import _ASCII_WORD_PUNCT, _fast_pattern

    for c in range(128):
        for text in (chr(c), f"a{chr(c)}b", f"{chr(c)}{chr(c)}.", f"!{chr(c)}!"):
            want = [t.encode("ascii") for t in _fast_pattern().findall(text)]
            assert _ASCII_WORD_PUNCT.findall(text.encode("ascii")) == want, (c, text)


def test_word_ids_ignore_the_lookup_path():
    tok = WordTokenizer(["hello", "wörld", "x"])
    assert tok.encode("Hello wörld, X y").tolist() == [2, 3, 0, 4, 0]  # non-ASCII path
    assert tok.encode("Hello world, X y").tolist() == [2, 0, 0, 4, 0]  # ASCII (bytes) path


def test_no_fork_warning_after_the_batch_encoder(bpe, texts, tmp_path, capfd):
    import os

    from iokit.preprocess import parallel_pretokenize

    before = os.environ.get("TOKENIZERS_PARALLELISM")
    list(encode_corpus(texts * 4, bpe))  # the parent uses the Rust threads first
    capfd.readouterr()
    parallel_pretokenize(_jsonl(tmp_path, texts), bpe, tmp_path / "out", workers=2,
                         kind="processes", start_method="fork")
    out, err = capfd.readouterr()
    assert "huggingface/tokenizers" not in out + err
    assert os.environ.get("TOKENIZERS_PARALLELISM") == before  # the caller's setting is back


def _jsonl(tmp_path, texts):
    import json

    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path
