"""Block-compressed shards: round trips, windows, streaming, and clear errors on damage."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

from iokit.blocks import BlockReader
from iokit.errors import FormatError, ParameterError
from iokit.shards import (
    HEADER,
    VERSION_BLOCKS,
    open_shards,
    pretokenize,
    read_index,
    shard_paths,
    write_shards,
)
from iokit.tokenize import WordTokenizer


def make_docs(n=60, vocab=1000, seed=0):
    rng = np.random.default_rng(seed)
    # Zipf-like IDs, so the tokens compress as real ones do
    return [np.minimum(rng.zipf(1.3, size=int(rng.integers(1, 800))), vocab - 1)
            for _ in range(n)]


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


DOCS = make_docs()
STREAM = np.concatenate(DOCS)


@pytest.mark.parametrize("codec", ["lzw", "zlib:6", "zstd:1", "zstd:19"])
@pytest.mark.parametrize("max_shard_bytes", [10**9, 20_000])
def test_round_trip_every_codec(tmp_path, codec, max_shard_bytes):
    raw_dir, z_dir = tmp_path / "raw", tmp_path / "z"
    write_shards(DOCS, raw_dir, vocab_size=1000, max_shard_bytes=max_shard_bytes)
    write_shards(DOCS, z_dir, vocab_size=1000, max_shard_bytes=max_shard_bytes, codec=codec,
                 block_bytes=4096)
    with open_shards(raw_dir) as raw, open_shards(z_dir, verify=True) as z:
        assert len(z.shards) == len(raw.shards)  # max_shard_bytes counts raw bytes
        assert all(s.compressed and s.blocks.codec == codec for s in z.shards)
        assert z.nbytes < raw.nbytes
        for i in range(len(DOCS)):
            assert np.array_equal(z.document(i), DOCS[i])
        assert np.array_equal(np.concatenate(list(z.iter_chunks(3000))), STREAM)
        for seed in range(3):  # the same windows as from the raw shards
            xr, yr = raw.sample_batch(seed, 16, 100)
            xz, yz = z.sample_batch(seed, 16, 100)
            assert np.array_equal(xr, xz) and np.array_equal(yr, yz)
        assert np.array_equal(z.read(1234, 9876), STREAM[1234:9876])


def test_index_layout_and_uncompressed_shards_unchanged(tmp_path):
    write_shards(DOCS, tmp_path / "a", vocab_size=1000)
    write_shards(DOCS, tmp_path / "b", vocab_size=1000, codec=None)
    write_shards(DOCS, tmp_path / "c", vocab_size=1000, codec="none")
    assert digest(tmp_path / "a") == digest(tmp_path / "b") == digest(tmp_path / "c")
    write_shards(DOCS, tmp_path / "z", vocab_size=1000, codec="zstd:3")
    fields = read_index(shard_paths(tmp_path / "z", 0)[1])
    version, codec = struct.unpack_from("<IB", shard_paths(tmp_path / "z", 0)[1].read_bytes(), 8)
    assert (version, codec) == (VERSION_BLOCKS, 1)
    table = fields["blocks"]
    assert table.codec == "zstd:3" and table.block_bytes == 256 * 1024
    assert table.raw_size == len(STREAM) * 2 == fields["n_tokens"] * 2
    assert fields["bin_size"] == shard_paths(tmp_path / "z", 0)[0].stat().st_size


def test_same_input_same_compressed_bytes(tmp_path):
    for d in ("a", "b"):
        write_shards(DOCS, tmp_path / d, vocab_size=1000, codec="zstd:3", block_bytes=2048)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_pretokenize_with_a_trained_dictionary(tmp_path, tiny_corpus):
    from iokit.corpus import iter_documents

    tok = WordTokenizer.train((d.text for d in iter_documents(tiny_corpus)), 4096)
    pretokenize(tiny_corpus, tok, tmp_path / "raw")
    pretokenize(tiny_corpus, tok, tmp_path / "dict", codec="zstd-dict:3", block_bytes=4096)
    pretokenize(tiny_corpus, tok, tmp_path / "plain", codec="zstd:3", block_bytes=4096)
    with open_shards(tmp_path / "raw") as raw, open_shards(tmp_path / "dict", tokenizer=tok) \
            as d, open_shards(tmp_path / "plain") as p:
        assert d.shards[0].blocks.dictionary and d.nbytes < p.nbytes < raw.nbytes
        assert np.array_equal(np.concatenate(list(d.iter_chunks())),
                              np.concatenate(list(raw.iter_chunks())))


def test_a_window_decompresses_only_the_blocks_it_touches(tmp_path):
    write_shards(DOCS, tmp_path, vocab_size=1000, codec="zstd:3", block_bytes=1024)
    s = open_shards(tmp_path)
    reader: BlockReader = s.shards[0].source.reader
    seen = []
    decode = reader.decode
    reader.decode = lambda i, packed: seen.append(i) or decode(i, packed)
    assert np.array_equal(s.read(600, 700), STREAM[600:700])  # bytes 1200..1400: block 1
    assert seen == [1]
    assert np.array_equal(s.read(511, 513), STREAM[511:513])  # bytes 1022..1026: blocks 0, 1
    assert seen == [1, 0, 1]


def test_one_corrupt_block_names_shard_and_block(tmp_path):
    write_shards(DOCS, tmp_path, vocab_size=1000, codec="zstd:3", block_bytes=1024)
    bin_path = shard_paths(tmp_path, 0)[0]
    table = read_index(shard_paths(tmp_path, 0)[1])["blocks"]
    raw = bytearray(bin_path.read_bytes())
    raw[int(table.offsets[5]) + 7] ^= 0xFF
    bin_path.write_bytes(bytes(raw))
    s = open_shards(tmp_path)  # opening checks sizes, not every block
    assert np.array_equal(s.read(0, 5 * 512), STREAM[:5 * 512])  # blocks 0-4 are fine
    with pytest.raises(FormatError, match=r"shard-00000\.bin: block 5 of \d+ .*checksum"):
        s.read(5 * 512, 5 * 512 + 10)
    with pytest.raises(FormatError, match=r"shard-00000\.bin: checksum mismatch"):
        open_shards(tmp_path, verify=True)


def test_truncated_files(tmp_path):
    write_shards(DOCS, tmp_path, vocab_size=1000, codec="zstd:3", block_bytes=1024)
    bin_path, idx_path = shard_paths(tmp_path, 0)
    good_bin, good_idx = bin_path.read_bytes(), idx_path.read_bytes()
    bin_path.write_bytes(good_bin[:-100])
    with pytest.raises(FormatError, match=r"shard-00000\.bin: has .* field 'bin size'"):
        open_shards(tmp_path)
    bin_path.write_bytes(good_bin)
    idx_path.write_bytes(good_idx[:-10])
    with pytest.raises(FormatError, match=r"shard-00000\.idx: field 'block table'"):
        open_shards(tmp_path)
    n_docs = struct.unpack_from("<Q", good_idx, 40)[0]
    idx_path.write_bytes(good_idx[:HEADER.size + 8 * (n_docs + 1)])
    with pytest.raises(FormatError, match=r"shard-00000\.idx: field 'document count'"):
        open_shards(tmp_path)


def test_version_and_codec_code_must_agree(tmp_path):
    write_shards(DOCS, tmp_path, vocab_size=1000, codec="zstd:3")
    idx = shard_paths(tmp_path, 0)[1]
    raw = bytearray(idx.read_bytes())
    raw[13] = 0
    idx.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"field 'codec code': 0, but format version 2"):
        open_shards(tmp_path)


def test_bad_compression_settings(tmp_path):
    with pytest.raises(ParameterError, match=r"unknown codec 'brotli'.*zstd:1\.\.19"):
        write_shards(DOCS, tmp_path, vocab_size=1000, codec="brotli")
    with pytest.raises(ParameterError, match="multiple of the token size"):
        write_shards(DOCS, tmp_path, vocab_size=1000, codec="zstd:3", block_bytes=1001)
    with pytest.raises(ParameterError, match="block_bytes"):
        write_shards(DOCS, tmp_path, vocab_size=1000, codec="zstd:3", block_bytes=0)
    assert not list(tmp_path.glob("shard-*"))


def test_empty_corpus_compressed(tmp_path):
    write_shards([], tmp_path, vocab_size=1000, codec="zstd:3")
    with open_shards(tmp_path) as s:
        assert s.n_tokens == 0 and s.shards[0].compressed


def test_tour_stages_and_bench_figures(tiny_corpus, tmp_path):
    from iokit.app.bench import bench_compressed_shards
    from iokit.app.tour import Context, stage_compress_shards, stage_compressed_epoch

    ctx = Context(tiny_corpus, tmp_path)
    rows = [stage_compress_shards(ctx), stage_compressed_epoch(ctx)]
    assert "ratio" in rows[0].note and "memmap epoch" in rows[1].note
    with open_shards(ctx.extra["compressed_shards"]) as z, open_shards(ctx.extra["shards"]) as r:
        assert z.shards[0].compressed and z.n_tokens == r.n_tokens
        assert np.array_equal(np.concatenate(list(z.iter_chunks())),
                              np.concatenate(list(r.iter_chunks())))
    figures = bench_compressed_shards(tiny_corpus, tmp_path / "bench")
    frac, prefetch, text, tokens = figures
    assert frac.unit == "fraction" and frac.value > 0 and "zstandard" in frac.name
    assert prefetch.value > 0 and "prefetch" in prefetch.name
    assert text.value > tokens.value > 1  # token IDs compress worse than text
