"""spaCy's tokenizer behind the kit's interface: round trips (what is lost, exactly), save/load,
slices identical to the whole text, shards identical for 1 and 2 processes, and the error
without the extra. spaCy is installed in CI (the 'spacy' extra): these tests do not skip."""

from __future__ import annotations

import builtins
import functools
import hashlib
import itertools
import json
import pickle
import random

import numpy as np
import pytest

from iokit.corpus import iter_documents, write_head
from iokit.errors import FormatError, ParameterError
from iokit.tokenize import load_tokenizer, train_tokenizer
from iokit.tokenize_spacy import (
    EOD,
    UNK,
    SpacyTokenizer,
    blank,
    spacy_slices,
)


@pytest.fixture(scope="module")
def texts(tiny_corpus):
    return [d.text for d in itertools.islice(iter_documents(tiny_corpus), 120)]


@pytest.fixture(scope="module")
def english(texts):
    return SpacyTokenizer.train(texts[:100], vocab_size=4_000, progress=False)


SENTENCES = ["春天来了，山上的花都开了。", "我们在河边散步，看见一只白色的小鸟。",
             "老师说：读书要认真，写字要清楚！", "这个城市很大，街上有很多人和车。",
             "他每天早上六点起床，然后去公园跑步。", "晚上的月亮又圆又亮，照在安静的村子里。"]


def chinese_documents(n: int, seed: int = 0) -> list[str]:
    """Chinese text written here: sentences without spaces, now and then a line break."""
    rng = random.Random(seed)
    return ["".join(rng.choice(SENTENCES) + rng.choice(["", "", "\n"]) for _ in range(6))
            for _ in range(n)]


@functools.cache
def spacy_nlp(lang: str):
    return blank(lang)


def whole(text: str, lang: str) -> list[tuple[str, str]]:
    """spaCy's tokens of the whole text in one call (no slices, no kit)."""
    return [(t.text, t.whitespace_) for t in spacy_nlp(lang).tokenizer(text)]


def sliced(text: str, lang: str, size: int) -> list[tuple[str, str]]:
    nlp = spacy_nlp(lang)
    return [(t.text, t.whitespace_) for piece in spacy_slices(text, lang, size)
            for t in nlp.tokenizer(piece)]


# ---------------------------------------------------------------- round trips


def test_english_round_trip_keeps_spacing_and_loses_only_unknown_tokens(english, texts):
    sample = "Owners said:  \"We'll re-open\nsoon!\" Zyxwvut."
    for text in [sample, *texts]:  # held out and trained on alike
        assert english.decode(english.encode(text)) == english.normalize(text)
    # normalize only ever swaps a token for <unk>: with every token known, nothing is lost,
    # case, the double space and the line break included
    full = SpacyTokenizer.train([sample, *texts[:5]], vocab_size=100_000, progress=False)
    for text in [sample, *texts[:5]]:
        assert full.decode(full.encode(text)) == text
    other = "Owners SAID:  We'll re-open"
    assert full.normalize(other) == f"Owners {UNK}:  We'll re-open"  # only 'SAID' is unseen
    # IDs 0 and 2: an unknown token without and with a space after it
    assert english.decode([0, 2, 1]) == f"{UNK}{UNK} {EOD}"


def test_english_tokens_are_spacys_with_their_space(english):
    toks = english.spacy_tokens("Don't stop,  now")
    assert toks == [("Do", False), ("n't", True), ("stop", False), (",", True),
                    (" ", False), ("now", False)]


def test_chinese_round_trip_in_characters():
    docs = chinese_documents(60)
    tok = train_tokenizer("spacy", docs[:40], 2_000, progress=False, lang="zh")
    assert tok.lang == "zh" and tok.name.startswith("spaCy zh")
    entries = tok.texts[3:]
    assert sum(len(t) == 1 for t in entries) / len(entries) >= 0.95  # characters
    for doc in docs:
        assert tok.decode(tok.encode(doc)) == doc  # every character seen in training
    held = np.concatenate([tok.encode(d) for d in docs[40:]])
    assert not np.isin(held, [tok.unk_id, tok.unk_space_id]).any()
    other = "你好，世界。花开了！"
    assert tok.decode(tok.encode(other)) == tok.normalize(other)
    assert tok.normalize(other).count(UNK) == 4  # 你 好 世 界 were never seen


def test_round_trips_on_any_text(english):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(st.text())
    def check(text):
        assert english.decode(english.encode(text)) == english.normalize(text)

    check()


def test_decode_rejects_foreign_ids(english):
    with pytest.raises(ParameterError, match="outside this vocabulary"):
        english.decode([english.vocab_size])


# ---------------------------------------------------------------- slices


PIECES = ["Don't", "U.S.A.", "e-mail", "(a)", "1,000.50", "http://x.org/a?b=c", "'s", ":)",
          "etc.", "—", "co-op", "a.m.", "Mr.", "n't", "can't", "x", "12m.", "!", "\"q\"",
          "\n", "\t", "  ", " ", " ", " ", " ", "\u00a0", "naïve", "З", "в", "т.ч.", "д-р"]


@pytest.mark.parametrize("lang", ["en", "ru", "es", "zh"])
def test_slices_give_the_tokens_of_the_whole_text(lang):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    pieces = PIECES + (list("春天来了，山上的花。") if lang == "zh" else [])

    @settings(max_examples=80, deadline=None)
    @given(st.lists(st.sampled_from(pieces), max_size=120), st.integers(1, 40))
    def check(parts, size):
        text = "".join(parts)
        assert "".join(spacy_slices(text, lang, size)) == text
        assert sliced(text, lang, size) == whole(text, lang)

    check()


def test_a_long_text_is_encoded_in_slices_as_one(english, texts, monkeypatch):
    import iokit.tokenize_spacy as ts

    text = "\n\n".join(texts[:40])
    once = english.encode(text)
    monkeypatch.setattr(ts, "_slicing", lambda lang: (ts._AT_SPACE, True, 500))
    assert len(list(spacy_slices(text, "en"))) > 100
    monkeypatch.setattr(ts, "MAX_STRINGS", 2_000)  # spaCy starts afresh many times
    assert np.array_equal(english.encode(text), once)


# ---------------------------------------------------------------- save, load, errors


def test_save_load(tmp_path, english, texts):
    path = english.save(tmp_path / "vocab.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "iokit-spacy-vocab" and data["lang"] == "en"
    assert len(data["tokens"]) == len(data["spaces"]) == english.vocab_size - 3
    back = load_tokenizer(path)
    assert back.kind == "spacy" and back.fingerprint == english.fingerprint
    assert np.array_equal(back.encode(texts[110]), english.encode(texts[110]))
    copy = pickle.loads(pickle.dumps(back))
    assert np.array_equal(copy.encode(texts[111]), english.encode(texts[111]))
    zh = SpacyTokenizer("zh", english.texts[3:], english.spaces[3:])
    assert zh.fingerprint != english.fingerprint  # the language is part of it


def test_bad_vocabulary_files(tmp_path, english):
    good = json.loads(english.to_json())
    cases = {"version": ({"version": 9}, "field 'version' is 9"),
             "specials": ({"specials": ["<unk>", "<eod>"]}, "field 'specials'"),
             "lang": ({"lang": 3}, "field 'lang'"),
             "spaces": ({"spaces": good["spaces"][:-1]}, "3,997 tokens but 3,996|tokens but"),
             "flags": ({"spaces": [2] * len(good["spaces"])}, "field 'spaces'"),
             "dup": ({"tokens": ["a", "a"], "spaces": [0, 0]}, "twice")}
    for name, (change, message) in cases.items():
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps({**good, **change}), encoding="utf-8")
        with pytest.raises(FormatError, match=f"{name}.json: .*({message})"):
            load_tokenizer(p)


def test_languages_it_cannot_use_are_said():
    with pytest.raises(ParameterError, match="spaCy has no language 'qq'"):
        SpacyTokenizer.train(["a b"], lang="qq", progress=False)
    with pytest.raises(ParameterError, match="'ja' tokenizer needs a package"):
        SpacyTokenizer.train(["a b"], lang="ja", progress=False)
    with pytest.raises(ParameterError, match="at least 4"):
        SpacyTokenizer.train(["a b"], vocab_size=3, progress=False)


def _without_spacy(monkeypatch):
    real_import = builtins.__import__

    def no_spacy(name, *args, **kwargs):
        if name == "spacy" or name.startswith("spacy."):
            raise ImportError("no spacy")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_spacy)


def test_missing_extra_names_it(monkeypatch, tmp_path, texts, english, capsys):
    path = english.save(tmp_path / "vocab.json")
    _without_spacy(monkeypatch)
    extra = r"optional 'spacy' extra.*pip install -e '\.\[spacy\]'"
    with pytest.raises(ParameterError, match=extra):
        train_tokenizer("spacy", texts[:2])
    back = load_tokenizer(path)  # decoding needs only the vocabulary
    assert back.decode([3, 4]) == english.decode([3, 4])
    with pytest.raises(ParameterError, match=extra):
        back.encode("text")
    from iokit.app.cli import main

    assert main(["shards", "--scale", "tiny", "--tokenizer", "spacy",
                 "--out", str(tmp_path / "x")]) == 2
    assert "optional 'spacy' extra" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- the command line


def _digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_shards_from_the_command_line_are_the_same_for_1_and_2_processes(
        tiny_corpus, tmp_path, capsys, monkeypatch):
    from iokit.app.cli import main
    from iokit.shards import open_shards

    monkeypatch.setenv("IOKIT_DATA", str(tmp_path / "data"))
    small = tmp_path / "small.jsonl"
    write_head(tiny_corpus, small, 400_000)
    runs = {}
    for engine, workers in (("processes", 1), ("processes", 2), ("threads", 2)):
        out = tmp_path / f"s-{engine}-{workers}"
        assert main(["shards", "--corpus", str(small), "--tokenizer", "spacy", "--parts", "4",
                     "--vocab-size", "8000", "--engine", engine, "--workers", str(workers),
                     "--out", str(out)]) == 0
        runs[engine, workers] = _digests(out)
    assert "training the spacy vocabulary (8,000 IDs)" in capsys.readouterr().out
    first = runs["processes", 1]
    assert len(first) == 9  # 4 × (.bin, .idx) + vocab.json
    assert runs["processes", 2] == first and runs["threads", 2] == first
    tok = load_tokenizer(tmp_path / "s-processes-1" / "vocab.json")
    docs = [d.text for d in iter_documents(small)]
    with open_shards(tmp_path / "s-processes-1", tokenizer=tok) as s:
        assert len(s) == len(docs)
        assert np.array_equal(s.document(3)[:-1], tok.encode(docs[3]))
        assert tok.decode(s.document(3)[:-1]) == tok.normalize(docs[3])


def test_chinese_shards_from_the_command_line(tmp_path, capsys, monkeypatch):
    from iokit.app.cli import main

    monkeypatch.setenv("IOKIT_DATA", str(tmp_path / "data"))
    text = tmp_path / "novel.txt"
    text.write_text("\n".join(chinese_documents(40)), encoding="utf-8")
    assert main(["shards", "--corpus", str(text), "--engine", "serial", "--parts", "1",
                 "--tokenizer", "spacy", "--lang", "zh", "--out", str(tmp_path / "s")]) == 0
    out, err = capsys.readouterr()
    assert "training the spacy vocabulary" in out and "warning" not in err
    tok = load_tokenizer(tmp_path / "s" / "vocab.json")
    assert tok.lang == "zh"
    doc = text.read_text(encoding="utf-8")
    assert tok.decode(tok.encode(doc)) == doc


def test_the_command_line_checks_lang_before_any_work(tmp_path, capsys):
    from iokit.app.cli import main

    assert main(["shards", "--scale", "tiny", "--lang", "zh", "--out", str(tmp_path / "x")]) == 2
    assert "--lang is the language of spaCy's tokenizer" in capsys.readouterr().err
    assert main(["shards", "--scale", "tiny", "--tokenizer", "spacy", "--lang", "qq",
                 "--out", str(tmp_path / "x")]) == 2
    assert "spaCy has no language 'qq'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- notebook 02's comparison


def test_the_lab_compares_three_tokenizers_on_held_out_text(tiny_corpus, monkeypatch):
    from iokit.lab import tokenizers as lab

    c = lab.compare_tokenizers(tiny_corpus, train_bytes=200_000, sample_bytes=40_000,
                               repeat=1)
    assert [r.kind for r in c.rows] == ["word", "bpe", "spacy"] and not c.skipped
    assert c.slowest in lab.KINDS and c.sample_bytes <= 40_000 + 20_000
    held = [d.text for d in iter_documents(tiny_corpus)][c.train_docs:][:c.row("bpe").docs]
    for r in c.rows:
        ids = [r.tokenizer.encode(d) for d in held]
        assert r.tokens == sum(map(len, ids)) and r.text_bytes == sum(len(d.encode()) for d in held)
        assert r.unknown == sum(np.isin(a, lab.unknown_ids(r.tokenizer)).sum() for a in ids)
        assert r.exact_docs == sum(r.tokenizer.normalize(d) == d for d in held)
        assert r.epochs.raw_epoch_s > 0 and r.epochs.preprocess_s > 0 and r.mb_per_s > 0
    assert c.row("bpe").unk_share == 0 and c.row("bpe").exact_share == 1
    assert c.row("spacy").unk_share > 0  # the vocabulary saw only the first part
    big = c.scaled("spacy", 10 * c.sample_bytes)
    assert big.raw_epoch_s == pytest.approx(10 * c.row("spacy").epochs.raw_epoch_s)
    assert "spaCy en" in c.table()

    _without_spacy(monkeypatch)
    c = lab.compare_tokenizers(tiny_corpus, ("word", "spacy"), train_bytes=50_000,
                               sample_bytes=10_000, repeat=1)
    assert [r.kind for r in c.rows] == ["word"] and "'spacy' extra" in c.skipped["spacy"]


def test_a_huge_document_is_encoded_in_bounded_memory(monkeypatch):
    import tracemalloc

    import iokit.tokenize_spacy as ts

    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(3000)] + ["the", "of", ",", ".", "don't"])
    text = " ".join(words[rng.zipf(1.3, size=700_000) % len(words)])  # one 3 MB line
    tok = SpacyTokenizer.train([" ".join(words[:500])], vocab_size=400, progress=False)
    tok.encode("warm up")
    tracemalloc.start()
    try:
        ids = tok.encode(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"one document of {len(text) / 1e6:.1f} MB: traced peak {peak / 1e6:.1f} MB = "
          f"{peak / len(text):.1f} x its size")
    assert peak < 6 * len(text)  # spaCy's Doc of the whole text alone takes about 90 times it
    pattern, after, _ = ts._slicing("en")
    monkeypatch.setattr(ts, "_slicing", lambda lang: (pattern, after, 10**9))  # one slice
    assert np.array_equal(tok.encode(text), ids)


def test_importing_the_kit_does_not_import_spacy():
    import subprocess
    import sys

    for first in ("iokit.tokenize", "iokit.tokenize_spacy", "iokit.app.cli"):
        code = (f"import sys, {first}; from iokit.tokenize import TOKENIZERS; "
                "assert 'spacy' in TOKENIZERS; assert 'spacy' not in sys.modules")
        subprocess.run([sys.executable, "-c", code], check=True)
