"""Memory is decided by the kit, never by the input.

* A decompression bomb (a tiny, checksum-valid block that inflates to hundreds of megabytes)
  raises FormatError having allocated no more than the block's declared raw size, with every
  codec, whether or not the compressed frame declares its size: traced in-process with
  tracemalloc, and as the peak RSS of a subprocess.
* One huge document (all its text in one JSONL line) is tokenized in slices: the traced peak
  of pretokenizing it is a small constant times its size, and the slices give exactly the
  tokens of the whole text (word-level and byte-level BPE).
* Sizes are checked against the memory the process can allocate before anything is made.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from iokit import errors
from iokit.blocks import BlockReader, write_blocks
from iokit.codecs import Codec, lzw_compress
from iokit.errors import FormatError, ParameterError, check_size
from iokit.shards import open_shards, pretokenize
from iokit.tokenize import WordTokenizer, text_slices

BLOCK = 64 * 1024
BOMB = 256 << 20  # what the bomb inflates to: 4,096 times its declared block


class _Fixed(Codec):
    """Writes a given compressed block whatever it is asked to compress."""

    def __init__(self, name, packed):
        self.name, self.packed = name, packed

    def compress(self, data):
        return self.packed


def _zeros(n: int, compress) -> bytes:
    return b"".join([*(compress.compress(bytes(1 << 20)) for _ in range(n >> 20)),
                     compress.flush()])


def _bomb(kind: str) -> tuple[str, bytes]:
    if kind == "zlib":
        return "zlib:6", _zeros(BOMB, zlib.compressobj(9))
    if kind == "lzw":  # pure Python: a smaller one, still 16 times the block
        return "lzw", lzw_compress(bytes(BLOCK * 16))
    if kind == "zstd-declared":
        return "zstd:3", zstandard.ZstdCompressor().compress(bytes(BOMB))
    c = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    return "zstd:3", _zeros(BOMB, c)


@pytest.mark.parametrize("kind", ["zlib", "zstd-declared", "zstd-undeclared", "lzw"])
def test_a_decompression_bomb_is_refused_within_its_declared_size(kind, tmp_path):
    name, packed = _bomb(kind)
    path = tmp_path / "bomb.blk"
    write_blocks(path, b"x" * BLOCK, _Fixed(name, packed), BLOCK)
    del packed
    reader = BlockReader(path)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=r"bomb\.blk: block 0 .*more than the 65,536"):
            reader.block(0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"{kind}: traced peak {peak / 1e6:.2f} MB refusing a block of {BLOCK:,} bytes")
    assert peak < 4 * BLOCK + (1 << 20)


def test_a_bomb_does_not_raise_the_peak_rss_of_a_reader(tmp_path):
    path = tmp_path / "bomb.blk"
    write_blocks(path, b"x" * BLOCK, _Fixed("zlib:6", _zeros(2 * BOMB, zlib.compressobj(9))),
                 BLOCK)
    script = ("import resource, sys\n"
              "from iokit.blocks import BlockReader\n"
              "from iokit.errors import FormatError\n"
              "r = BlockReader(sys.argv[1])\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "try:\n    r.block(0)\nexcept FormatError:\n    pass\n"
              "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "print((after - before) * 1024)\n")
    r = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    grew = int(r.stdout)
    print(f"peak RSS grew by {grew / 1e6:.1f} MB for a block inflating to {2 * BOMB / 1e6:.0f} MB")
    assert grew < 32 << 20


@pytest.mark.filterwarnings("ignore::iokit.tokenize.TokenizerWarning")  # tiny on purpose
def test_a_huge_document_is_tokenized_in_bounded_memory(tmp_path):
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(3000)] + ["the", "of", ",", "."])
    text = " ".join(words[rng.zipf(1.3, size=2_000_000) % len(words)])
    corpus = tmp_path / "huge.jsonl"
    corpus.write_text(json.dumps({"text": "a small one"}) + "\n" + json.dumps({"text": text})
                      + "\n")
    tok = WordTokenizer.train([" ".join(words[:500])], vocab_size=400)
    expected = tok.encode(text)  # the same tokens, computed before the trace starts
    size = corpus.stat().st_size
    del text
    tracemalloc.start()
    try:
        pretokenize(corpus, tok, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"one document of {size / 1e6:.1f} MB: traced peak {peak / 1e6:.1f} MB = "
          f"{peak / size:.1f} x its size")
    assert peak < 8 * size  # whole token lists in memory took about 20x
    with open_shards(tmp_path / "out") as s:
        assert np.array_equal(s.document(1)[:-1], expected)


PIECES = list("ab cdΣσς é_1²,.;:!?'\"()-\n\t\u00a0\x1c中文，。\u0301") + ["'s", "  ", " 's"]
TEXT = st.lists(st.sampled_from(PIECES), max_size=150).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, size=st.integers(1, 40))
def test_slices_give_the_tokens_of_the_whole_text(text, size):
    pieces = list(text_slices(text, size))
    assert "".join(pieces) == text
    tok = _word()
    whole = tok.encode(text).tolist()
    assert [t for p in pieces for t in tok.encode(p).tolist()] == whole
    bpe = _bpe()
    if bpe is not None:
        ids = [t for p in pieces for t in bpe.encode(p).tolist()]
        assert ids == bpe.encode(text).tolist()


_CACHE: dict = {}


def _word():
    if "word" not in _CACHE:
        _CACHE["word"] = WordTokenizer.train(["ab cd é σς 中文 a_b 1² ' s"], vocab_size=50)
    return _CACHE["word"]


def _bpe():
    if "bpe" not in _CACHE:
        try:
            from iokit.tokenize import BPETokenizer

            _CACHE["bpe"] = BPETokenizer.train(["ab cd é σς 中文 a_b 1² 's, (x) \"q\"!"] * 20,
                                               vocab_size=300)
        except ParameterError:  # the optional extra is not installed
            _CACHE["bpe"] = None
    return _CACHE["bpe"]


def test_check_size_against_the_data_and_the_machine(monkeypatch):
    assert check_size("n", 10, most=10) == 10
    with pytest.raises(ParameterError, match=r"n 11 is more than the shards hold; use at most"):
        check_size("n", 11, most=10, of="the shards hold")
    monkeypatch.setattr(errors, "available_memory", lambda: 1 << 20)
    with pytest.raises(ParameterError, match=r"needs 2\.1 MB of memory.*about 1\.0 MB"):
        check_size("chunk size", 1 << 21)
    assert check_size("chunk size", 1 << 19) == 1 << 19
    monkeypatch.setattr(errors, "available_memory", lambda: None)  # unknown: not refused
    assert check_size("chunk size", 1 << 40) == 1 << 40
    with pytest.raises(ParameterError, match=r"> 0"):
        check_size("chunk size", 0)


def test_available_memory_is_known_on_this_machine():
    room = errors.available_memory()
    assert room is None or room > 0
