"""Block compression: a byte stream cut into blocks, each compressed on its own, with a table.

Compressing a whole file as one stream gives the best ratio, but then reading byte 900,000,000
means decompressing the 900 MB before it. Cutting the stream into blocks of ``block_bytes`` raw
bytes and compressing each independently costs a little ratio (each block starts with an empty
history; a trained dictionary wins most of that back) and buys random access: reading any
range decompresses only the blocks it touches. The block table records where each compressed
block starts and a checksum of it, so a corrupt block is caught before it is decompressed.
A reader of a local file checks each block's checksum the first time it decompresses it: the
kit replaces files by renaming new ones into place, so the file a reader has open never
changes under it, and a block read again in a later epoch is not checked again.

A standalone block file (``write_blocks`` / ``BlockReader``), all integers little-endian:

=========  =========  ===========================================================
offset     size       field
=========  =========  ===========================================================
0          8          magic ``b"IOKITBLK"``
8          4          format version (uint32, 1)
12         4          reserved, zero
16         …          the compressed blocks, back to back
…          …          the block table (below)
end − 24   8          offset of the block table (uint64)
end − 16   8          length of the block table (uint64)
end − 8    8          magic ``b"IOKITEND"``
=========  =========  ===========================================================

The block table (:class:`BlockTable`, also stored inside shard indexes):

=========  ===========================================================================
size       field
=========  ===========================================================================
2 + n      codec name: length (uint16), then ASCII, e.g. ``zstd:3``
4 + n      dictionary: length (uint32, 0 for none), then its bytes
8          block size: raw bytes per block (uint64); the last block may be shorter
8          raw size: total bytes before compression (uint64)
8          block count ``n`` (uint64)
8(n+1)     where each compressed block starts, and where the last ends (int64, from the
           start of the data), so block ``i`` is bytes ``offsets[i] : offsets[i+1]``
4n         CRC-32 of each compressed block (uint32)
4          CRC-32 of all the fields above (uint32)
=========  ===========================================================================
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iokit.atomic import atomic_write
from iokit.codecs import Codec, get_codec, train_dictionary
from iokit.errors import FormatError, ParameterError, check_size

MAGIC = b"IOKITBLK"
END_MAGIC = b"IOKITEND"
VERSION = 1
HEADER = struct.Struct("<8sII")
TRAILER = struct.Struct("<QQ8s")
DEFAULT_BLOCK_BYTES = 256 * 1024  # raw bytes per block
MAX_BLOCK_BYTES = 256 * 2**20  # the largest block a writer makes or a reader accepts
DICT_TRAIN_BYTES = 4 << 20  # bytes a "zstd-dict" writer buffers to train its dictionary on
DICT_SAMPLE_BYTES = 8 * 1024  # the trainer's sample size (zstd wants many small samples)


@dataclass
class BlockTable:
    """Where the compressed blocks are, how to decompress them, and their checksums."""

    codec: str
    block_bytes: int
    raw_size: int
    offsets: np.ndarray  # int64, n + 1 entries
    checksums: np.ndarray  # uint32, n entries
    dictionary: bytes | None = None

    @property
    def n_blocks(self) -> int:
        return len(self.checksums)

    @property
    def compressed_size(self) -> int:
        return int(self.offsets[-1] - self.offsets[0]) if self.n_blocks else 0

    @property
    def ratio(self) -> float:
        """Raw bytes per stored byte (the table and header not counted)."""
        return self.raw_size / self.compressed_size if self.compressed_size else 1.0

    def raw_length(self, i: int) -> int:
        """Raw bytes in block ``i`` (only the last block may be short)."""
        return min(self.block_bytes, self.raw_size - i * self.block_bytes)

    def make_codec(self) -> Codec:
        return get_codec(self.codec, dictionary=self.dictionary)

    def to_bytes(self) -> bytes:
        name = self.codec.encode("ascii")
        d = self.dictionary or b""
        body = b"".join([
            struct.pack("<H", len(name)), name, struct.pack("<I", len(d)), d,
            struct.pack("<QQQ", self.block_bytes, self.raw_size, self.n_blocks),
            np.asarray(self.offsets, dtype="<i8").tobytes(),
            np.asarray(self.checksums, dtype="<u4").tobytes(),
        ])
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, raw: bytes, where: str = "block table") -> BlockTable:
        """Parse a table, checking every field; errors name ``where`` (file and field)."""
        def bad(field: str, what: str) -> FormatError:
            return FormatError(f"{where}: {field} {what}; the file is corrupt or truncated: "
                               "write it again.")

        if len(raw) < 4 or zlib.crc32(raw[:-4]) != struct.unpack("<I", raw[-4:])[0]:
            raise bad("block table", "fails its checksum")
        pos = 0

        def take(n: int, field: str) -> bytes:
            nonlocal pos
            if pos + n > len(raw) - 4:
                raise bad(field, "runs past the end of the table")
            pos += n
            return raw[pos - n:pos]

        (n,) = struct.unpack("<H", take(2, "codec name length"))
        codec = take(n, "codec name").decode("ascii", errors="replace")
        (n,) = struct.unpack("<I", take(4, "dictionary length"))
        dictionary = take(n, "dictionary") or None
        block_bytes, raw_size, n_blocks = struct.unpack("<QQQ", take(24, "block sizes"))
        offsets = np.frombuffer(take(8 * (n_blocks + 1), "block offsets"), dtype="<i8")
        checksums = np.frombuffer(take(4 * n_blocks, "block checksums"), dtype="<u4")
        if pos != len(raw) - 4:
            raise bad("block table", "has bytes left over")
        if not 0 < block_bytes <= MAX_BLOCK_BYTES:
            raise bad("block size", f"{block_bytes:,} is not 1 to {MAX_BLOCK_BYTES:,} bytes")
        if n_blocks != -(-raw_size // block_bytes):
            raise bad("block count", f"{n_blocks} does not match raw size {raw_size:,} in "
                      f"blocks of {block_bytes:,}")
        if np.any(np.diff(offsets) < 0):
            raise bad("block offsets", "go backwards")
        try:
            get_codec(codec, dictionary=dictionary)
        except ParameterError as exc:
            raise FormatError(f"{where}: codec: {exc}") from None
        return cls(codec, block_bytes, raw_size, offsets, checksums, dictionary)


def check_block_bytes(block_bytes) -> int:
    """``block_bytes`` as an int if a writer can buffer (and a reader decompress) such blocks."""
    return check_size("block_bytes", block_bytes, item_bytes=2, most=MAX_BLOCK_BYTES,
                      of=f"the largest block this format allows ({MAX_BLOCK_BYTES:,} bytes)",
                      hint="Use e.g. 262144 (256 KiB).")


class BlockWriter:
    """Cut what is written into blocks, compress each, write them to ``f``; ``close()`` → table.

    ``f`` is an open binary file (under :func:`iokit.atomic.atomic_write`); blocks are written
    as soon as they are full, so memory stays at one block whatever the size of the stream. A
    ``zstd-dict`` codec without a dictionary first buffers up to ``DICT_TRAIN_BYTES`` of the
    stream and trains its dictionary on it.
    """

    def __init__(self, f, codec: str | Codec = "zstd:3", block_bytes: int = DEFAULT_BLOCK_BYTES,
                 *, dictionary: bytes | None = None):
        self.f = f
        self.block_bytes = check_block_bytes(block_bytes)
        self.codec_name = codec.name if isinstance(codec, Codec) else str(codec)
        needs_training = self.codec_name.startswith("zstd-dict") and dictionary is None \
            and not (isinstance(codec, Codec) and codec.dictionary)
        self.codec = None if needs_training else get_codec(codec, dictionary=dictionary)
        self.start = f.tell()
        self.offsets = [0]
        self.checksums: list[int] = []
        self.raw_size = 0
        self._buf = bytearray()

    def write(self, data) -> None:
        self._buf += data
        self.raw_size += len(data)
        if self.codec is None:
            if len(self._buf) < DICT_TRAIN_BYTES:
                return
            self._train()
        self._flush(final=False)

    def _train(self) -> None:
        piece = min(self.block_bytes, DICT_SAMPLE_BYTES)
        view = bytes(self._buf[:DICT_TRAIN_BYTES])
        samples = [view[i:i + piece] for i in range(0, len(view), piece)]
        self.codec = get_codec(self.codec_name, dictionary=train_dictionary(samples))

    def _flush(self, final: bool) -> None:
        bs = self.block_bytes
        n_full = len(self._buf) // bs
        end = len(self._buf) if final else n_full * bs
        view = memoryview(self._buf)
        for start in range(0, end, bs):
            packed = self.codec.compress(view[start:start + bs])
            self.f.write(packed)
            self.offsets.append(self.offsets[-1] + len(packed))
            self.checksums.append(zlib.crc32(packed))
        view.release()
        del self._buf[:end]

    def close(self) -> BlockTable:
        """Compress what is left (a short last block) and return the block table."""
        if self.codec is None:
            if self.raw_size == 0:
                self.codec = get_codec("zstd:" + self.codec_name.partition(":")[2]) \
                    if ":" in self.codec_name else get_codec("zstd")
                self.codec_name = self.codec.name
            else:
                self._train()
        self._flush(final=True)
        return BlockTable(self.codec_name, self.block_bytes, self.raw_size,
                          np.array(self.offsets, dtype=np.int64),
                          np.array(self.checksums, dtype=np.uint32), self.codec.dictionary)


def _chunks(data) -> Iterable:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return [data]
    return data


def write_blocks(path, data, codec: str | Codec = "zstd:3",
                 block_bytes: int = DEFAULT_BLOCK_BYTES, *,
                 dictionary: bytes | None = None) -> BlockTable:
    """Write ``data`` (bytes, or an iterable of bytes pieces) as a standalone block file."""
    path = Path(path)
    with atomic_write(path) as f:
        f.write(HEADER.pack(MAGIC, VERSION, 0))
        w = BlockWriter(f, codec, block_bytes, dictionary=dictionary)
        for piece in _chunks(data):
            w.write(piece)
        table = w.close()
        table_bytes = table.to_bytes()
        table_at = f.tell()
        f.write(table_bytes)
        f.write(TRAILER.pack(table_at, len(table_bytes), END_MAGIC))
    return table


def read_table(path) -> tuple[BlockTable, int]:
    """The block table of a standalone block file, and where its blocks start."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER.size)
        if len(head) < HEADER.size or head[:8] != MAGIC:
            raise FormatError(f"{path}: magic is {head[:8]!r}, expected {MAGIC!r}: not an iokit "
                              "block file (or truncated to nothing).")
        _, version, _ = HEADER.unpack(head)
        if version != VERSION:
            raise FormatError(f"{path}: format version {version}, this iokit reads {VERSION}: "
                              "write the file again with this version.")
        if size < HEADER.size + TRAILER.size:
            raise FormatError(f"{path}: truncated: {size:,} bytes is too short for a block "
                              "file; write it again.")
        f.seek(size - TRAILER.size)
        table_at, table_len, end = TRAILER.unpack(f.read(TRAILER.size))
        if end != END_MAGIC or table_at + table_len != size - TRAILER.size:
            raise FormatError(f"{path}: truncated or damaged: the trailer at byte "
                              f"{size - TRAILER.size:,} is not valid; write the file again.")
        f.seek(table_at)
        table = BlockTable.from_bytes(f.read(table_len), where=f"{path}: block table")
    if HEADER.size + table.offsets[-1] != table_at:
        raise FormatError(f"{path}: the blocks end at byte {HEADER.size + table.offsets[-1]:,} "
                          f"but the table starts at {table_at:,}; write the file again.")
    return table, HEADER.size


class BlockReader:
    """Random access and streaming over block-compressed data.

    ``BlockReader(path)`` opens a standalone block file; ``BlockReader(path, table, start)``
    reads blocks stored elsewhere (a shard's ``.bin``, with its table kept in the ``.idx``).
    ``storage`` (a :class:`~iokit.storage.LocalDisk` or ``SimulatedStore``) fetches the
    compressed bytes; by default they are read from the local file with ``os.pread``, into a
    buffer reused from block to block (a fresh buffer per block costs page faults).

    ``verify`` checks each block's CRC-32 before decompressing it: for a local file, the first
    time this reader decodes the block (the open file never changes: see the module
    docstring); through ``storage``, every time.
    """

    def __init__(self, path, table: BlockTable | None = None, start: int = 0, *,
                 storage=None, verify: bool = True):
        self._fd = None
        self.path = Path(path)
        if table is None:
            table, start = read_table(self.path)
        self.table = table
        self.start = start
        self.storage = storage
        self.verify = verify
        self.codec = table.make_codec()
        self._cached = (-1, b"")  # the last block decompressed (index, bytes)
        self._checked = bytearray(table.n_blocks)  # 1: block i passed its checksum
        self._local = threading.local()  # each thread's read buffer

    @property
    def size(self) -> int:
        """Raw (uncompressed) bytes."""
        return self.table.raw_size

    def __len__(self) -> int:
        return self.table.raw_size

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                raise FormatError(f"{self.path}: missing; its block table has nowhere to "
                                  "read from.") from None
        return self._fd

    def _fetch(self, offset: int, size: int) -> bytes:
        if self.storage is not None:
            return self.storage.read(self.path, offset, size)
        return os.pread(self._open(), size, offset)

    def _where(self, i: int) -> str:
        t = self.table
        return (f"{self.path}: block {i} of {t.n_blocks} (bytes {self.start + t.offsets[i]:,}.."
                f"{self.start + t.offsets[i + 1]:,})")

    def fetch(self, i: int) -> bytes:
        """The stored (compressed) bytes of block ``i``: the I/O half of reading a block."""
        t = self.table
        if not 0 <= i < t.n_blocks:
            raise ParameterError(f"{self.path}: block {i} does not exist; there are "
                                 f"{t.n_blocks} blocks.")
        lo, hi = int(t.offsets[i]), int(t.offsets[i + 1])
        packed = self._fetch(self.start + lo, hi - lo)
        if len(packed) != hi - lo:
            raise FormatError(f"{self._where(i)}: truncated: got {len(packed):,} of "
                              f"{hi - lo:,} bytes. The file was cut short; write it again.")
        return packed

    def _read_packed(self, i: int):
        """Block ``i``'s stored bytes as a view of this thread's read buffer (valid until its
        next read), or, through ``storage``, as :meth:`fetch` gives them."""
        if self.storage is not None:
            return self.fetch(i)
        t = self.table
        lo, hi = int(t.offsets[i]), int(t.offsets[i + 1])
        buf = getattr(self._local, "buf", None)
        if buf is None or len(buf) < hi - lo:
            buf = self._local.buf = memoryview(bytearray(max(hi - lo, 1 << 16)))
        view = buf[:hi - lo]
        got = os.preadv(self._open(), [view], self.start + lo)
        if got != hi - lo:
            raise FormatError(f"{self._where(i)}: truncated: got {got:,} of {hi - lo:,} "
                              "bytes. The file was cut short; write it again.")
        return view

    def check(self, i: int, packed) -> None:
        """Raise :class:`FormatError` naming the file and block if ``packed`` fails block
        ``i``'s checksum (a local file's block that passed once is not checked again)."""
        if self._checked[i]:
            return
        if zlib.crc32(packed) != int(self.table.checksums[i]):
            raise FormatError(f"{self._where(i)}: checksum mismatch: the block is corrupt. "
                              "Write the file again (or restore it from a good copy).")
        if self.storage is None:
            self._checked[i] = 1

    def decode(self, i: int, packed: bytes) -> bytes:
        """Block ``i`` from its stored bytes: check the checksum (see :meth:`check`),
        decompress (never to more than the block's declared raw size), check the length."""
        if self.verify:
            self.check(i, packed)
        return self._decompress(i, packed)

    def _decompress(self, i: int, packed) -> bytes:
        t = self.table
        try:
            raw = self.codec.decompress(packed, max_size=t.raw_length(i))
        except FormatError as exc:
            raise FormatError(f"{self._where(i)}: {exc}") from None
        if len(raw) != t.raw_length(i):
            raise FormatError(f"{self._where(i)}: decompressed to {len(raw):,} bytes, expected "
                              f"{t.raw_length(i):,}; the file is corrupt.")
        return raw

    def block(self, i: int) -> bytes:
        """Block ``i``, decompressed (checked against its checksum and its length first)."""
        if self._cached[0] == i:
            return self._cached[1]
        raw = self.decode(i, self._read_packed(i))
        self._cached = (i, raw)
        return raw

    def read(self, offset: int, nbytes: int) -> bytes:
        """``nbytes`` raw bytes from ``offset`` (fewer at the end), decompressing only the
        blocks that range touches."""
        if offset < 0 or nbytes < 0:
            raise ParameterError(f"{self.path}: offset and nbytes must be >= 0, got "
                                 f"{offset}, {nbytes}.")
        end = min(offset + nbytes, self.size)
        if offset >= end:
            return b""
        bs = self.table.block_bytes
        first, last = offset // bs, (end - 1) // bs
        if first == last:
            return self.block(first)[offset - first * bs:end - first * bs]
        parts = [self.block(i) for i in range(first, last + 1)]
        parts[0] = parts[0][offset - first * bs:]
        parts[-1] = parts[-1][:end - last * bs]
        return b"".join(parts)

    def _fetch_checked(self, i: int) -> bytes:
        packed = self.fetch(i)
        if self.verify:
            self.check(i, packed)
        return packed

    def iter_blocks(self, prefetch: bool = False) -> Iterator[bytes]:
        """Every block in order, decompressed one at a time (memory: one or two blocks).

        With ``prefetch=True`` a background thread fetches block i + 1 (and checks its
        checksum) while block i is decompressed, so I/O and decompression overlap (both
        release the GIL). It pays when fetching waits (slow or remote storage); from the page
        cache the hand-over between threads costs about what it saves, so it is not the
        default.
        """
        n = self.table.n_blocks
        if not prefetch or n < 2:
            for i in range(n):
                yield self.block(i)
            return

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="iokit-prefetch") as pool:
            pending = pool.submit(self._fetch_checked, 0)
            for i in range(n):
                packed = pending.result()
                if i + 1 < n:
                    pending = pool.submit(self._fetch_checked, i + 1)
                yield self._decompress(i, packed)

    def read_all(self) -> bytes:
        return b"".join(self.iter_blocks())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()
