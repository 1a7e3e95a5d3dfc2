"""Preprocessing streams: peak memory stays flat as the corpus grows.

Pretokenizing a corpus and writing its shards holds one document, one shard's document offsets
and the writer's buffers, whatever the corpus size. The test traces Python allocations
(tracemalloc, which also sees numpy's buffers) while preprocessing the tiny corpus and the same
corpus four times over, with shards several times smaller than either corpus, and checks the
peak does not grow with the corpus.
"""

from __future__ import annotations

import itertools
import tracemalloc

import pytest

from iokit.corpus import iter_documents
from iokit.shards import pretokenize
from iokit.tokenize import WordTokenizer

MAX_SHARD_BYTES = 256 * 1024  # the tokens of the 1x corpus fill several shards


def _peak(corpus, tok, out, codec) -> int:
    tracemalloc.start()
    try:
        pretokenize(corpus, tok, out, max_shard_bytes=MAX_SHARD_BYTES, codec=codec)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("codec", [None, "zstd:3"])
def test_preprocessing_peak_memory_does_not_grow_with_the_corpus(codec, tiny_corpus, tmp_path):
    big = tmp_path / "tiny-x4.jsonl"
    big.write_bytes(tiny_corpus.read_bytes() * 4)
    docs = itertools.islice(iter_documents(tiny_corpus), 300)
    tok = WordTokenizer.train((d.text for d in docs), vocab_size=8000)
    small_peak = _peak(tiny_corpus, tok, tmp_path / "out1", codec)
    big_peak = _peak(big, tok, tmp_path / "out4", codec)
    small_size, big_size = tiny_corpus.stat().st_size, big.stat().st_size
    print(f"codec {codec}: peak {small_peak / 1e6:.2f} MB for {small_size / 1e6:.1f} MB, "
          f"{big_peak / 1e6:.2f} MB for {big_size / 1e6:.1f} MB of corpus")
    assert len(list((tmp_path / "out4").glob("*.bin"))) >= 4 * len(
        list((tmp_path / "out1").glob("*.bin"))) - 3  # the data really went through
    assert big_peak < 1.5 * small_peak  # proportional growth would be 4x
    assert big_peak < big_size / 4
