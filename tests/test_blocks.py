"""Block files round-trip with every codec, read any range, and name the block that is bad."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iokit.blocks import BlockReader, BlockTable, BlockWriter, read_table, write_blocks
from iokit.errors import FormatError, ParameterError
from iokit.storage import SimulatedStore, StoragePreset


def text(n: int, seed: int = 0) -> bytes:
    """Compressible, non-repeating bytes: words drawn at random."""
    rng = np.random.default_rng(seed)
    words = [w.encode() for w in "the of and a to in data token shard block read write "
             "compress stream window batch epoch".split()]
    out = bytearray()
    while len(out) < n:
        out += b" ".join(words[i] for i in rng.integers(len(words), size=200)) + b".\n"
    return bytes(out[:n])


DATA = text(300_000)


@pytest.mark.parametrize("codec", ["none", "lzw", "zlib:1", "zlib:9", "zstd:1", "zstd:19",
                                   "zstd-dict:3"])
def test_round_trip_every_codec(tmp_path, codec):
    data = DATA[:60_000] if codec == "lzw" else DATA
    table = write_blocks(tmp_path / "x.blk", data, codec, block_bytes=8192)
    assert table.codec == codec and table.n_blocks == -(-len(data) // 8192)
    with BlockReader(tmp_path / "x.blk") as r:
        assert r.size == len(data) and r.read_all() == data
        assert b"".join(r.iter_blocks()) == data
    if codec != "none":
        assert table.ratio > 2


def test_dictionary_wins_back_ratio_on_small_blocks(tmp_path):
    plain = write_blocks(tmp_path / "a.blk", DATA, "zstd:3", block_bytes=1024)
    trained = write_blocks(tmp_path / "b.blk", DATA, "zstd-dict:3", block_bytes=1024)
    assert trained.ratio > plain.ratio * 1.1 and trained.dictionary
    assert BlockReader(tmp_path / "b.blk").read(5000, 3000) == DATA[5000:8000]


@pytest.mark.parametrize("data", [b"", b"x", DATA[:8192], DATA[:8193]])
def test_edges_empty_one_byte_and_block_boundaries(tmp_path, data):
    write_blocks(tmp_path / "e.blk", data, "zstd:3", block_bytes=8192)
    r = BlockReader(tmp_path / "e.blk")
    assert r.read_all() == data and r.read(0, 10**9) == data and r.read(len(data), 5) == b""


def test_streamed_pieces_give_the_same_file_as_one_piece(tmp_path):
    pieces = [DATA[i:i + 7777] for i in range(0, len(DATA), 7777)]
    write_blocks(tmp_path / "a.blk", pieces, "zstd:3", block_bytes=10_000)
    write_blocks(tmp_path / "b.blk", DATA, "zstd:3", block_bytes=10_000)
    assert (tmp_path / "a.blk").read_bytes() == (tmp_path / "b.blk").read_bytes()


@settings(max_examples=200, deadline=None)
@given(offset=st.integers(0, len(DATA) + 10), nbytes=st.integers(0, 40_000))
def test_random_access_matches_slicing(offset, nbytes, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "random.blk"
    if not path.exists():
        write_blocks(path, DATA, "zstd:3", block_bytes=4096)
    r = BlockReader(path)
    assert r.read(offset, nbytes) == DATA[offset:offset + nbytes]


def test_read_decompresses_only_the_blocks_it_touches(tmp_path):
    write_blocks(tmp_path / "x.blk", DATA, "zstd:3", block_bytes=4096)
    r = BlockReader(tmp_path / "x.blk")
    seen = []
    block = r.block
    r.block = lambda i: seen.append(i) or block(i)
    assert r.read(4096 * 5 + 100, 5000) == DATA[4096 * 5 + 100:4096 * 5 + 5100]
    assert seen == [5, 6]


def test_one_corrupt_block_is_named(tmp_path):
    path = tmp_path / "x.blk"
    table = write_blocks(path, DATA, "zstd:3", block_bytes=4096)
    _, start = read_table(path)
    raw = bytearray(path.read_bytes())
    raw[start + int(table.offsets[7]) + 10] ^= 0xFF
    path.write_bytes(bytes(raw))
    r = BlockReader(path)
    assert r.read(0, 4096 * 7) == DATA[:4096 * 7]  # the good blocks still read
    with pytest.raises(FormatError, match=r"x\.blk: block 7 of \d+ .*checksum mismatch"):
        r.read(4096 * 7, 10)
    with pytest.raises(FormatError, match="block 7"):
        r.read_all()


def test_corrupt_block_without_checksum_check_still_fails_clearly(tmp_path):
    path = tmp_path / "x.blk"
    table = write_blocks(path, DATA, "zstd:3", block_bytes=4096)
    raw = bytearray(path.read_bytes())
    lo = 16 + int(table.offsets[3])
    raw[lo:lo + 40] = b"\x00" * 40
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"block 3 .*zstd:3"):
        BlockReader(path, verify=False).block(3)


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / "x.blk"
    write_blocks(path, DATA, "zstd:3", block_bytes=4096)
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(FormatError, match=r"x\.blk: truncated"):
        BlockReader(path)
    path.write_bytes(b"")
    with pytest.raises(FormatError, match="not an iokit block file"):
        BlockReader(path)


def test_blocks_with_an_external_table_detect_a_truncated_data_file(tmp_path):
    path = tmp_path / "data.bin"
    with open(path, "wb") as f:
        w = BlockWriter(f, "zlib:6", 4096)
        w.write(DATA)
        table = w.close()
    table = BlockTable.from_bytes(table.to_bytes())
    assert BlockReader(path, table).read(100_000, 10) == DATA[100_000:100_010]
    os.truncate(path, int(table.offsets[-3]) + 5)
    r = BlockReader(path, table)
    with pytest.raises(FormatError, match=r"data\.bin: block \d+ of \d+ .*truncated"):
        r.read_all()


def test_damaged_table_and_bad_parameters(tmp_path):
    path = tmp_path / "x.blk"
    table = write_blocks(path, DATA, "zstd:3", block_bytes=4096)
    raw = bytearray(table.to_bytes())
    raw[5] ^= 1
    with pytest.raises(FormatError, match="checksum"):
        BlockTable.from_bytes(bytes(raw), where="x.idx")
    with pytest.raises(ParameterError, match="block_bytes"):
        write_blocks(path, DATA, "zstd:3", block_bytes=0)
    with pytest.raises(ParameterError, match="unknown codec"):
        write_blocks(tmp_path / "y.blk", DATA, "brotli")
    assert not (tmp_path / "y.blk").exists()  # nothing half-written


def test_reads_through_a_simulated_store(tmp_path):
    write_blocks(tmp_path / "x.blk", DATA, "zstd:3", block_bytes=65536)
    fast = StoragePreset("test", 0.0, 1e12, 1e12, "instant")
    r = BlockReader(tmp_path / "x.blk", storage=SimulatedStore(fast))
    assert r.read_all() == DATA


def test_prefetching_stream_gives_the_same_bytes_and_names_a_bad_block(tmp_path):
    path = tmp_path / "x.blk"
    table = write_blocks(path, DATA, "zstd:3", block_bytes=4096)
    assert b"".join(BlockReader(path).iter_blocks(prefetch=True)) == DATA
    raw = bytearray(path.read_bytes())
    raw[16 + int(table.offsets[9]) + 3] ^= 0x55
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="block 9 "):
        list(BlockReader(path).iter_blocks(prefetch=True))


def test_a_reader_checks_each_block_once_and_a_new_reader_again(tmp_path, monkeypatch):
    from iokit import blocks

    path = tmp_path / "x.blk"
    write_blocks(path, DATA, "zstd:3", block_bytes=4096)
    calls = []
    real = blocks.zlib.crc32
    monkeypatch.setattr(blocks.zlib, "crc32", lambda data: calls.append(1) or real(data))
    r = BlockReader(path)
    n = r.table.n_blocks
    calls.clear()  # opening checked the table's own CRC
    for _ in range(3):
        assert r.read_all() == DATA
    assert len(calls) == n  # each block once, however often it is read
    raw = bytearray(path.read_bytes())  # corrupt block 2 in place: a new reader sees it
    raw[16 + int(r.table.offsets[2]) + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"x\.blk: block 2 of \d+ .*checksum mismatch"):
        BlockReader(path).read_all()
    with pytest.raises(FormatError, match=r"block 2 of \d+ .*checksum mismatch"):
        list(BlockReader(path).iter_blocks(prefetch=True))


def test_through_storage_every_read_is_checked(tmp_path, monkeypatch):
    from iokit import blocks
    from iokit.storage import LocalDisk

    path = tmp_path / "x.blk"
    write_blocks(path, DATA, "zstd:3", block_bytes=4096)
    calls = []
    real = blocks.zlib.crc32
    monkeypatch.setattr(blocks.zlib, "crc32", lambda data: calls.append(1) or real(data))
    r = BlockReader(path, storage=LocalDisk())
    calls.clear()  # opening checked the table's own CRC
    assert r.read_all() == DATA and r.read_all() == DATA
    assert len(calls) == 2 * r.table.n_blocks


def test_prefetch_reads_the_same_blocks(tmp_path):
    path = tmp_path / "x.blk"
    write_blocks(path, DATA, "zstd:3", block_bytes=4096)
    with BlockReader(path) as r:
        assert b"".join(r.iter_blocks(prefetch=True)) == DATA == b"".join(r.iter_blocks())
