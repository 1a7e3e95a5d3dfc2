"""Every bad input gets one of iokit's own errors, a message that helps, and no debris.

One table: each case sets up a bad input in ``tmp_path`` and returns the call that should fail.
The test checks the error type, that the message matches the case's patterns (the file, the
line/offset/shard/block where that applies, and what to do), and that the call left no new or
changed file behind (names, sizes and mtimes of everything in ``tmp_path``, taken after the bad
input was made, are the same afterwards).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import helpers
import numpy as np
import pytest
import zstandard

from iokit import atomic, blocks, errors
from iokit.app import cli
from iokit.blocks import BlockReader, write_blocks
from iokit.codecs import Codec, get_codec, lzw_compress
from iokit.corpus import iter_documents, resolve_scale
from iokit.errors import (
    CorpusError,
    FormatError,
    IokitError,
    ParameterError,
    PositionError,
    StorageError,
    WorkerDiedError,
)
from iokit.parallel import parallel_map
from iokit.shards import HEADER, open_shard, open_shards, write_shards
from iokit.storage import get_preset
from iokit.tokenize import WordTokenizer, load_tokenizer

VOCAB = 300


def _docs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCAB, size=int(rng.integers(1, 200))) for _ in range(n)]


def _shards(tmp: Path, codec=None, **kw) -> Path:
    out = tmp / ("zshards" if codec else "shards")
    write_shards(_docs(), out, vocab_size=VOCAB, codec=codec, max_shard_bytes=4096,
                 block_bytes=512 if codec else None, **kw)
    return out


def _patch_header(idx: Path, **fields) -> None:
    """Rewrite named header fields of an ``.idx`` (magic, version, dtype code)."""
    raw = bytearray(idx.read_bytes())
    values = list(HEADER.unpack_from(raw))
    names = {"magic": 0, "version": 1, "dtype": 2}
    for k, v in fields.items():
        values[names[k]] = v
    HEADER.pack_into(raw, 0, *values)
    idx.write_bytes(bytes(raw))


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _jsonl(tmp: Path, content: bytes, name="c.jsonl") -> Path:
    p = tmp / name
    p.write_bytes(content)
    return p


def _read_all_docs(path, **kw):
    return list(iter_documents(path, **kw))


def _fail_open(code):
    def fake_open(path, *a, **k):
        raise OSError(code, "simulated", str(path))
    return fake_open


class _FullDisk:
    """A file object whose writes fail with ENOSPC after a few bytes (a disk filling up)."""

    def __init__(self, f, room=100):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def _full_disk(monkeypatch):
    real = open
    monkeypatch.setattr(atomic, "open", lambda *a, **k: _FullDisk(real(*a, **k)), raising=False)


# Each setup(tmp, monkeypatch) makes the bad input and returns the call that must fail.


def s_missing_corpus(tmp, mp):
    return partial(_read_all_docs, tmp / "nope.jsonl")


def s_folder_for_vocab(tmp, mp):
    (tmp / "vocab.json").mkdir()
    return partial(load_tokenizer, tmp / "vocab.json")


def s_empty_corpus(tmp, mp):
    return partial(_read_all_docs, _jsonl(tmp, b"\n\n"))


def s_malformed_line(tmp, mp):
    return partial(_read_all_docs, _jsonl(tmp, b'{"text": "a"}\n{"text": "b"\n'))


def s_no_text_field(tmp, mp):
    return partial(_read_all_docs, _jsonl(tmp, b'{"text": "a"}\n{"body": "b"}\n'))


def s_text_not_string(tmp, mp):
    return partial(_read_all_docs, _jsonl(tmp, b'{"text": 3}\n'))


def s_not_utf8(tmp, mp):
    return partial(_read_all_docs, _jsonl(tmp, b'{"text": "ok"}\n{"text": "caf\xe9"}\n'))


def s_not_utf8_txt(tmp, mp):
    (tmp / "docs").mkdir()
    (tmp / "docs" / "a.txt").write_bytes(b"fine")
    (tmp / "docs" / "b.txt").write_bytes(b"bad \xff byte")
    return partial(_read_all_docs, tmp / "docs")


def s_huge_line(tmp, mp):
    # 100 MB document in one line whose closing quote and brace are missing: the reader
    # streams up to it and reports the line, rather than crashing or hanging.
    p = tmp / "huge.jsonl"
    with open(p, "wb") as f:
        f.write(b'{"text": "first"}\n{"text": "')
        block = b"word " * 200_000
        for _ in range(100):
            f.write(block)
        f.write(b"\n")
    return partial(_read_all_docs, p)


def s_unknown_scale(tmp, mp):
    return partial(resolve_scale, "enormous")


def s_unknown_preset(tmp, mp):
    return partial(get_preset, "floppy")


def s_unknown_codec(tmp, mp):
    return partial(get_codec, "brotli:5")


def s_bad_codec_level(tmp, mp):
    return partial(get_codec, "zstd:99")


def s_unknown_dtype(tmp, mp):
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB, dtype="int8")


def s_vocab_size_zero(tmp, mp):
    return partial(write_shards, _docs(), tmp / "out", vocab_size=0)


def s_max_shard_bytes_zero(tmp, mp):
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB, max_shard_bytes=0)


def s_block_size_zero(tmp, mp):
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB, codec="zstd:3",
                   block_bytes=0)


def s_block_size_odd(tmp, mp):
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB, codec="zstd:3",
                   block_bytes=1001)


def s_token_out_of_vocab(tmp, mp):
    docs = _docs(3) + [np.array([1, 2, VOCAB + 5])]
    return partial(write_shards, docs, tmp / "out", vocab_size=VOCAB)


def s_workers_zero(tmp, mp):
    return partial(parallel_map, helpers.square, range(4), workers=0)


def s_chunk_size_zero(tmp, mp):
    return partial(parallel_map, helpers.square, range(4), workers=1, chunk_size=0)


def s_batch_size_zero(tmp, mp):
    folder = _shards(tmp)

    def call():
        with open_shards(folder) as s:
            s.sample_batch(0, 0, 8)
    return call


def s_sample_block_size_negative(tmp, mp):
    folder = _shards(tmp)

    def call():
        with open_shards(folder) as s:
            s.sample_batch(0, 4, -1)
    return call


def s_vocab_mismatch(tmp, mp):
    folder = _shards(tmp)
    other = WordTokenizer.train(["a b c d e"], vocab_size=8)
    return partial(open_shards, folder, tokenizer=other)


def s_wrong_magic(tmp, mp):
    folder = _shards(tmp)
    _patch_header(folder / "shard-00001.idx", magic=b"NOTIOKIT")
    return partial(open_shards, folder)


def s_wrong_version(tmp, mp):
    folder = _shards(tmp)
    _patch_header(folder / "shard-00000.idx", version=9)
    return partial(open_shards, folder)


def s_wrong_dtype_code(tmp, mp):
    folder = _shards(tmp)
    _patch_header(folder / "shard-00000.idx", dtype=7)
    return partial(open_shards, folder)


def s_truncated_bin(tmp, mp):
    folder = _shards(tmp)
    _truncate(folder / "shard-00001.bin", 100)
    return partial(open_shards, folder)


def s_truncated_idx(tmp, mp):
    folder = _shards(tmp)
    _truncate(folder / "shard-00000.idx", 40)
    return partial(open_shards, folder)


def s_truncated_idx_offsets(tmp, mp):
    folder = _shards(tmp)
    idx = folder / "shard-00000.idx"
    _truncate(idx, idx.stat().st_size - 8)
    return partial(open_shards, folder)


def s_missing_bin(tmp, mp):
    folder = _shards(tmp)
    (folder / "shard-00001.bin").unlink()
    return partial(open_shards, folder)


def s_missing_last_shard(tmp, mp):
    folder = _shards(tmp)
    last = max(folder.glob("shard-*.idx"))
    last.unlink()
    last.with_suffix(".bin").unlink()
    return partial(open_shards, folder)


def s_no_shards(tmp, mp):
    (tmp / "empty").mkdir()
    return partial(open_shards, tmp / "empty")


def s_changed_bin_verify(tmp, mp):
    folder = _shards(tmp)
    b = folder / "shard-00000.bin"
    raw = bytearray(b.read_bytes())
    raw[10] ^= 0x01
    b.write_bytes(bytes(raw))
    return partial(open_shards, folder, verify=True)


def s_truncated_block(tmp, mp):
    folder = _shards(tmp, codec="zstd:3")
    b = folder / "shard-00000.bin"
    _truncate(b, b.stat().st_size - 5)
    return partial(open_shards, folder)


def s_flipped_bit_in_block(tmp, mp):
    folder = _shards(tmp, codec="zstd:3")
    b = folder / "shard-00000.bin"
    raw = bytearray(b.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    b.write_bytes(bytes(raw))

    def call():
        s = open_shard(b)
        s.read(0, s.n_tokens)
    return call


def s_truncated_vocab(tmp, mp):
    p = WordTokenizer.train(["a b c d e f"], vocab_size=8).save(tmp / "vocab.json")
    _truncate(p, 20)
    return partial(load_tokenizer, p)


def s_vocab_wrong_version(tmp, mp):
    p = WordTokenizer.train(["a b c d e f"], vocab_size=8).save(tmp / "vocab.json")
    data = json.loads(p.read_text())
    data["version"] = 99
    p.write_text(json.dumps(data))
    return partial(load_tokenizer, p)


def s_output_is_a_file(tmp, mp):
    (tmp / "out").write_text("I am a file")
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB)


def s_not_writable(tmp, mp):
    # Tests may run as root, where chmod does not stop writes: simulate EACCES from open.
    (tmp / "out").mkdir()
    mp.setattr(atomic, "open", _fail_open(errno.EACCES), raising=False)
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB)


def s_disk_full(tmp, mp):
    _full_disk(mp)
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB)


def s_disk_full_compressed(tmp, mp):
    (tmp / "out").mkdir()
    _full_disk(mp)
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB, codec="zstd:3",
                   block_bytes=512)


def s_disk_full_vocab(tmp, mp):
    tok = WordTokenizer.train(["a b c d e f"] * 50, vocab_size=8)
    mp.setattr(atomic, "open", lambda *a, **k: _FullDisk(open(*a, **k), room=5),
               raising=False)
    return partial(tok.save, tmp / "vocab.json")


def s_worker_killed(tmp, mp):
    return partial(parallel_map, partial(helpers.die_on, 5), range(12), workers=2,
                   kind="processes", chunk_size=2)


def s_malformed_line_pretokenize(tmp, mp):
    from iokit.shards import pretokenize

    corpus = _jsonl(tmp, b'{"text": "a b"}\n' * 20 + b'{"text": oops}\n')
    tok = WordTokenizer.train(["a b c"], vocab_size=8)
    return partial(pretokenize, corpus, tok, tmp / "out")


# Class: a silent wrong result (identity of inputs is checked, never assumed).


def _own_data(tmp, mp):
    (tmp / "data").mkdir(exist_ok=True)
    mp.setenv("IOKIT_DATA", str(tmp / "data"))


def _texts(tmp, files, name="texts"):
    folder = tmp / name
    folder.mkdir()
    for n, raw in files.items():
        (folder / n).write_bytes(raw)
    return folder


def s_corpus_changed_while_converting(tmp, mp):
    import iokit.corpus as corpus

    _own_data(tmp, mp)
    folder = _texts(tmp, {"a.txt": b"one", "b.txt": b"two"})
    real = corpus._identity
    calls = []

    def moving(*args):
        calls.append(1)
        identity = real(*args)
        return identity if len(calls) == 1 else {**identity, "files": identity["files"][:1]}

    mp.setattr(corpus, "_identity", moving)
    return partial(corpus.open_corpus, folder)


def s_predict_loop_on_folder_without_text(tmp, mp):
    from iokit.lab.loops import predict_loop

    _own_data(tmp, mp)
    return partial(predict_loop, _texts(tmp, {"notes.md": b"# not a document"}, "docs"))


def s_worker_reads_a_folder(tmp, mp):
    return partial(tasks_read_texts, _texts(tmp, {"a.txt": b"text"}), (0, 10))


def s_sample_of_empty_text_files(tmp, mp):
    from iokit.lab.scaling import corpus_sample

    _own_data(tmp, mp)
    return partial(corpus_sample, _texts(tmp, {"a.txt": b"", "b.txt": b"\r\n  "}))


def s_spans_of_a_missing_corpus(tmp, mp):
    from iokit.tasks import document_spans

    return partial(document_spans, tmp / "gone.jsonl")


def s_naive_loop_on_a_folder_of_binary_files(tmp, mp):
    from iokit.lab.loops import naive_loop

    _own_data(tmp, mp)
    folder = _texts(tmp, {"a.txt": b"fine text", "b.txt": b"\x89PNG\r\n\x1a\n\x00\x00"})
    return partial(naive_loop, folder, tmp / "out.txt")


def tasks_read_texts(*args):
    from iokit.tasks import read_texts

    return read_texts(*args)


# Class: input accepted at the door and failing deep inside (every record checked, one place).


def _line_41(tmp, record: bytes, blank_lines: bool = True) -> Path:
    good = [json.dumps({"text": f"document {i} of the corpus."}).encode() for i in range(40)]
    lines = good[:10] + ([b""] if blank_lines else []) + good[10:] + [record] + good[:2]
    return _jsonl(tmp, b"\n".join(lines) + b"\n")


def s_text_int_on_line_41_in_the_naive_loop(tmp, mp):
    from iokit.lab.loops import naive_loop

    corpus = _jsonl(tmp, b"\n".join([json.dumps({"text": f"d {i}"}).encode() for i in range(40)]
                                     + [b'{"text": 3}']) + b"\n")
    return partial(naive_loop, corpus, tmp / "out.txt")


def s_text_null_on_line_41_in_a_worker(tmp, mp):
    from iokit.preprocess import parallel_pretokenize

    corpus = _line_41(tmp, b'{"text": null}', blank_lines=False)
    tok = WordTokenizer.train(["document of the corpus"], vocab_size=16)
    return partial(parallel_pretokenize, corpus, tok, tmp / "out", workers=2, kind="threads",
                   chunk_size=4)


def s_lone_surrogate_before_training(tmp, mp):
    corpus = _line_41(tmp, b'{"text": "broken \\ud800 escape"}')
    return lambda: WordTokenizer.train(d.text for d in iter_documents(corpus))


def s_empty_text_field(tmp, mp):
    return partial(_read_all_docs, _line_41(tmp, b'{"id": 9, "text": ""}'))


def s_line_not_an_object(tmp, mp):
    return partial(_read_all_docs, _line_41(tmp, b'["a", "list"]'))


def s_deeply_nested_line(tmp, mp):
    return partial(_read_all_docs, _line_41(tmp, b"[" * 100_000 + b"]" * 100_000))


def s_utf16_text_file(tmp, mp):
    _own_data(tmp, mp)
    from iokit.corpus import open_corpus

    return partial(open_corpus, _texts(tmp, {"w.txt": "hello".encode("utf-16")}))


def s_bad_utf8_in_a_single_text_file(tmp, mp):
    from iokit.shards import pretokenize

    p = tmp / "book.txt"
    p.write_bytes(b"Chapter one. Caf\xe9 au lait.")
    tok = WordTokenizer.train(["chapter one"], vocab_size=8)
    return partial(pretokenize, p, tok, tmp / "out")


def s_text_field_in_a_worker_byte_range(tmp, mp):
    from iokit.engines import pretokenize_pieces
    from iokit.split import plan_pieces

    corpus = _line_41(tmp, b'{"text": {"nested": "object"}}', blank_lines=False)
    tok = WordTokenizer.train(["document of the corpus"], vocab_size=16)
    return lambda: pretokenize_pieces(plan_pieces(corpus, 3), tok, tmp / "out", engine="serial",
                                      progress=False)



def s_gzipped_jsonl(tmp, mp):
    import gzip

    return partial(_read_all_docs, _jsonl(tmp, gzip.compress(b'{"text": "a"}\n'), "c.jsonl.gz"))


def s_plain_text_given_as_jsonl(tmp, mp):
    return partial(_read_all_docs, _jsonl(tmp, b"Chapter one.\nIt was a dark night.\n",
                                          "book.md"))


# ---- reliability: memory the input decides, processes, concurrent runs, remote engines,
# places the kit cannot write, out-of-range reads (classes 3 to 8 of the reliability review)


class _Bomb(Codec):
    """A "codec" whose compress returns a fixed block: a tiny CRC-valid block that inflates
    far beyond the raw size the table declares."""

    def __init__(self, name, packed):
        self.name, self.packed = name, packed

    def compress(self, data):
        return self.packed


def _bomb_file(tmp, name, packed) -> Path:
    path = tmp / "bomb.blk"
    write_blocks(path, b"x" * 4096, _Bomb(name, packed), 4096)
    return path


def _read_block0(path):
    BlockReader(path).block(0)


def _zeros_zlib(n):
    c = zlib.compressobj(9)
    return b"".join([*(c.compress(bytes(1 << 20)) for _ in range(n >> 20)), c.flush()])


def s_zlib_bomb(tmp, mp):
    return partial(_read_block0, _bomb_file(tmp, "zlib:6", _zeros_zlib(64 << 20)))


def s_zstd_bomb_declared(tmp, mp):
    packed = zstandard.ZstdCompressor().compress(bytes(64 << 20))
    return partial(_read_block0, _bomb_file(tmp, "zstd:3", packed))


def s_zstd_bomb_undeclared(tmp, mp):
    packed = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(64 << 20))
    return partial(_read_block0, _bomb_file(tmp, "zstd:3", packed))


def s_lzw_bomb(tmp, mp):
    return partial(_read_block0, _bomb_file(tmp, "lzw", lzw_compress(bytes(1 << 20))))


def s_bomb_in_a_shard(tmp, mp):
    folder = tmp / "zshards"
    write_shards([np.zeros(2048, dtype=np.int64)], folder, vocab_size=VOCAB,
                 codec=_Bomb("zstd:3", zstandard.ZstdCompressor().compress(bytes(32 << 20))),
                 block_bytes=512)

    def call():
        with open_shards(folder) as s:
            s.read(0, s.n_tokens)
    return call


def s_huge_declared_block_size(tmp, mp):
    path = tmp / "b.blk"
    write_blocks(path, b"abc" * 1000, "zstd:3", 1024)
    raw = bytearray(path.read_bytes())
    table_at, table_len, _ = blocks.TRAILER.unpack_from(raw, len(raw) - blocks.TRAILER.size)
    table = raw[table_at:table_at + table_len - 4]
    n = struct.unpack_from("<H", table)[0]
    at = 2 + n + 4  # after the codec name and the (empty) dictionary length
    struct.pack_into("<QQQ", table, at, 2**40, 2**40, 1)
    del table[at + 24 + 8 * 2:]  # one block: two offsets and one checksum
    table += struct.pack("<qqI", 0, 10, 0)[16:]  # keep the table's shape loosely valid
    body = bytes(table)
    raw[table_at:] = body + struct.pack("<I", zlib.crc32(body))
    raw += blocks.TRAILER.pack(table_at, len(body) + 4, blocks.END_MAGIC)
    path.write_bytes(bytes(raw))
    return partial(BlockReader, path)


def s_sample_batch_too_big(tmp, mp):
    folder = _shards(tmp)

    def call():
        with open_shards(folder) as s:
            s.sample_batch(0, 2**40, 8)
    return call


def s_chunk_size_too_big(tmp, mp):
    from iokit.lab.loops import chunked_loop

    corpus = _jsonl(tmp, b'{"text": "a b"}\n')
    return partial(chunked_loop, corpus, tmp / "out.txt", chunk_size=2**40)


def s_block_bytes_too_big(tmp, mp):
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB, codec="zstd:3",
                   block_bytes=2**40)


def s_machine_too_small(tmp, mp):
    # a modest size on a machine (or under a ulimit) with little memory left
    mp.setattr(errors, "available_memory", lambda: 10 << 20)
    folder = _shards(tmp)

    def call():
        with open_shards(folder) as s:
            s.sample_batch(0, 4096, 512)
    return call


def _cli(*argv):
    args = cli.build_parser().parse_args(list(argv))
    return partial(args.func, args)


def s_cli_workers_zero(tmp, mp):
    return _cli("shards", "--corpus", str(_jsonl(tmp, b'{"text": "a b"}\n' * 10)),
                "--workers", "0", "--out", str(tmp / "out"))


def s_cli_workers_negative(tmp, mp):
    return _cli("shards", "--corpus", str(_jsonl(tmp, b'{"text": "a b"}\n' * 10)),
                "--workers", "-3", "--out", str(tmp / "out"))


def s_pool_workers_fraction(tmp, mp):
    return partial(parallel_map, helpers.square, range(4), workers=2.5, kind="processes")


def s_engine_workers_zero(tmp, mp):
    from iokit.engines import pretokenize_pieces
    from iokit.split import plan_pieces

    corpus = _jsonl(tmp, b'{"text": "a b"}\n' * 10)
    tok = WordTokenizer.train(["a b"], vocab_size=8)
    return partial(pretokenize_pieces, plan_pieces(corpus, 2), tok, tmp / "out",
                   engine="threads", workers=0)


_HELD = []  # lock files held open by a case (a run "in another process")


def _hold_lock(folder: Path, pid: int = 424242) -> None:
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / atomic.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, str(pid).encode())
    _HELD.append(fd)


def s_locked_write_shards(tmp, mp):
    _hold_lock(tmp / "out")
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB)


def s_locked_engine_run(tmp, mp):
    from iokit.engines import pretokenize_pieces
    from iokit.split import plan_pieces

    corpus = _jsonl(tmp, b'{"text": "a b"}\n' * 10)
    tok = WordTokenizer.train(["a b"], vocab_size=8)
    _hold_lock(tmp / "out")
    return partial(pretokenize_pieces, plan_pieces(corpus, 2), tok, tmp / "out",
                   engine="serial")


def s_locked_cli_shards(tmp, mp):
    corpus = _jsonl(tmp, b'{"text": "a b"}\n' * 10)
    _hold_lock(tmp / "out")
    return _cli("shards", "--corpus", str(corpus), "--engine", "serial", "--out",
                str(tmp / "out"))


def s_locked_parallel_pretokenize(tmp, mp):
    from iokit.preprocess import parallel_pretokenize

    corpus = _jsonl(tmp, b'{"text": "a b"}\n' * 10)
    tok = WordTokenizer.train(["a b"], vocab_size=8)
    _hold_lock(tmp / "out")
    return partial(parallel_pretokenize, corpus, tok, tmp / "out", workers=1, kind="threads")


def _scheduler(address, timeout_s=2.0):
    from iokit.engines import connect_scheduler

    pytest.importorskip("distributed")
    return connect_scheduler(address, timeout_s)


def s_scheduler_not_a_url(tmp, mp):
    return partial(_scheduler, "notaurl")


def s_scheduler_bad_port(tmp, mp):
    return partial(_scheduler, "tcp://127.0.0.1:99999")


def s_scheduler_wrong_scheme(tmp, mp):
    return partial(_scheduler, "http://127.0.0.1:8786")


def s_scheduler_nothing_listening(tmp, mp):
    return partial(_scheduler, "tcp://127.0.0.1:9")


def s_scheduler_http_server(tmp, mp):
    # something that is not a scheduler answers on the port, and keeps the connection open
    server = socket.create_server(("127.0.0.1", 0))
    conns = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>")
            conns.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    return partial(_scheduler, f"tcp://127.0.0.1:{server.getsockname()[1]}", 1.0)


def s_cli_scheduler_not_a_url(tmp, mp):
    pytest.importorskip("distributed")
    return _cli("shards", "--corpus", str(_jsonl(tmp, b'{"text": "a b"}\n' * 10)), "--engine",
                "dask", "--scheduler", "notaurl", "--out", str(tmp / "out"))


def _a_file(tmp) -> Path:
    f = tmp / "afile"
    f.write_text("a file, not a folder")
    return f


def s_out_under_a_file(tmp, mp):
    return partial(write_shards, _docs(), _a_file(tmp) / "out", vocab_size=VOCAB)


def s_out_read_only(tmp, mp):
    (tmp / "out").mkdir()

    def read_only(folder):
        raise OSError(errno.EROFS, "Read-only file system")
    mp.setattr(atomic, "_probe", read_only)
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB)


def s_out_refuses_files(tmp, mp):
    # a folder that exists but where files cannot be made (as /proc, even for root)
    (tmp / "out").mkdir()

    def refuses(folder):
        raise OSError(errno.ENOENT, "No such file or directory")
    mp.setattr(atomic, "_probe", refuses)
    return partial(write_shards, _docs(), tmp / "out", vocab_size=VOCAB)


def s_cli_out_under_a_file(tmp, mp):
    corpus = _jsonl(tmp, b'{"text": "a b"}\n' * 10)
    return _cli("shards", "--corpus", str(corpus), "--out", str(_a_file(tmp) / "out"))


def s_cli_data_folder_under_a_file(tmp, mp):
    mp.setenv("IOKIT_DATA", str(_a_file(tmp) / "data"))
    return _cli("data", "--scale", "tiny")


def s_cli_report_read_only(tmp, mp):
    (tmp / "reports").mkdir()

    def read_only(folder):
        raise OSError(errno.EROFS, "Read-only file system")
    mp.setattr(atomic, "_probe", read_only)
    return _cli("report", "--corpus", str(tmp / "missing.jsonl"), "--out", str(tmp / "reports"))


def s_engine_out_under_a_file(tmp, mp):
    from iokit.engines import pretokenize_pieces
    from iokit.split import plan_pieces

    corpus = _jsonl(tmp, b'{"text": "a b"}\n' * 10)
    tok = WordTokenizer.train(["a b"], vocab_size=8)
    return partial(pretokenize_pieces, plan_pieces(corpus, 2), tok, _a_file(tmp) / "out",
                   engine="serial")


def _read_range(folder, start, stop):
    with open_shards(folder) as s:
        s.read(start, stop)


def s_read_negative_raw(tmp, mp):
    return partial(_read_range, _shards(tmp), -5, 100)


def s_read_negative_compressed(tmp, mp):
    return partial(_read_range, _shards(tmp, codec="zstd:3"), -5, 100)


def s_read_past_end_raw(tmp, mp):
    folder = _shards(tmp)
    with open_shards(folder) as s:
        n = s.n_tokens
    return partial(_read_range, folder, n - 5, n + 100)


def s_read_past_end_compressed(tmp, mp):
    folder = _shards(tmp, codec="zstd:3")
    with open_shards(folder) as s:
        n = s.n_tokens
    return partial(_read_range, folder, n + 10, n + 20)


def s_read_backwards(tmp, mp):
    return partial(_read_range, _shards(tmp, codec="zstd:3"), 50, 10)


def _document(folder, i, one_shard=False):
    if one_shard:
        s = open_shard(folder / "shard-00000.bin")
        return s.document(i)
    with open_shards(folder) as s:
        return s.document(i)


def s_document_past_the_end(tmp, mp):
    return partial(_document, _shards(tmp), 10_000)


def s_document_too_negative_compressed(tmp, mp):
    return partial(_document, _shards(tmp, codec="zstd:3"), -10_000)


def s_one_shard_document_past_the_end(tmp, mp):
    return partial(_document, _shards(tmp), 10_000, one_shard=True)


def s_one_shard_document_too_negative(tmp, mp):
    # once wrapped around silently to a read from the end to the start
    return partial(_document, _shards(tmp), -10_000, one_shard=True)


def s_document_not_a_number(tmp, mp):
    return partial(_document, _shards(tmp), 1.5)


def s_read_one_shard_out_of_range(tmp, mp):
    folder = _shards(tmp)

    def call():
        s = open_shard(folder / "shard-00000.bin")
        s.read(0, s.n_tokens + 1)
    return call


def s_read_not_a_number(tmp, mp):
    return partial(_read_range, _shards(tmp), 1.5, 10)



@dataclass
class Case:
    name: str
    setup: Callable
    error: type
    patterns: tuple[str, ...]  # {tmp} is replaced by the escaped temporary folder


CASES = [
    Case("missing corpus", s_missing_corpus, CorpusError, (r"{tmp}/nope\.jsonl", r"no such")),
    Case("folder where a file is expected", s_folder_for_vocab, FormatError,
         (r"{tmp}/vocab\.json", r"(folder|directory)")),
    Case("empty corpus", s_empty_corpus, CorpusError, (r"{tmp}/c\.jsonl", r"empty", r"give")),
    Case("malformed JSONL line", s_malformed_line, CorpusError,
         (r"{tmp}/c\.jsonl", r"line 2", r"fix or remove")),
    Case("JSONL line without the text field", s_no_text_field, CorpusError,
         (r"{tmp}/c\.jsonl", r"line 2", r"'text'", r"text_field")),
    Case("text field not a string", s_text_not_string, CorpusError,
         (r"{tmp}/c\.jsonl", r"line 1", r"not a string")),
    Case("non-UTF-8 bytes in JSONL", s_not_utf8, CorpusError,
         (r"{tmp}/c\.jsonl", r"line 2", r"(byte|offset) \d+", r"UTF-8")),
    Case("non-UTF-8 bytes in a .txt", s_not_utf8_txt, CorpusError,
         (r"{tmp}/docs/b\.txt", r"UTF-8")),
    Case("100 MB document in one unterminated line", s_huge_line, CorpusError,
         (r"{tmp}/huge\.jsonl", r"line 2", r"fix or remove")),
    Case("unknown scale", s_unknown_scale, ParameterError, (r"enormous", r"choose one of")),
    Case("unknown storage preset", s_unknown_preset, ParameterError,
         (r"floppy", r"choose one of")),
    Case("unknown codec", s_unknown_codec, ParameterError, (r"brotli", r"choose one of")),
    Case("codec level out of range", s_bad_codec_level, ParameterError, (r"level", r"99")),
    Case("unknown token dtype", s_unknown_dtype, ParameterError, (r"int8", r"uint16")),
    Case("vocab_size <= 0", s_vocab_size_zero, ParameterError, (r"vocab_size", r"> 0")),
    Case("max_shard_bytes <= 0", s_max_shard_bytes_zero, ParameterError,
         (r"max_shard_bytes", r"> 0")),
    Case("block size <= 0", s_block_size_zero, ParameterError, (r"block_bytes", r"> 0")),
    Case("block size not a multiple of the token size", s_block_size_odd, ParameterError,
         (r"1,?001", r"multiple")),
    Case("token ID outside the vocabulary", s_token_out_of_vocab, ParameterError,
         (r"document 3", r"305")),
    Case("worker count <= 0", s_workers_zero, ParameterError, (r"workers", r"> 0")),
    Case("chunk size <= 0", s_chunk_size_zero, ParameterError, (r"chunk.size", r"> 0")),
    Case("batch size <= 0", s_batch_size_zero, ParameterError, (r"batch_size", r"> 0")),
    Case("block size < 0 when sampling", s_sample_block_size_negative, ParameterError,
         (r"block_size", r"> 0")),
    Case("vocabulary does not match the shards", s_vocab_mismatch, FormatError,
         (r"{tmp}/shards", r"(vocabulary|fingerprint)")),
    Case("wrong magic", s_wrong_magic, FormatError,
         (r"{tmp}/shards/shard-00001\.idx", r"magic", r"NOTIOKIT")),
    Case("wrong version", s_wrong_version, FormatError,
         (r"{tmp}/shards/shard-00000\.idx", r"version", r"9")),
    Case("wrong dtype code", s_wrong_dtype_code, FormatError,
         (r"{tmp}/shards/shard-00000\.idx", r"dtype code", r"7")),
    Case("truncated .bin", s_truncated_bin, FormatError,
         (r"{tmp}/shards/shard-00001\.(bin|idx)", r"(truncated|size)")),
    Case("truncated .idx header", s_truncated_idx, FormatError,
         (r"{tmp}/shards/shard-00000\.idx", r"header", r"40 bytes")),
    Case("truncated .idx offsets", s_truncated_idx_offsets, FormatError,
         (r"{tmp}/shards/shard-00000\.idx", r"(offsets|document count)")),
    Case("missing .bin beside its .idx", s_missing_bin, FormatError,
         (r"{tmp}/shards/shard-00001\.bin", r"missing")),
    Case("set without its last shard", s_missing_last_shard, FormatError,
         (r"{tmp}/shards/shard-\d{{5}}\.idx", r"last")),
    Case("folder without shards", s_no_shards, FormatError,
         (r"{tmp}/empty", r"write the shards")),
    Case("changed .bin with verify=True", s_changed_bin_verify, FormatError,
         (r"{tmp}/shards/shard-00000\.(bin|idx)", r"checksum")),
    Case("truncated compressed block", s_truncated_block, FormatError,
         (r"{tmp}/zshards/shard-00000\.(bin|idx)", r"(truncated|bin size|block)")),
    Case("one flipped bit in a block", s_flipped_bit_in_block,
         FormatError, (r"{tmp}/zshards/shard-00000\.bin", r"block \d+", r"checksum")),
    Case("truncated vocabulary", s_truncated_vocab, FormatError,
         (r"{tmp}/vocab\.json", r"truncated", r"rebuild")),
    Case("vocabulary of another version", s_vocab_wrong_version, FormatError,
         (r"{tmp}/vocab\.json", r"version", r"99")),
    Case("output folder is a file", s_output_is_a_file, StorageError,
         (r"{tmp}/out", r"cannot")),
    Case("output folder not writable", s_not_writable, StorageError,
         (r"{tmp}/out", r"not writable", r"choose a folder")),
    Case("full disk while writing shards", s_disk_full, StorageError,
         (r"{tmp}/out/shard-00000\.(bin|idx)", r"disk is full", r"free some space")),
    Case("full disk while writing compressed shards", s_disk_full_compressed, StorageError,
         (r"{tmp}/out/shard-00000\.(bin|idx)", r"disk is full")),
    Case("full disk while saving a vocabulary", s_disk_full_vocab, StorageError,
         (r"{tmp}/vocab\.json", r"disk is full")),
    Case("malformed line met while pretokenizing", s_malformed_line_pretokenize, CorpusError,
         (r"{tmp}/c\.jsonl", r"line 21", r"fix or remove")),
    Case("worker process killed with SIGKILL", s_worker_killed, WorkerDiedError,
         (r"SIGKILL",)),
    # a silent wrong result (class 1): identities checked, never assumed
    Case("corpus changed while it was converted", s_corpus_changed_while_converting, CorpusError,
         (r"{tmp}/texts", r"changed while", r"run again")),
    Case("predict_loop on a folder without text files", s_predict_loop_on_folder_without_text,
         CorpusError, (r"{tmp}/docs", r"no \.txt files", r"put one document")),
    Case("a worker given a folder", s_worker_reads_a_folder, CorpusError,
         (r"{tmp}/texts", r"cannot read", r"open_corpus")),
    Case("a sample of text files that are all empty", s_sample_of_empty_text_files, CorpusError,
         (r"{tmp}/texts", r"empty", r"give a file with text")),
    Case("byte ranges of a missing corpus", s_spans_of_a_missing_corpus, CorpusError,
         (r"{tmp}/gone\.jsonl", r"cannot read")),
    Case("naive loop on a folder with a binary .txt", s_naive_loop_on_a_folder_of_binary_files,
         CorpusError, (r"{tmp}/texts/b\.txt", r"UTF-8", r"byte offset 0")),
    # accepted at the door, failing deep inside (class 2): every record checked in one place
    Case('"text": 3 on line 41, in the naive loop', s_text_int_on_line_41_in_the_naive_loop,
         CorpusError, (r"{tmp}/c\.jsonl", r"line 41", r"is int, not a string")),
    Case('"text": null on line 41, in a worker', s_text_null_on_line_41_in_a_worker,
         CorpusError, (r"{tmp}/c\.jsonl", r"byte offset \d+ \(line 41\)", r"is null")),
    Case("lone surrogate escape, before training", s_lone_surrogate_before_training, CorpusError,
         (r"{tmp}/c\.jsonl", r"line 42", r"lone surrogate", r"fix the escape")),
    Case("empty text field", s_empty_text_field, CorpusError,
         (r"{tmp}/c\.jsonl", r"line 42", r"'text' is empty", r"remove")),
    Case("a line that is not an object", s_line_not_an_object, CorpusError,
         (r"{tmp}/c\.jsonl", r"line 42", r"JSON list, not an object")),
    Case("JSON nested 100,000 deep", s_deeply_nested_line, CorpusError,
         (r"{tmp}/c\.jsonl", r"line 42", r"nested too deeply")),
    Case("a UTF-16 text file", s_utf16_text_file, CorpusError,
         (r"{tmp}/texts/w\.txt", r"UTF-16", r"UTF-8")),
    Case("bad UTF-8 in a single .txt", s_bad_utf8_in_a_single_text_file, CorpusError,
         (r"{tmp}/book\.txt", r"byte offset 16", r"UTF-8")),
    Case("an object as the text, in a piece of the file", s_text_field_in_a_worker_byte_range,
         CorpusError, (r"{tmp}/c\.jsonl", r"line 41", r"is object, not a string")),
    Case("a gzip-compressed JSONL file", s_gzipped_jsonl, CorpusError,
         (r"{tmp}/c\.jsonl\.gz", r"line 1", r"gzip", r"decompress it first")),
    Case("plain text given as JSONL", s_plain_text_given_as_jsonl, CorpusError,
         (r"{tmp}/book\.md", r"line 1, column 1", r"\.txt file")),


    Case("zlib block that inflates past its declared size", s_zlib_bomb, FormatError,
         (r"{tmp}/bomb\.blk", r"block 0", r"more than the 4,096 bytes")),
    Case("zstd block declaring more than its raw size", s_zstd_bomb_declared, FormatError,
         (r"{tmp}/bomb\.blk", r"block 0", r"more than the 4,096 bytes")),
    Case("zstd block without a declared size that inflates", s_zstd_bomb_undeclared,
         FormatError, (r"{tmp}/bomb\.blk", r"block 0", r"more than the 4,096 bytes")),
    Case("lzw block that inflates past its declared size", s_lzw_bomb, FormatError,
         (r"{tmp}/bomb\.blk", r"block 0", r"more than")),
    Case("decompression bomb inside a compressed shard", s_bomb_in_a_shard, FormatError,
         (r"{tmp}/zshards/shard-00000\.bin", r"block 0", r"more than the 512 bytes")),
    Case("block table declaring a 1 TB block", s_huge_declared_block_size, FormatError,
         (r"{tmp}/b\.blk", r"block size", r"1,099,511,627,776")),
    Case("sample_batch(batch_size=2**40)", s_sample_batch_too_big, ParameterError,
         (r"batch_size", r"1,099,511,627,776", r"memory")),
    Case("chunked_loop(chunk_size=2**40)", s_chunk_size_too_big, ParameterError,
         (r"chunk size", r"memory")),
    Case("block_bytes of 1 TB", s_block_bytes_too_big, ParameterError,
         (r"block_bytes", r"at most")),
    Case("a batch larger than the memory left", s_machine_too_small, ParameterError,
         (r"batch_size 4,096", r"memory", r"10\.5 MB")),
    Case("--workers 0 on the command line", s_cli_workers_zero, ParameterError,
         (r"--workers", r"> 0")),
    Case("--workers -3 on the command line", s_cli_workers_negative, ParameterError,
         (r"--workers", r"> 0")),
    Case("a fractional worker count", s_pool_workers_fraction, ParameterError,
         (r"workers", r"whole number")),
    Case("workers=0 for an engine", s_engine_workers_zero, ParameterError,
         (r"workers", r"> 0")),
    Case("write_shards into a folder another run holds", s_locked_write_shards, StorageError,
         (r"{tmp}/out", r"process 424242", r"wait|choose another")),
    Case("an engine run into a folder another run holds", s_locked_engine_run, StorageError,
         (r"{tmp}/out", r"process 424242")),
    Case("iokit shards into a folder another run holds", s_locked_cli_shards, StorageError,
         (r"{tmp}/out", r"process 424242")),
    Case("parallel pretokenize into a folder another run holds",
         s_locked_parallel_pretokenize, StorageError, (r"{tmp}/out", r"process 424242")),
    Case("scheduler address that is not a URL", s_scheduler_not_a_url, ParameterError,
         (r"notaurl", r"tcp://host:8786")),
    Case("scheduler port out of range", s_scheduler_bad_port, ParameterError,
         (r"99999", r"tcp://host:8786")),
    Case("scheduler address with an unknown scheme", s_scheduler_wrong_scheme, ParameterError,
         (r"http://", r"tcp://host:8786")),
    Case("scheduler port with nothing listening", s_scheduler_nothing_listening, StorageError,
         (r"tcp://127\.0\.0\.1:9", r"cannot reach", r"dask scheduler")),
    Case("scheduler port where an HTTP server answers", s_scheduler_http_server,
         StorageError, (r"tcp://127\.0\.0\.1:\d+", r"no dask scheduler answered")),
    Case("--scheduler notaurl on the command line", s_cli_scheduler_not_a_url, ParameterError,
         (r"notaurl",)),
    Case("output folder under a file", s_out_under_a_file, StorageError,
         (r"{tmp}/afile/out", r"a file stands where a folder is needed")),
    Case("output folder on a read-only file system", s_out_read_only, StorageError,
         (r"{tmp}/out", r"read-only")),
    Case("output folder that refuses files", s_out_refuses_files, StorageError,
         (r"{tmp}/out", r"not writable")),
    Case("iokit shards --out under a file", s_cli_out_under_a_file, StorageError,
         (r"{tmp}/afile/out", r"shard folder")),
    Case("IOKIT_DATA under a file", s_cli_data_folder_under_a_file, StorageError,
         (r"{tmp}/afile/data", r"data folder")),
    Case("iokit report --out read-only", s_cli_report_read_only, StorageError,
         (r"{tmp}/reports", r"read-only")),
    Case("engine output folder under a file", s_engine_out_under_a_file, StorageError,
         (r"{tmp}/afile/out", r"shard folder")),
    Case("read(-5, 100) from raw shards", s_read_negative_raw, ParameterError,
         (r"{tmp}/shards", r"-5:100", r"0 <= start")),
    Case("read(-5, 100) from compressed shards", s_read_negative_compressed, ParameterError,
         (r"{tmp}/zshards", r"-5:100", r"0 <= start")),
    Case("read past the end of raw shards", s_read_past_end_raw, ParameterError,
         (r"{tmp}/shards", r"holds [\d,]+ tokens")),
    Case("read past the end of compressed shards", s_read_past_end_compressed,
         ParameterError, (r"{tmp}/zshards", r"holds [\d,]+ tokens")),
    Case("read with stop before start", s_read_backwards, ParameterError,
         (r"{tmp}/zshards", r"50:10")),
    Case("one shard read out of range", s_read_one_shard_out_of_range, ParameterError,
         (r"{tmp}/shards/shard-00000\.bin", r"cannot read tokens")),
    Case("read with a fractional position", s_read_not_a_number, ParameterError,
         (r"{tmp}/shards", r"whole numbers")),
    Case("document past the end of a shard set", s_document_past_the_end, PositionError,
         (r"{tmp}/shards", r"document 10000 out of range", r"give 0 to")),
    Case("document before the start, compressed", s_document_too_negative_compressed,
         PositionError, (r"{tmp}/zshards", r"document -10000 out of range")),
    Case("one shard's document past its end", s_one_shard_document_past_the_end, PositionError,
         (r"{tmp}/shards/shard-00000\.bin", r"document 10000 out of range")),
    Case("one shard's document before its start", s_one_shard_document_too_negative,
         PositionError, (r"{tmp}/shards/shard-00000\.bin", r"document -10000 out of range")),
    Case("document number that is not whole", s_document_not_a_number, PositionError,
         (r"{tmp}/shards", r"whole number")),
]


def _snapshot(folder: Path) -> dict:
    """Names, sizes and mtimes of the files (folders: names only; a failed write in a folder
    changes its mtime even when nothing is left behind)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            if p.is_file() else "folder" for p in folder.rglob("*")}


def test_the_table_has_enough_distinct_rows():
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch):
    call = case.setup(tmp_path, monkeypatch)
    before = _snapshot(tmp_path)
    with pytest.raises(case.error) as info:
        call()
    assert isinstance(info.value, IokitError)
    message = str(info.value)
    for pattern in case.patterns:
        regex = pattern.format(tmp=re.escape(str(tmp_path)))
        assert re.search(regex, message), f"{regex!r} not in {message!r}"
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------- the command line


def test_cli_iokit_error_is_one_line_on_stderr_with_exit_code_2(tmp_path, capsys):
    bad = _jsonl(tmp_path, b'{"text": "a"}\nnot json\n')
    before = _snapshot(tmp_path)
    assert cli.main(["tour", "--corpus", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iokit: error: ")
    assert str(bad) in err and "line 2" in err
    assert _snapshot(tmp_path) == before


def test_cli_unknown_preset_is_one_line(tmp_path, capsys):
    assert cli.main(["tour", "--storage", "floppy", "--corpus", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "floppy" in err


def test_cli_in_a_subprocess_exits_2_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "iokit", "tour", "--corpus",
                        str(tmp_path / "missing.jsonl")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "missing.jsonl" in r.stderr


def test_cli_unexpected_exception_keeps_its_traceback(monkeypatch):
    def broken(args):
        raise RuntimeError("a bug, not a bad input")
    monkeypatch.setattr(cli, "cmd_data", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["data", "--scale", "tiny"])
