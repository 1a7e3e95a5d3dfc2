"""Token shards: tokenize once, store the IDs in a binary file, memory-map it, sample windows.

A shard set is a folder of ``shard-00000.bin`` / ``shard-00000.idx`` pairs (as Megatron-LM's
``.bin``/``.idx``, nanoGPT's ``train.bin``, llm.c's shards). The ``.bin`` holds token IDs back to
back, little-endian ``uint16`` when the vocabulary has at most 65,536 IDs, else ``uint32`` —
no header, so ``np.memmap`` maps it directly. The ``.idx`` beside it describes it:

======  ==========  =====  ==================================================================
offset  size        type   field
======  ==========  =====  ==================================================================
0       8           bytes  magic: ``b"IOKITIDX"``
8       4           u32    version: 1
12      1           u8     dtype code: 1 = ``uint16``, 2 = ``uint32``
13      1           u8     codec code: 0 = none (raw ``.bin``); others reserved (see below)
14      2           u16    flags: bit 0 = last shard of the set; other bits 0
16      4           u32    shard index: the ``NNNNN`` in the file name
20      4           u32    reserved: 0
24      8           u64    vocabulary size (every ID is below it)
32      8           u64    tokenizer fingerprint (0 = not recorded)
40      8           u64    document count ``n``
48      8           u64    token count
56      8           u64    ``.bin`` size in bytes
64      8           u64    ``.bin`` checksum: BLAKE2b with an 8-byte digest, read little-endian
72      8 × (n+1)   i64    document offsets, in tokens: 0, end of document 0, ..., token count
======  ==========  =====  ==================================================================

All integers are little-endian. A version-1 ``.idx`` has codec 0 and exactly
``72 + 8 × (n + 1)`` bytes.

**Block-compressed shards** (``write_shards(..., codec="zstd:3")``) are format version 2, codec
code 1: the ``.bin`` is the token bytes cut into blocks of ``block_bytes`` raw bytes, each
compressed on its own (:mod:`iokit.blocks`), and the ``.idx`` continues after the document
offsets with the block table (codec name, dictionary, block size, raw size, block offsets,
a CRC-32 per block; see :class:`iokit.blocks.BlockTable`). Fields ``.bin size`` and ``.bin
checksum`` then describe the compressed file; ``token count`` × item size is the table's raw
size. Reading a window decompresses only the blocks it touches; reading in order streams block
by block. Uncompressed shards are written exactly as before (version 1).

Reading checks every field (and, with ``verify=True``, the checksum) and raises
:class:`~iokit.errors.FormatError` naming the file and the field. Writing streams documents into
shards of at most ``max_shard_bytes`` (a document is never split; a single document larger than
that gets a shard of its own), every file through :func:`~iokit.atomic.atomic_write`. The output
depends only on the ordered token arrays and the settings: same corpus, tokenizer and settings
give byte-identical shards, however the arrays were computed.
"""

from __future__ import annotations

import hashlib
import operator
import re
import struct
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iokit.atomic import atomic_write, make_folder, output_folder, write_bytes_atomic
from iokit.blocks import (
    DEFAULT_BLOCK_BYTES,
    BlockReader,
    BlockTable,
    BlockWriter,
    check_block_bytes,
)
from iokit.codecs import get_codec
from iokit.corpus import iter_documents, open_corpus
from iokit.errors import (
    FormatError,
    ParameterError,
    PositionError,
    check_positive,
    check_size,
    read_kit_file,
)
from iokit.storage import is_url
from iokit.tokenize import encode_corpus, load_tokenizer

MAGIC = b"IOKITIDX"
VERSION = 1
VERSION_BLOCKS = 2  # block-compressed .bin, block table in the .idx
HEADER = struct.Struct("<8sIBBHIIQQQQQQ")  # the fields of the table above, up to the offsets
assert HEADER.size == 72
DTYPE_CODES = {1: np.dtype("<u2"), 2: np.dtype("<u4")}
DTYPE_NAMES = {"uint16": 1, "uint32": 2}
CODEC_NONE = 0
CODEC_BLOCKS = 1  # the codec's name is in the block table
FLAG_LAST = 1
UINT16_IDS = 65_536  # a vocabulary of at most this many IDs fits uint16
DEFAULT_MAX_SHARD_BYTES = 64 * 2**20
VOCAB_FILE = "vocab.json"
_SHARD_NAME = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})\.(?P<ext>bin|idx)$")


def choose_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` when every ID fits (vocabulary of at most 65,536), else ``uint32``."""
    vocab_size = check_positive("vocab_size", vocab_size)
    if vocab_size > 2**32:
        raise ParameterError(f"a vocabulary of {vocab_size:,} IDs does not fit uint32.")
    return DTYPE_CODES[1] if vocab_size <= UINT16_IDS else DTYPE_CODES[2]


def _resolve_dtype(dtype, vocab_size: int) -> np.dtype:
    if dtype in (None, "auto"):
        return choose_dtype(vocab_size)
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPE_NAMES:
        raise ParameterError(f"unknown token dtype {dtype!r}; choose one of: auto, uint16, "
                             "uint32.")
    dt = DTYPE_CODES[DTYPE_NAMES[name]]
    limit = np.iinfo(dt).max + 1
    if vocab_size > limit:
        raise ParameterError(
            f"a vocabulary of {vocab_size:,} IDs does not fit {name} (at most {limit:,} IDs); "
            "use dtype='uint32' or dtype='auto'.")
    return dt


def inputs_and_targets(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``block_size + 1`` tokens → ``(x, y)``: inputs, and targets shifted by one
    (views of ``windows``, as nanoGPT's ``get_batch`` returns them)."""
    return windows[:, :-1], windows[:, 1:]


def shard_paths(out_dir, index: int, prefix: str = "shard") -> tuple[Path, Path]:
    """The ``.bin`` and ``.idx`` paths of shard ``index``."""
    stem = Path(out_dir) / f"{prefix}-{index:05d}"
    return stem.with_suffix(".bin"), stem.with_suffix(".idx")


# --------------------------------------------------------------------------- writing


def checksum_of(chunks) -> int:
    """The checksum an index records for a ``.bin`` (8-byte blake2b, little-endian), over its
    bytes given as a stream of chunks: one definition for every reader, local or remote."""
    h = hashlib.blake2b(digest_size=8)
    for data in chunks:
        h.update(data)
    return int.from_bytes(h.digest(), "little")


class _OpenShard:
    """One shard being written: its .bin streams through atomic_write, its offsets in memory."""

    def __init__(self, out_dir: Path, index: int, prefix: str, codec=None,
                 block_bytes: int | None = None, dictionary: bytes | None = None):
        self.index = index
        self.bin_path, self.idx_path = shard_paths(out_dir, index, prefix)
        self._cm = atomic_write(self.bin_path, "wb")
        self._f = self._cm.__enter__()
        self.hash = hashlib.blake2b(digest_size=8)
        self.offsets = [0]
        self.nbytes = 0  # raw token bytes (what max_shard_bytes limits)
        self._blocks = None
        if codec is not None:  # block-compressed: the blocks go to the file through the hash
            self._blocks = BlockWriter(_HashingWriter(self._f, self.hash), codec, block_bytes,
                                       dictionary=dictionary)

    def add(self, data, n_tokens: int) -> None:
        if self._blocks is not None:  # a few blocks at a time: the writer buffers what it gets
            step = 4 * self._blocks.block_bytes
            for at in range(0, len(data), step):
                self._blocks.write(data[at:at + step])
        else:
            self._f.write(data)
            self.hash.update(data)
        self.nbytes += len(data)
        self.offsets.append(self.offsets[-1] + n_tokens)

    def abort(self, exc: BaseException) -> None:
        self._cm.__exit__(type(exc), exc, exc.__traceback__)

    def finish(self, *, last: bool, dtype: np.dtype, vocab_size: int, fingerprint: int) -> None:
        table = self._blocks.close() if self._blocks is not None else None
        self._cm.__exit__(None, None, None)  # the .bin is complete: rename it into place
        offsets = np.array(self.offsets, dtype="<i8")
        version, codec, bin_size, extra = VERSION, CODEC_NONE, self.nbytes, b""
        if table is not None:
            version, codec, bin_size = VERSION_BLOCKS, CODEC_BLOCKS, table.compressed_size
            extra = table.to_bytes()
        header = HEADER.pack(
            MAGIC, version, _dtype_code(dtype), codec, FLAG_LAST if last else 0, self.index,
            0, vocab_size, fingerprint, len(offsets) - 1, int(offsets[-1]), bin_size,
            int.from_bytes(self.hash.digest(), "little"))
        write_bytes_atomic(self.idx_path, header + offsets.tobytes() + extra)


class _HashingWriter:
    """A file that also feeds what is written to a hash (the .bin checksum of the stored bytes)."""

    def __init__(self, f, hash_):
        self.f, self.hash = f, hash_

    def write(self, data) -> int:
        self.hash.update(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.f.tell()


def _dtype_code(dtype: np.dtype) -> int:
    return next(code for code, dt in DTYPE_CODES.items() if dt == dtype)


def _document_bytes(arr, k: int, dtype: np.dtype, vocab_size: int) -> tuple[bytes, int]:
    arr = np.asarray(arr)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ParameterError(f"document {k}: expected a 1-D array of integer token IDs, got "
                             f"shape {arr.shape} of {arr.dtype}.")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= vocab_size:
            bad = lo if lo < 0 else hi
            raise ParameterError(
                f"document {k}: token ID {bad:,} is outside the vocabulary (0 to "
                f"{vocab_size - 1:,}); pass the vocab_size of the tokenizer that made the IDs.")
    # A byte view of the (converted) array, not a bytes copy: one document may be huge.
    return memoryview(np.ascontiguousarray(arr.astype(dtype, copy=False))).cast("B"), \
        int(arr.size)


def write_shards(token_arrays: Iterable, out_dir, *, vocab_size: int, dtype="auto",
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, fingerprint: int = 0,
                 prefix: str = "shard", codec=None, block_bytes: int | None = None,
                 dictionary: bytes | None = None) -> list[Path]:
    """Write one token array per document into shards in ``out_dir``; return the ``.bin`` paths.

    Streams: memory holds one document and one shard's document offsets, whatever the corpus
    size. A shard is closed when the next document would take it past ``max_shard_bytes``.
    ``dtype`` is ``"auto"`` (``uint16`` if the vocabulary fits, else ``uint32``), ``"uint16"``
    or ``"uint32"``. Shards already in ``out_dir`` (same ``prefix``) are removed first, so an
    interrupted run leaves a set without a last shard, which readers reject.

    ``codec`` (e.g. ``"zstd:3"``, see :mod:`iokit.codecs`) writes block-compressed shards in
    blocks of ``block_bytes`` raw bytes (default 256 KiB, a multiple of the token size);
    ``None`` or ``"none"`` writes raw shards. ``max_shard_bytes`` counts raw token bytes.
    """
    vocab_size = check_positive("vocab_size", vocab_size)
    max_shard_bytes = check_positive("max_shard_bytes", max_shard_bytes,
                                     hint="Use e.g. 67108864 (64 MiB).")
    dt = _resolve_dtype(dtype, vocab_size)
    compression = _compression(codec, block_bytes, dt, dictionary)  # before touching out_dir
    meta = {"dtype": dt, "vocab_size": vocab_size, "fingerprint": int(fingerprint)}
    done: list[Path] = []
    current = None
    # A failed first write leaves no empty folder behind.
    with output_folder(out_dir, "the shard folder") as out_dir:
        _remove_shards(out_dir, prefix)
        try:
            for k, arr in enumerate(token_arrays):
                data, n = _document_bytes(arr, k, dt, vocab_size)
                if current is not None and len(current.offsets) > 1 and \
                        current.nbytes + len(data) > max_shard_bytes:
                    current.finish(last=False, **meta)
                    done.append(current.bin_path)
                    current = None
                if current is None:
                    current = _OpenShard(out_dir, len(done), prefix, **compression)
                current.add(data, n)
            if current is None:  # no documents at all: one empty shard says so
                current = _OpenShard(out_dir, 0, prefix, **compression)
            current.finish(last=True, **meta)
            done.append(current.bin_path)
            current = None
        except BaseException as exc:
            if current is not None:
                current.abort(exc)  # may raise the StorageError that explains exc
            raise
    return done


def write_shard(token_arrays: Iterable, out_dir, index: int, *, last: bool, vocab_size: int,
                dtype="auto", fingerprint: int = 0, prefix: str = "shard", codec=None,
                block_bytes: int | None = None, dictionary: bytes | None = None) -> Path:
    """Write every document of ``token_arrays`` into the one shard numbered ``index``.

    The piece of :func:`write_shards` that a distributed task runs: task ``i`` of ``n`` writes
    shard ``i`` (``last=True`` for ``i == n - 1``) from its own input, with no size limit and
    without touching other shards. Shards written this way from the same documents and settings
    are byte-identical wherever they were written.
    """
    vocab_size = check_positive("vocab_size", vocab_size)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 100_000:
        raise ParameterError(f"shard index must be a whole number from 0 to 99999, got "
                             f"{index!r}.")
    dt = _resolve_dtype(dtype, vocab_size)
    compression = _compression(codec, block_bytes, dt, dictionary)
    shard = _OpenShard(make_folder(out_dir, "the shard folder"), index, prefix, **compression)
    try:
        for k, arr in enumerate(token_arrays):
            shard.add(*_document_bytes(arr, k, dt, vocab_size))
    except BaseException as exc:
        shard.abort(exc)
        raise
    shard.finish(last=last, dtype=dt, vocab_size=vocab_size, fingerprint=int(fingerprint))
    return shard.bin_path


def _compression(codec, block_bytes, dtype: np.dtype, dictionary) -> dict:
    """The writer's block-compression settings, checked before anything is written."""
    name = getattr(codec, "name", codec)
    if codec is None or name == "none":
        return {}
    if not str(name).startswith("zstd-dict") or dictionary is not None:
        get_codec(codec, dictionary=dictionary)  # an unknown name fails here, listing the valid
    block_bytes = check_block_bytes(DEFAULT_BLOCK_BYTES if block_bytes is None
                                    else block_bytes)
    if block_bytes % dtype.itemsize:
        raise ParameterError(f"block_bytes {block_bytes:,} is not a multiple of the token size "
                             f"({dtype.itemsize} bytes for {dtype.name}); use e.g. 262144.")
    return {"codec": codec, "block_bytes": block_bytes, "dictionary": dictionary}


def _remove_shards(out_dir: Path, prefix: str) -> None:
    for p in out_dir.iterdir():
        m = _SHARD_NAME.match(p.name)
        if m and m["prefix"] == prefix:
            p.unlink()


def pretokenize(corpus, tokenizer, out_dir, *, dtype="auto",
                max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, text_field: str = "text",
                codec=None, block_bytes: int | None = None) -> list[Path]:
    """Tokenize ``corpus`` (any corpus form, opened with :func:`~iokit.corpus.open_corpus`) once
    into shards in ``out_dir`` (plus the tokenizer as vocab.json)."""
    docs = iter_documents(open_corpus(corpus, text_field))
    bins = write_shards(encode_corpus(docs, tokenizer), out_dir,
                        vocab_size=tokenizer.vocab_size, dtype=dtype,
                        max_shard_bytes=max_shard_bytes, fingerprint=tokenizer.fingerprint,
                        codec=codec, block_bytes=block_bytes)
    tokenizer.save(Path(out_dir) / VOCAB_FILE)  # last: a failed run leaves no vocabulary
    return bins


# --------------------------------------------------------------------------- reading


class RawTokens:
    """The token bytes of an uncompressed ``.bin``: a read-only memory map (no copy).

    This is the one place a reader gets token bytes from. Another source (say, block-compressed
    bytes) needs only ``read(start, stop) -> np.ndarray`` and ``close()``; ``windows(width)`` is
    there only for sources that hold the whole array, and lets sampling gather in one step.
    """

    def __init__(self, path: Path, dtype: np.dtype, n_tokens: int):
        self._memmap = None
        if n_tokens:
            try:
                self._memmap = np.memmap(path, dtype=dtype, mode="r", shape=(n_tokens,))
            except OSError as exc:
                raise FormatError(f"{path}: cannot map ({exc.strerror}); check the path and "
                                  "permissions.") from None
            self.array = self._memmap.view(np.ndarray)  # plain views slice faster than memmaps
        else:
            self.array = np.empty(0, dtype=dtype)
        self._windows: dict[int, np.ndarray] = {}

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]

    def windows(self, width: int) -> np.ndarray:
        """Every window of ``width`` tokens as rows of a 2-D view (no copy)."""
        if width not in self._windows:
            self._windows[width] = np.lib.stride_tricks.sliding_window_view(self.array, width)
        return self._windows[width]

    def close(self) -> None:
        mm = getattr(self._memmap, "_mmap", None)
        self.array = self._memmap = None
        self._windows.clear()
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # someone still holds a view: the OS unmaps when it is freed
                pass


@dataclass
class Shard:
    """One ``.bin`` + ``.idx`` pair, its header checked and its tokens mapped."""

    bin_path: Path
    idx_path: Path
    index: int
    dtype: np.dtype
    codec: int
    flags: int
    vocab_size: int
    fingerprint: int
    n_tokens: int
    bin_size: int
    checksum: int
    offsets: np.ndarray  # int64, n_docs + 1 token offsets
    source: RawTokens
    blocks: object = None  # the BlockTable of a block-compressed shard, else None

    @property
    def compressed(self) -> bool:
        return self.blocks is not None

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def last(self) -> bool:
        return bool(self.flags & FLAG_LAST)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens ``start:stop`` of this shard (a view of the map for raw shards); a range
        outside ``0 <= start <= stop <= n_tokens`` is a ParameterError, raw or compressed."""
        start, stop = check_range(self.bin_path, start, stop, self.n_tokens)
        return self.source.read(start, stop)

    def document(self, i: int) -> np.ndarray:
        """The tokens of document ``i`` of this shard (negative counts from the end)."""
        i = document_position(self.bin_path, i, self.n_docs)
        return self.read(int(self.offsets[i]), int(self.offsets[i + 1]))

    def compute_checksum(self) -> int:
        with open(self.bin_path, "rb") as f:
            return checksum_of(iter(lambda: f.read(1 << 20), b""))

    def verify(self) -> None:
        """Recompute the ``.bin`` checksum; raise FormatError if it differs from the index."""
        got = self.compute_checksum()
        if got != self.checksum:
            raise FormatError(
                f"{self.bin_path}: checksum mismatch: {self.idx_path.name} field 'checksum' is "
                f"{self.checksum:016x}, the .bin's bytes give {got:016x}. The .bin is corrupt: "
                "write the shards again.")


def document_position(where, i, n_docs: int) -> int:
    """Document ``i`` as a position in ``0..n_docs - 1`` (negative counts from the end), else
    the kit's PositionError naming ``where``: every document reader answers alike."""
    try:
        i = operator.index(i)
    except TypeError:
        raise PositionError(f"{where}: a document number must be a whole number, got "
                            f"{i!r}.") from None
    if not -n_docs <= i < n_docs:
        raise PositionError(f"document {i} out of range: {where} holds {n_docs:,} documents; "
                            f"give 0 to {n_docs - 1:,} (or -1 for the last).")
    return i % n_docs


def check_range(where, start, stop, n_tokens: int) -> tuple[int, int]:
    """``(start, stop)`` as ints if ``0 <= start <= stop <= n_tokens``, else a ParameterError
    naming ``where``: every token reader answers an out-of-range read the same way."""
    try:
        start, stop = operator.index(start), operator.index(stop)
    except TypeError:
        raise PositionError(f"{where}: token positions must be whole numbers, got "
                             f"{start!r}, {stop!r}.") from None
    if not 0 <= start <= stop <= n_tokens:
        raise PositionError(
            f"{where}: cannot read tokens {start:,}:{stop:,}; it holds {n_tokens:,} tokens, so "
            f"a read needs 0 <= start <= stop <= {n_tokens:,}.")
    return start, stop


def _bad(path: Path, field: str, what: str, todo: str = "write the shards again") -> FormatError:
    return FormatError(f"{path}: field '{field}': {what}; {todo}.")


def read_index(idx_path, expected_index: int | None = None, *, raw: bytes | None = None
               ) -> dict:
    """Read and check one ``.idx`` file; return its fields (``offsets`` as an int64 array).
    ``raw``: the index's bytes, already fetched (from a URL); ``idx_path`` then names it."""
    if raw is None:
        idx_path = Path(idx_path)
        raw = read_kit_file(idx_path, "index file",
                            "write the shards with iokit.shards.pretokenize")
    if len(raw) < HEADER.size:
        raise _bad(idx_path, "header", f"the file has {len(raw)} bytes, the header alone needs "
                   f"{HEADER.size}: the file is truncated")
    (magic, version, dtype_code, codec, flags, index, reserved, vocab_size, fingerprint, n_docs,
     n_tokens, bin_size, checksum) = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise _bad(idx_path, "magic", f"expected {MAGIC!r}, found {magic!r}: this is not an iokit "
                   "shard index", "give the folder of shards iokit wrote")
    if version not in (VERSION, VERSION_BLOCKS):
        raise _bad(idx_path, "version", f"{version}, but this iokit reads version {VERSION} "
                   f"(raw) or {VERSION_BLOCKS} (block-compressed)",
                   "write the shards again with this iokit (or use the iokit that wrote them)")
    if dtype_code not in DTYPE_CODES:
        raise _bad(idx_path, "dtype code", f"{dtype_code} is not 1 (uint16) or 2 (uint32)")
    if version == VERSION and codec != CODEC_NONE:
        raise _bad(idx_path, "codec code", f"{codec}, but format version 1 stores raw tokens "
                   "(codec 0)")
    if version == VERSION_BLOCKS and codec != CODEC_BLOCKS:
        raise _bad(idx_path, "codec code", f"{codec}, but format version 2 stores "
                   "block-compressed tokens (codec 1)")
    if flags & ~FLAG_LAST or reserved:
        raise _bad(idx_path, "flags", f"unknown flags {flags:#x} / reserved {reserved}")
    if expected_index is not None and index != expected_index:
        raise _bad(idx_path, "shard index", f"{index}, but the file name says {expected_index}",
                   "do not rename shard files")
    dtype = DTYPE_CODES[dtype_code]
    limit = np.iinfo(dtype).max + 1
    if not 0 < vocab_size <= limit:
        raise _bad(idx_path, "vocabulary size", f"{vocab_size:,} IDs do not fit {dtype.name}")
    expected_size = HEADER.size + 8 * (n_docs + 1)
    blocks = None
    if version == VERSION_BLOCKS:
        blocks = _read_block_table(idx_path, raw, expected_size, n_tokens * dtype.itemsize,
                                   bin_size, dtype)
    elif len(raw) != expected_size:
        raise _bad(idx_path, "document count", f"{n_docs:,} documents need an index of "
                   f"{expected_size:,} bytes, the file has {len(raw):,}: the file is truncated "
                   "or corrupt")
    if blocks is None and bin_size != n_tokens * dtype.itemsize:
        raise _bad(idx_path, "bin size", f"{bin_size:,} bytes, but field 'token count' says "
                   f"{n_tokens:,} tokens of {dtype.name} = {n_tokens * dtype.itemsize:,} bytes")
    offsets = np.frombuffer(raw, dtype="<i8", offset=HEADER.size,
                            count=n_docs + 1).astype(np.int64)
    if offsets[0] != 0 or offsets[-1] != n_tokens:
        raise _bad(idx_path, "document offsets", f"they run from {offsets[0]:,} to "
                   f"{offsets[-1]:,}, but must run from 0 to the token count {n_tokens:,}")
    steps = np.diff(offsets)
    if steps.size and steps.min() < 0:
        k = int(np.argmax(steps < 0))
        raise _bad(idx_path, "document offsets", f"document {k + 1} starts at "
                   f"{offsets[k + 1]:,}, before document {k} (at {offsets[k]:,})")
    return {"index": index, "dtype": dtype, "codec": codec, "flags": flags,
            "vocab_size": vocab_size, "fingerprint": fingerprint, "n_tokens": n_tokens,
            "bin_size": bin_size, "checksum": checksum, "offsets": offsets, "blocks": blocks}


def _read_block_table(idx_path: Path, raw: bytes, at: int, raw_size: int, bin_size: int,
                      dtype: np.dtype):
    """The block table of a version-2 index (after the document offsets), checked."""
    if len(raw) <= at:
        raise _bad(idx_path, "document count", f"the document offsets need {at:,} bytes and a "
                   f"block table follows them, but the file has {len(raw):,}: the file is "
                   "truncated or corrupt")
    table = BlockTable.from_bytes(raw[at:], where=f"{idx_path}: field 'block table'")
    if table.raw_size != raw_size:
        raise _bad(idx_path, "block table", f"it holds {table.raw_size:,} raw bytes, but field "
                   f"'token count' says {raw_size // dtype.itemsize:,} tokens of {dtype.name} = "
                   f"{raw_size:,} bytes")
    if table.compressed_size != bin_size or int(table.offsets[0]) != 0:
        raise _bad(idx_path, "bin size", f"{bin_size:,} bytes, but the block table's blocks "
                   f"take {table.compressed_size:,}")
    if table.block_bytes % dtype.itemsize:
        raise _bad(idx_path, "block table", f"block size {table.block_bytes:,} is not a "
                   f"multiple of the {dtype.itemsize}-byte token size")
    return table


class BlockTokens:
    """The tokens of a block-compressed ``.bin``: a read decompresses only the blocks it
    touches (the last block read is kept, so reading in order decompresses each block once).
    """

    def __init__(self, path: Path, dtype: np.dtype, n_tokens: int, table, storage=None):
        self.dtype, self.n_tokens = dtype, n_tokens
        self.reader = BlockReader(path, table, 0, storage=storage)

    def read(self, start: int, stop: int) -> np.ndarray:
        size = self.dtype.itemsize
        start, stop = max(start, 0), min(stop, self.n_tokens)
        if stop <= start:
            return np.empty(0, dtype=self.dtype)
        data = self.reader.read(start * size, (stop - start) * size)
        return np.frombuffer(data, dtype=self.dtype)

    def close(self) -> None:
        self.reader.close()


def token_source(bin_path: Path, fields: dict):
    """Where a shard's token bytes come from, given its checked index fields.

    Codec 0: the raw ``.bin``, memory-mapped (:class:`RawTokens`). Codec 1: the blocks of a
    compressed ``.bin``, decompressed on demand (:class:`BlockTokens`).
    """
    if fields.get("blocks") is not None:
        return BlockTokens(bin_path, fields["dtype"], fields["n_tokens"], fields["blocks"])
    return RawTokens(bin_path, fields["dtype"], fields["n_tokens"])


def open_shard(bin_path, *, verify: bool = False, expected_index: int | None = None) -> Shard:
    """Check one shard's ``.idx`` against its ``.bin`` and map the tokens."""
    bin_path = Path(bin_path)
    idx_path = bin_path.with_suffix(".idx")
    fields = read_index(idx_path, expected_index)
    try:
        size = bin_path.stat().st_size
    except FileNotFoundError:
        raise FormatError(f"{bin_path}: missing, but {idx_path.name} describes it: the writer "
                          "was interrupted or the file was removed; write the shards again."
                          ) from None
    if size != fields["bin_size"]:
        raise FormatError(
            f"{bin_path}: has {size:,} bytes, but {idx_path.name} field 'bin size' says "
            f"{fields['bin_size']:,}: the .idx and .bin disagree (truncated, or from different "
            "runs); write the shards again.")
    source = token_source(bin_path, fields)
    shard = Shard(bin_path=bin_path, idx_path=idx_path, source=source, **fields)
    if verify:
        shard.verify()
    return shard


class ShardSet:
    """All shards of a folder, read as one stream of tokens (documents back to back)."""

    def __init__(self, shards: list[Shard], folder: Path):
        self.shards = shards
        self.folder = folder
        self.starts = np.concatenate([[0], np.cumsum([s.n_tokens for s in shards])])
        self.doc_starts = np.concatenate([[0], np.cumsum([s.n_docs for s in shards])])
        self._start_list = self.starts.tolist()
        self._memory_checked = 0  # the largest batch (bytes) sample_batch found room for
        first = shards[0]
        self.dtype, self.vocab_size, self.fingerprint = \
            first.dtype, first.vocab_size, first.fingerprint

    def __len__(self) -> int:
        """The number of documents."""
        return int(self.doc_starts[-1])

    @property
    def n_tokens(self) -> int:
        return int(self.starts[-1])

    @property
    def nbytes(self) -> int:
        """Bytes of token data on disk (the ``.bin`` files)."""
        return sum(s.bin_size for s in self.shards)

    def document(self, i: int) -> np.ndarray:
        """The tokens of document ``i`` (counting across shards)."""
        i = document_position(self.folder, i, len(self))
        s = int(np.searchsorted(self.doc_starts, i, side="right")) - 1
        return self.shards[s].document(i - int(self.doc_starts[s]))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens ``start:stop`` of the whole stream (copied only when they span shards); a
        range outside ``0 <= start <= stop <= n_tokens`` is a ParameterError."""
        start, stop = check_range(self.folder, start, stop, self.n_tokens)
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        pieces = []
        s = max(first, 0)
        while start < stop and s < len(self.shards):
            base = int(self.starts[s])
            end = min(stop, int(self.starts[s + 1]))
            if end > start:
                pieces.append(self.shards[s].read(start - base, end - base))
            start = max(start, end)
            s += 1
        if len(pieces) == 1:
            return pieces[0]
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=self.dtype)

    def iter_chunks(self, chunk_tokens: int = 1 << 20) -> Iterator[np.ndarray]:
        """Every token once, in order, as arrays of at most ``chunk_tokens`` (an epoch)."""
        chunk_tokens = check_positive("chunk_tokens", chunk_tokens)
        for shard in self.shards:
            for a in range(0, shard.n_tokens, chunk_tokens):
                yield shard.read(a, min(a + chunk_tokens, shard.n_tokens))

    def sample_batch(self, rng, batch_size: int, block_size: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``batch_size`` random windows of ``block_size`` tokens, as nanoGPT's ``get_batch``.

        Returns ``(x, y)``, both ``int64`` of shape ``(batch_size, block_size)``, with
        ``y[:, t] == x[:, t + 1]``: the target of each position is the next token. Window
        starts are uniform over the whole token stream, so windows may cross shard (and
        document) boundaries. ``x`` and ``y`` are views of one ``(batch, block + 1)`` array.
        """
        batch_size = check_positive("batch_size", batch_size)
        block_size = check_positive("block_size", block_size)
        need = 8 * batch_size * (block_size + 2)
        if need > self._memory_checked:  # memory first (it reads /proc: once per size)
            check_size("batch_size", batch_size, item_bytes=8 * (block_size + 2))
            self._memory_checked = need
        rng = np.random.default_rng(rng)
        n = self.n_tokens
        if block_size + 1 > n:
            biggest = max(self.shards, key=lambda s: s.n_tokens)
            raise ParameterError(
                f"block_size {block_size:,} needs windows of {block_size + 1:,} tokens, but the "
                f"shards in {self.folder} hold {n:,} tokens in all (largest shard "
                f"{biggest.bin_path.name}: {biggest.n_tokens:,}); use a smaller block_size or "
                "more data.")
        width = block_size + 1
        ix = rng.integers(0, n - block_size, size=batch_size)
        if len(self.shards) == 1 and hasattr(self.shards[0].source, "windows"):
            # One memory-mapped shard: gather every window in one numpy call.
            out = self.shards[0].source.windows(width)[ix].astype(np.int64)
        else:
            out = np.empty((batch_size, width), dtype=np.int64)
            for r, i in enumerate(ix.tolist()):
                k = bisect_right(self._start_list, i) - 1  # the shard window r starts in
                a = i - self._start_list[k]
                if a + width <= self.shards[k].n_tokens:
                    out[r] = self.shards[k].read(a, a + width)
                else:  # the window crosses into the next shard(s)
                    out[r] = self.read(i, i + width)
        return inputs_and_targets(out)

    def verify(self) -> None:
        """Recompute every shard's checksum (raises FormatError naming the first bad one)."""
        for s in self.shards:
            s.verify()

    def close(self) -> None:
        """Unmap the shards (so a dropped page cache stays dropped)."""
        for s in self.shards:
            s.source.close()

    def __enter__(self) -> ShardSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ShardSet({self.folder}: {len(self.shards)} shards, {len(self):,} documents, "
                f"{self.n_tokens:,} {self.dtype.name} tokens, vocabulary {self.vocab_size:,})")


def open_shards(folder, *, verify: bool = False, tokenizer=None, prefix: str = "shard"
                ) -> ShardSet:
    """Open every shard in ``folder``, checking each index, the set, and the vocabulary.

    ``tokenizer`` (a tokenizer or the path of its saved vocabulary), if given, must be the one
    the shards were written with. ``verify=True`` also recomputes every checksum. A URL
    (``s3://bucket/shards``, ``memory://...``) opens the shard set there
    (:func:`iokit.remote.open_remote_shards`, read with range requests).
    """
    if is_url(folder):
        from iokit.remote import open_remote_shards

        return open_remote_shards(folder, verify=verify, tokenizer=tokenizer, prefix=prefix)
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError(f"{folder}: no such folder of shards; write them with "
                          "iokit.shards.pretokenize.")
    found: dict[int, Path] = {}
    bins: set[int] = set()
    for p in folder.iterdir():
        m = _SHARD_NAME.match(p.name)
        if m and m["prefix"] == prefix:
            (found.__setitem__(int(m["index"]), p) if m["ext"] == "idx"
             else bins.add(int(m["index"])))
    if not found:
        raise FormatError(f"{folder}: no {prefix}-NNNNN.idx files here; write the shards with "
                          "iokit.shards.pretokenize.")
    count = len(found)
    missing = sorted(set(range(count)) - set(found))
    if missing:
        raise FormatError(f"{shard_paths(folder, missing[0], prefix)[1]}: missing (the shards "
                          "must be numbered from 00000 without gaps); write the shards again.")
    orphans = sorted(bins - set(found))
    if orphans:
        raise FormatError(f"{shard_paths(folder, orphans[0], prefix)[0]}: has no .idx beside it: "
                          "the writer was interrupted; write the shards again.")
    shards = [open_shard(shard_paths(folder, i, prefix)[0], verify=verify, expected_index=i)
              for i in range(count)]
    check_shard_set(shards)
    shard_set = ShardSet(shards, folder)
    if tokenizer is not None:
        check_vocabulary(shard_set, tokenizer)
    return shard_set


def check_shard_set(shards: list[Shard]) -> None:
    """Raise FormatError unless ``shards`` (numbered 0, 1, ...) make one set: only the last
    is marked last, and all share dtype, vocabulary and tokenizer."""
    for s in shards[:-1]:
        if s.last:
            last_name = str(shards[-1].bin_path).rsplit("/", 1)[-1]
            raise _bad(s.idx_path, "flags", f"marks shard {s.index} as the last, but "
                       f"{last_name} follows it: shards from different runs are mixed")
    if not shards[-1].last:
        raise _bad(shards[-1].idx_path, "flags", "this is the highest-numbered shard but is not "
                   "marked as the last: the writer was interrupted")
    first = shards[0]
    first_name = str(first.idx_path).rsplit("/", 1)[-1]
    for s in shards[1:]:
        for field, a, b in (("dtype code", s.dtype, first.dtype),
                            ("vocabulary size", s.vocab_size, first.vocab_size),
                            ("tokenizer fingerprint", s.fingerprint, first.fingerprint)):
            if a != b:
                raise _bad(s.idx_path, field, f"{a} differs from {first_name}'s {b}: "
                           "shards from different runs are mixed")


def check_vocabulary(shard_set: ShardSet, tokenizer) -> None:
    """Raise FormatError unless ``tokenizer`` (or a saved vocabulary path) made these shards."""
    where = ""
    if isinstance(tokenizer, (str, Path)):
        where = f"{tokenizer}: "
        tokenizer = load_tokenizer(tokenizer)
    first = shard_set.shards[0]
    same_size = tokenizer.vocab_size == shard_set.vocab_size
    same_print = shard_set.fingerprint in (0, tokenizer.fingerprint)
    if not (same_size and same_print):
        raise FormatError(
            f"{where}this vocabulary ({tokenizer.vocab_size:,} IDs, fingerprint "
            f"{tokenizer.fingerprint:016x}) does not match the shards in {shard_set.folder} "
            f"({first.idx_path.name}: vocabulary size {shard_set.vocab_size:,}, fingerprint "
            f"{shard_set.fingerprint:016x}); load the vocabulary the shards were written with "
            f"({VOCAB_FILE} in that folder) or pretokenize again with this one.")
