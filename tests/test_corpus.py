import hashlib
import json

import pytest
import zstandard

from iokit.corpus import (
    SCALES,
    corpus_path,
    corpus_stats,
    ensure_corpus,
    generate_corpus,
    iter_documents,
    iter_generated,
    resolve_scale,
)
from iokit.errors import CorpusError, ParameterError


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_and_scale_give_byte_identical_files(tmp_path, tiny_corpus):
    again = generate_corpus(tmp_path / "again.jsonl", "tiny", progress=False)
    assert sha256(again) == sha256(tiny_corpus)


def test_another_seed_gives_another_corpus(tmp_path, tiny_corpus):
    other = generate_corpus(tmp_path / "other.jsonl", "tiny", seed=7, progress=False)
    assert sha256(other) != sha256(tiny_corpus)


def test_tiny_corpus_is_jsonl_of_the_right_size(tiny_corpus):
    size = tiny_corpus.stat().st_size
    assert 2e6 <= size <= 4e6
    lines = tiny_corpus.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert all(set(r) == {"id", "text"} for r in records)
    assert len({r["id"] for r in records}) == len(records)


def test_corpus_is_real_utf8_with_english_like_structure(tiny_corpus):
    stats = corpus_stats(tiny_corpus)
    assert stats.bytes > stats.characters  # accented loanwords take two bytes
    assert stats.top_words[:3] == ["the", "of", "and"]
    # A long tail of document lengths: the largest is many times the median.
    assert stats.doc_bytes.max() > 8 * float(sorted(stats.doc_bytes)[len(stats.doc_bytes) // 2])
    # Zipf: the 10th word occurs roughly a tenth as often as the first (within a factor 3).
    ratio = stats.word_counts[0] / stats.word_counts[9]
    assert 10 / 3 < ratio < 10 * 3


def test_small_corpus_compresses_like_english_and_has_a_large_vocabulary():
    """The issue's figures, measured on the small scale (about 64 MB, made in memory)."""
    import re

    cctx = zstandard.ZstdCompressor(level=3)
    chunker = cctx.chunker(chunk_size=1 << 20)
    raw = compressed = 0
    words = set()
    word = re.compile(r"[^\W\d_]+")
    for doc in iter_generated("small"):
        line = (json.dumps({"id": doc.id, "text": doc.text}, ensure_ascii=False) + "\n").encode()
        raw += len(line)
        compressed += sum(map(len, chunker.compress(line)))
        words.update(word.findall(doc.text.lower()))
    compressed += sum(map(len, chunker.finish()))
    assert abs(raw - SCALES["small"]) < 0.05 * SCALES["small"]
    assert 2.4 <= raw / compressed <= 4.0
    assert len(words) >= 20_000


def test_scale_comes_from_argument_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("IOKIT_SCALE", raising=False)
    assert resolve_scale() == "small"
    monkeypatch.setenv("IOKIT_SCALE", "tiny")
    assert resolve_scale() == "tiny"
    assert resolve_scale("large") == "large"


def test_unknown_scale_lists_the_valid_ones():
    with pytest.raises(ParameterError, match="unknown scale 'huge'.*large, small, tiny"):
        resolve_scale("huge")


def test_ensure_corpus_reuses_a_complete_file(tmp_path):
    path = corpus_path("tiny", tmp_path)
    path.write_text('{"id": "x", "text": "already here"}\n')
    assert ensure_corpus("tiny", tmp_path) == path
    assert path.read_text() == '{"id": "x", "text": "already here"}\n'


def test_interrupted_generation_leaves_no_file(tmp_path, monkeypatch):
    import iokit.corpus as corpus

    def boom(*args, **kwargs):
        yield corpus.Document("a", "first")
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus, "iter_generated", boom)
    with pytest.raises(KeyboardInterrupt):
        ensure_corpus("tiny", tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- readers


def test_reads_jsonl_with_a_custom_text_field(tmp_path):
    p = tmp_path / "mine.jsonl"
    p.write_text('{"id": 1, "content": "hello"}\n\n{"content": "world"}\n', encoding="utf-8")
    docs = list(iter_documents(p, text_field="content"))
    assert [(d.id, d.text) for d in docs] == [("1", "hello"), ("line-3", "world")]


def test_reads_a_folder_of_text_files_in_order(tmp_path):
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("third é", encoding="utf-8")
    docs = list(iter_documents(tmp_path))
    assert [d.text for d in docs] == ["first", "second", "third é"]


def test_reading_streams_documents(tiny_corpus):
    it = iter_documents(tiny_corpus)
    first = next(it)
    assert first.id == "doc-0000000" and len(first.text) > 100


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"text": "ok"}\n{"text": broken}\n', r"line 2, column 10: malformed JSON"),
        (b'{"text": "ok"}\n{"body": "x"}\n', r"line 2: no 'text' field \(found: body\)"),
        (b'{"text": 5}\n', r"line 1: field 'text' is int"),
        (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', r"line 2 is not valid UTF-8 \(byte offset 28"),
        (b"", r"the corpus is empty"),
        (b"\n\n", r"the corpus is empty"),
    ],
)
def test_bad_jsonl_names_file_and_position(tmp_path, content, message):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(content)
    with pytest.raises(CorpusError, match=message) as info:
        list(iter_documents(p))
    assert str(p) in str(info.value)


def test_missing_corpus_says_how_to_make_one(tmp_path):
    with pytest.raises(CorpusError, match="no such corpus.*iokit data"):
        list(iter_documents(tmp_path / "nope.jsonl"))


def test_empty_folder_and_bad_utf8_text_file(tmp_path):
    with pytest.raises(CorpusError, match="no .txt files"):
        list(iter_documents(tmp_path))
    (tmp_path / "x.txt").write_bytes(b"ok \xff\xfe")
    with pytest.raises(CorpusError, match=r"x.txt: is not valid UTF-8 \(byte offset 3"):
        list(iter_documents(tmp_path))
