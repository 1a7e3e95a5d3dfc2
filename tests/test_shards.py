"""Token shards: the format (write/read, dtype, splitting, determinism), bad input, sampling."""

from __future__ import annotations

import hashlib
import itertools
import struct

import numpy as np
import pytest
from helpers import leftover_temp_files

from iokit.corpus import iter_documents
from iokit.errors import FormatError, ParameterError
from iokit.shards import (
    HEADER,
    choose_dtype,
    open_shards,
    pretokenize,
    read_index,
    shard_paths,
    write_shards,
)
from iokit.tokenize import WordTokenizer


def make_docs(n=50, vocab=1000, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=int(rng.integers(1, 400))) for _ in range(n)]


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())}


@pytest.fixture
def docs():
    return make_docs()


@pytest.fixture
def shard_dir(tmp_path, docs):
    out = tmp_path / "shards"
    write_shards(docs, out, vocab_size=1000, max_shard_bytes=4_000, fingerprint=42)
    return out


# --------------------------------------------------------------------------- the format


def test_round_trip_documents(shard_dir, docs):
    s = open_shards(shard_dir, verify=True)
    assert len(s) == len(docs)
    assert s.n_tokens == sum(len(d) for d in docs)
    assert s.dtype == np.dtype("<u2")
    assert (s.vocab_size, s.fingerprint) == (1000, 42)
    for i, d in enumerate(docs):
        assert np.array_equal(s.document(i), d)
    assert np.array_equal(s.document(-1), docs[-1])
    assert np.array_equal(np.concatenate(list(s.iter_chunks(777))), np.concatenate(docs))
    with pytest.raises(IndexError, match="document 50 out of range"):
        s.document(50)


def test_dtype_choice():
    assert choose_dtype(1000) == np.uint16
    assert choose_dtype(65_536) == np.uint16  # IDs 0..65535 all fit
    assert choose_dtype(65_537) == np.uint32
    assert choose_dtype(200_000) == np.uint32


def test_uint32_when_the_vocabulary_needs_it(tmp_path):
    docs = [np.array([0, 70_000, 5]), np.array([69_999])]
    write_shards(docs, tmp_path, vocab_size=70_001)
    s = open_shards(tmp_path)
    assert s.dtype == np.dtype("<u4")
    assert s.nbytes == 4 * 4
    assert s.document(0).tolist() == [0, 70_000, 5]


def test_forced_uint32_doubles_the_bytes(tmp_path, docs):
    write_shards(docs, tmp_path / "a", vocab_size=1000, dtype="uint16")
    write_shards(docs, tmp_path / "b", vocab_size=1000, dtype="uint32")
    a, b = open_shards(tmp_path / "a"), open_shards(tmp_path / "b")
    assert b.nbytes == 2 * a.nbytes == 4 * a.n_tokens
    assert np.array_equal(a.document(7), b.document(7))


def test_file_layout(shard_dir, docs):
    s = open_shards(shard_dir)
    first = s.shards[0]
    raw = first.idx_path.read_bytes()
    assert raw[:8] == b"IOKITIDX"
    assert struct.unpack_from("<I", raw, 8) == (1,)  # version
    assert raw[12] == 1 and raw[13] == 0  # uint16, no codec
    assert len(raw) == HEADER.size + 8 * (first.n_docs + 1)
    # The .bin is the token IDs back to back, little-endian, nothing else.
    expected = np.concatenate(docs[: first.n_docs]).astype("<u2").tobytes()
    assert first.bin_path.read_bytes() == expected


def test_shard_splitting(shard_dir, docs):
    s = open_shards(shard_dir)
    assert len(s.shards) > 3
    for shard in s.shards:
        assert shard.bin_size <= 4_000 or shard.n_docs == 1
    assert [sh.last for sh in s.shards] == [False] * (len(s.shards) - 1) + [True]
    assert sum(sh.n_docs for sh in s.shards) == len(docs)
    assert leftover_temp_files(shard_dir) == []


def test_a_document_larger_than_a_shard_gets_its_own(tmp_path):
    docs = [np.arange(10), np.arange(5000) % 100, np.arange(10)]
    paths = write_shards(docs, tmp_path, vocab_size=100, max_shard_bytes=1000)
    s = open_shards(tmp_path)
    assert len(paths) == 3
    assert [sh.n_docs for sh in s.shards] == [1, 1, 1]
    assert s.shards[1].bin_size == 10_000


def test_empty_corpus_gives_one_empty_shard(tmp_path):
    write_shards([], tmp_path, vocab_size=10)
    s = open_shards(tmp_path, verify=True)
    assert (len(s), s.n_tokens) == (0, 0)


def test_same_input_same_bytes(tmp_path, docs):
    write_shards(docs, tmp_path / "a", vocab_size=1000, max_shard_bytes=4_000)
    # A generator of arrays of another integer dtype gives the same bytes.
    write_shards((d.astype(np.int32) for d in docs), tmp_path / "b", vocab_size=1000,
                 max_shard_bytes=4_000)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_pretokenize_is_deterministic(tmp_path, tiny_corpus):
    corpus = tiny_corpus
    texts = [d.text for d in itertools.islice(iter_documents(corpus), 100)]
    tok = WordTokenizer.train(texts, vocab_size=3_000)
    for name in ("a", "b"):
        pretokenize(corpus, tok, tmp_path / name, max_shard_bytes=200_000)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    s = open_shards(tmp_path / "a", tokenizer=tok, verify=True)
    assert len(s.shards) > 1
    assert s.document(0)[-1] == tok.eod_id
    first = next(iter(iter_documents(corpus))).text
    assert tok.decode(s.document(0)[:-1]) == tok.normalize(first)
    # The saved vocabulary opens the shards too.
    open_shards(tmp_path / "a", tokenizer=tmp_path / "a" / "vocab.json")


def test_rewriting_fewer_shards_removes_stale_ones(tmp_path, docs):
    write_shards(docs, tmp_path, vocab_size=1000, max_shard_bytes=2_000)
    many = len(list(tmp_path.glob("*.idx")))
    write_shards(docs[:3], tmp_path, vocab_size=1000, max_shard_bytes=2_000)
    assert len(list(tmp_path.glob("*.idx"))) < many
    assert len(open_shards(tmp_path)) == 3


# --------------------------------------------------------------------------- bad input


def test_vocabulary_not_matching_the_shards(tmp_path):
    texts = ["the cat sat on the mat", "a dog"]
    tok = WordTokenizer.train(texts, vocab_size=50)
    other = WordTokenizer.train(["entirely different words here"], vocab_size=50)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": 1, "text": "the cat sat"}\n{"id": 2, "text": "a dog"}\n')
    pretokenize(corpus, tok, tmp_path / "s")
    with pytest.raises(FormatError, match=r"does not match the shards in .*/s .*shard-00000\.idx"
                       r".*load the vocabulary the shards were written with"):
        open_shards(tmp_path / "s", tokenizer=other)
    path = other.save(tmp_path / "other.json")
    with pytest.raises(FormatError, match=r"other\.json: this vocabulary"):
        open_shards(tmp_path / "s", tokenizer=path)


def test_idx_and_bin_disagree(shard_dir):
    bin_path, _ = shard_paths(shard_dir, 1)
    bin_path.write_bytes(bin_path.read_bytes() + b"\0\0")
    with pytest.raises(FormatError, match=r"shard-00001\.bin: has .* bytes, but shard-00001\.idx "
                       r"field 'bin size' says .*disagree"):
        open_shards(shard_dir)


def test_truncated_bin(shard_dir):
    bin_path, _ = shard_paths(shard_dir, 0)
    bin_path.write_bytes(bin_path.read_bytes()[:-10])
    with pytest.raises(FormatError, match=r"shard-00000\.bin: has .*field 'bin size'"):
        open_shards(shard_dir)


def test_missing_bin(shard_dir):
    shard_paths(shard_dir, 2)[0].unlink()
    with pytest.raises(FormatError, match=r"shard-00002\.bin: missing, but shard-00002\.idx"):
        open_shards(shard_dir)


def test_truncated_idx(shard_dir):
    _, idx = shard_paths(shard_dir, 0)
    raw = idx.read_bytes()
    idx.write_bytes(raw[:-8])
    with pytest.raises(FormatError, match=r"shard-00000\.idx: field 'document count'.*truncated"):
        open_shards(shard_dir)
    idx.write_bytes(raw[:30])
    with pytest.raises(FormatError, match=r"shard-00000\.idx: field 'header': the file has 30 "
                       r"bytes.*truncated"):
        open_shards(shard_dir)


def patch(path, offset, data: bytes):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


def test_wrong_magic(shard_dir):
    patch(shard_paths(shard_dir, 0)[1], 0, b"NOTMINE!")
    with pytest.raises(FormatError, match=r"shard-00000\.idx: field 'magic': expected "
                       r"b'IOKITIDX', found b'NOTMINE!'"):
        open_shards(shard_dir)


def test_wrong_version(shard_dir):
    patch(shard_paths(shard_dir, 0)[1], 8, struct.pack("<I", 7))
    with pytest.raises(FormatError, match=r"shard-00000\.idx: field 'version': 7, but this iokit "
                       r"reads version 1"):
        open_shards(shard_dir)


def test_unknown_dtype_and_codec(shard_dir):
    idx = shard_paths(shard_dir, 0)[1]
    patch(idx, 12, b"\x09")
    with pytest.raises(FormatError, match=r"field 'dtype code': 9"):
        read_index(idx)
    patch(idx, 12, b"\x01\x03")
    with pytest.raises(FormatError, match=r"shard-00000\.idx: field 'codec code': 3"):
        read_index(idx)


def test_idx_counts_disagree(shard_dir):
    idx = shard_paths(shard_dir, 0)[1]
    n_tokens = struct.unpack_from("<Q", idx.read_bytes(), 48)[0]
    patch(idx, 48, struct.pack("<Q", n_tokens + 1))
    with pytest.raises(FormatError, match=r"shard-00000\.idx: field 'bin size'.*field 'token "
                       r"count' says"):
        open_shards(shard_dir)


def test_bad_offsets(shard_dir):
    idx = shard_paths(shard_dir, 0)[1]
    patch(idx, HEADER.size + 8 * 2, struct.pack("<q", -5))
    with pytest.raises(FormatError, match=r"field 'document offsets': document 2 starts at -5"):
        open_shards(shard_dir)


def test_checksum_mismatch(shard_dir):
    bin_path = shard_paths(shard_dir, 1)[0]
    raw = bytearray(bin_path.read_bytes())
    raw[10] ^= 0xFF
    bin_path.write_bytes(bytes(raw))
    open_shards(shard_dir)  # sizes still agree: only the checksum can tell
    with pytest.raises(FormatError, match=r"shard-00001\.bin: checksum mismatch: shard-00001\.idx "
                       r"field 'checksum'.*corrupt"):
        open_shards(shard_dir, verify=True)
    with pytest.raises(FormatError, match="checksum mismatch"):
        open_shards(shard_dir).verify()


def test_interrupted_or_mixed_sets(shard_dir, tmp_path):
    n = len(list(shard_dir.glob("*.idx")))
    # The last shard lost: the highest remaining one is not marked last.
    for p in shard_paths(shard_dir, n - 1):
        p.unlink()
    with pytest.raises(FormatError, match=rf"shard-{n - 2:05d}\.idx: field 'flags'.*interrupted"):
        open_shards(shard_dir)
    # A gap in the numbering.
    for p in shard_paths(shard_dir, 1):
        p.unlink()
    with pytest.raises(FormatError, match=r"shard-00001\.idx: missing"):
        open_shards(shard_dir)
    # A .bin without its .idx.
    empty = tmp_path / "orphan"
    write_shards([np.arange(5)], empty, vocab_size=10)
    shard_paths(empty, 1)[0].write_bytes(b"\0\0")
    with pytest.raises(FormatError, match=r"shard-00001\.bin: has no \.idx"):
        open_shards(empty)


def test_no_shards_here(tmp_path):
    with pytest.raises(FormatError, match=r"nowhere: no such folder of shards"):
        open_shards(tmp_path / "nowhere")
    with pytest.raises(FormatError, match=r"no shard-NNNNN\.idx files here"):
        open_shards(tmp_path)


def test_vocabulary_not_fitting_the_dtype(tmp_path):
    with pytest.raises(ParameterError, match=r"70,000 IDs does not fit uint16 \(at most 65,536 "
                       r"IDs\); use dtype='uint32'"):
        write_shards([np.arange(3)], tmp_path, vocab_size=70_000, dtype="uint16")
    with pytest.raises(ParameterError, match=r"document 1: token ID 1,000 is outside the "
                       r"vocabulary \(0 to 999\)"):
        write_shards([np.arange(3), np.array([1, 1000])], tmp_path, vocab_size=1000)
    with pytest.raises(ParameterError, match="unknown token dtype 'int8'"):
        write_shards([np.arange(3)], tmp_path, vocab_size=10, dtype="int8")
    assert leftover_temp_files(tmp_path) == []


# --------------------------------------------------------------------------- sampling


def test_batches_are_valid_windows(shard_dir, docs):
    s = open_shards(shard_dir)
    stream = np.concatenate(docs)
    rng = np.random.default_rng(1)
    x, y = s.sample_batch(rng, 64, 100)
    assert x.shape == y.shape == (64, 100)
    assert x.dtype == y.dtype == np.int64
    assert np.array_equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    for row_x, row_y in zip(x, y):
        # every window is a real stretch of the token stream
        starts = np.flatnonzero(stream[: len(stream) - 100] == row_x[0])
        assert any(np.array_equal(stream[a:a + 100], row_x) and
                   np.array_equal(stream[a + 1:a + 101], row_y) for a in starts)


def test_sampling_crosses_shard_boundaries(shard_dir, docs):
    s = open_shards(shard_dir)
    stream = np.concatenate(docs)
    block = 300
    crossed = 0
    rng = np.random.default_rng(2)
    for _ in range(20):
        state = rng.bit_generator.state
        x, y = s.sample_batch(rng, 16, block)
        rng2 = np.random.default_rng()
        rng2.bit_generator.state = state
        ix = rng2.integers(0, len(stream) - block, size=16)  # the starts sample_batch drew
        for r, a in enumerate(ix):
            assert np.array_equal(x[r], stream[a:a + block])
            assert np.array_equal(y[r], stream[a + 1:a + block + 1])
            crossed += int(np.any((s.starts > a) & (s.starts < a + block + 1)))
    assert crossed > 0


def test_sampling_is_reproducible(shard_dir):
    s = open_shards(shard_dir)
    a = s.sample_batch(np.random.default_rng(5), 8, 32)
    b = s.sample_batch(np.random.default_rng(5), 8, 32)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_single_shard_fast_path_matches(tmp_path, docs):
    write_shards(docs, tmp_path, vocab_size=1000)
    s = open_shards(tmp_path)
    assert len(s.shards) == 1
    x, y = s.sample_batch(np.random.default_rng(3), 10, 50)
    stream = np.concatenate(docs)
    ix = np.random.default_rng(3).integers(0, len(stream) - 50, size=10)
    assert np.array_equal(x, np.stack([stream[a:a + 50] for a in ix]))
    assert np.array_equal(y, np.stack([stream[a + 1:a + 51] for a in ix]))


def test_block_size_larger_than_the_shards(shard_dir):
    s = open_shards(shard_dir)
    with pytest.raises(ParameterError, match=rf"block_size {s.n_tokens:,} needs windows of "
                       rf"{s.n_tokens + 1:,} tokens, but the shards in .* hold {s.n_tokens:,} "
                       r"tokens in all \(largest shard shard-\d+\.bin"):
        s.sample_batch(np.random.default_rng(0), 4, s.n_tokens)
    s.sample_batch(np.random.default_rng(0), 4, s.n_tokens - 1)  # the longest possible window
    with pytest.raises(ParameterError, match="batch_size must be > 0"):
        s.sample_batch(np.random.default_rng(0), 0, 8)


def test_close_unmaps(shard_dir):
    with open_shards(shard_dir) as s:
        s.sample_batch(0, 2, 8)
    assert all(sh.source.array is None for sh in s.shards)


def test_unusable_paths(tmp_path, docs):
    from iokit.errors import StorageError
    from iokit.tokenize import load_tokenizer

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(StorageError, match=r"afile/sub: cannot create the shard folder"):
        write_shards(docs, afile / "sub", vocab_size=1000)
    with pytest.raises(FormatError, match=r"cannot read the vocabulary"):
        load_tokenizer(tmp_path)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "shard-00000.idx").mkdir()
    with pytest.raises(FormatError, match=r"shard-00000\.idx: cannot read the index file"):
        open_shards(tmp_path / "s")


class ReadOnlySource:
    """A token source with only read() and close(), as a block-compressed one would be."""

    def __init__(self, array):
        self.array_ = np.asarray(array)
        self.reads = 0

    def read(self, start, stop):
        self.reads += 1
        return self.array_[start:stop]

    def close(self):
        pass


@pytest.mark.parametrize("max_shard_bytes", [4_000, 10**9])
def test_other_token_sources_plug_in(tmp_path, docs, max_shard_bytes):
    write_shards(docs, tmp_path, vocab_size=1000, max_shard_bytes=max_shard_bytes)
    s = open_shards(tmp_path)
    for shard in s.shards:
        shard.source = ReadOnlySource(shard.source.array)
    stream = np.concatenate(docs)
    x, y = s.sample_batch(np.random.default_rng(4), 40, 120)
    ix = np.random.default_rng(4).integers(0, len(stream) - 120, size=40)
    assert np.array_equal(x, np.stack([stream[a:a + 120] for a in ix]))
    assert np.array_equal(y, np.stack([stream[a + 1:a + 121] for a in ix]))
    assert np.array_equal(s.document(3), docs[3])
    assert sum(sh.source.reads for sh in s.shards) >= 41


def test_an_interrupted_rewrite_never_looks_complete(tmp_path, docs):
    write_shards(docs, tmp_path, vocab_size=1000, max_shard_bytes=2_000)

    def failing():
        yield from docs[:20]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shards(failing(), tmp_path, vocab_size=1000, max_shard_bytes=2_000)
    assert leftover_temp_files(tmp_path) == []
    with pytest.raises(FormatError, match="not marked as the last: the writer was interrupted"):
        open_shards(tmp_path)
