"""Codecs: one small interface over none, LZW, zlib and zstd (with or without a dictionary).

A codec has a ``name`` and two functions, ``compress(bytes) -> bytes`` and
``decompress(bytes, max_size=None) -> bytes``; ``decompress(compress(x)) == x`` for every
``x``, the empty one included. ``max_size`` caps the output: data that would inflate to more
(a "decompression bomb": a few kilobytes that expand to gigabytes) raises
:class:`~iokit.errors.FormatError` having allocated at most ``max_size`` plus a little, so the
memory a reader needs is decided by the format's declared sizes, never by the data.

Codecs are named by strings, and :func:`get_codec` turns a name into a codec:

==================  ======================================================================
name                what it is
==================  ======================================================================
``none``            bytes unchanged (the baseline every ratio is measured against)
``lzw``             Lempel-Ziv-Welch, 1984: a short pure-Python teaching implementation
``zlib:1`` … ``:9`` DEFLATE (LZ77 + Huffman, 1993), the format of gzip and PNG
``zstd:1`` … ``:19`` Zstandard (2016), what most data pipelines use today
``zstd-dict:N``     zstd at level N with a dictionary trained on samples of the data
==================  ======================================================================

``zlib`` alone means ``zlib:6`` and ``zstd`` means ``zstd:3`` (each library's default).

A dictionary helps where records are small: a compressor learns the data's common strings as
it goes, and a 1 KiB record ends before it has learned much. A dictionary trained on samples
(:func:`train_dictionary`) gives it that knowledge up front. The dictionary is part of the
compressed data's meaning: whoever decompresses needs the same bytes (``codec.dictionary``).
"""

from __future__ import annotations

import threading
import zlib

import zstandard

from iokit.errors import FormatError, ParameterError

LZW_MAX_BITS = 16  # the LZW code table holds 2**16 = 65,536 strings
DEFAULT_DICT_SIZE = 16 * 1024  # bytes of trained zstd dictionary


class Codec:
    """A named pair of functions: ``compress(bytes) -> bytes`` and ``decompress(bytes)``."""

    name = "none"
    dictionary: bytes | None = None

    def compress(self, data: bytes) -> bytes:
        return bytes(data)

    def decompress(self, data: bytes, max_size: int | None = None) -> bytes:
        if max_size is not None and len(data) > max_size:
            raise _too_big(self.name, max_size)
        return bytes(data)

    def __repr__(self) -> str:
        return f"<codec {self.name}>"


# --------------------------------------------------------------------------- LZW


def lzw_compress(data: bytes, max_bits: int = LZW_MAX_BITS) -> bytes:
    """Compress with LZW: emit the code of the longest known string, learn that string + 1 byte.

    The table starts with the 256 single bytes (codes 0–255). Each step finds the longest
    string ``w`` in the table that the input continues with, writes ``w``'s code, and adds
    ``w`` + the next byte as a new code. Codes are written with as many bits as the largest
    code that could come next needs (8 bits at first, growing to ``max_bits``), packed
    little-end first. When the table is full (``2**max_bits`` codes) it **resets** to the 256
    single bytes and learns afresh, so the codes keep up when the data changes character.
    """
    table_full = 1 << max_bits
    out = bytearray()
    acc = nbits = 0  # bits waiting to be written, and how many there are

    def emit(code: int, next_code: int) -> None:
        nonlocal acc, nbits
        acc |= code << nbits
        nbits += (next_code - 1).bit_length()  # enough bits for any code in the table
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8

    table: dict[tuple[int, int], int] = {}  # (code of a string, next byte) -> code of both
    next_code = 256
    w = None  # the code of the string matched so far
    for byte in data:
        if w is None:
            w = byte
        elif (w, byte) in table:
            w = table[(w, byte)]
        else:
            emit(w, next_code)
            if next_code < table_full:
                table[(w, byte)] = next_code
                next_code += 1
            else:  # full: start again from the 256 single bytes
                table.clear()
                next_code = 256
            w = byte
    if w is not None:
        emit(w, next_code)
    if nbits:
        out.append(acc & 0xFF)  # the last byte, padded with zero bits
    return bytes(out)


def _too_big(name: str, max_size: int) -> FormatError:
    return FormatError(f"{name}: the data inflates to more than the {max_size:,} bytes it may "
                       "hold (a corrupt or hostile block); write the file again.")


def lzw_decompress(data: bytes, max_bits: int = LZW_MAX_BITS,
                   max_size: int | None = None) -> bytes:
    """Undo :func:`lzw_compress`, rebuilding the same table one step behind the compressor.

    With ``max_size``, output beyond it raises FormatError (the table's strings are made of
    the output, so they stay bounded too)."""
    table_full = 1 << max_bits
    total = 0
    strings = [bytes([b]) for b in range(256)]  # code -> the string it stands for
    out = []
    pos = acc = nbits = 0
    next_code = 256  # the compressor's next_code when it wrote the code being read
    prev = None
    while True:
        width = (next_code - 1).bit_length()
        while nbits < width and pos < len(data):
            acc |= data[pos] << nbits
            pos += 1
            nbits += 8
        if nbits < width:
            break  # only the zero padding of the last byte is left
        code = acc & ((1 << width) - 1)
        acc >>= width
        nbits -= width
        if code < len(strings):
            entry = strings[code]
        elif code == len(strings) and prev is not None:
            entry = prev + prev[:1]  # the string the compressor has just learned (cScSc)
        else:
            raise FormatError(f"lzw: code {code} at byte {pos} is not in the table; "
                              "the data is corrupt or was not written by lzw_compress.")
        total += len(entry)
        if max_size is not None and total > max_size:
            raise _too_big("lzw", max_size)
        out.append(entry)
        if prev is not None:
            strings.append(prev + entry[:1])
        if next_code < table_full:
            prev = entry
            next_code += 1
        else:  # the compressor's table was full: it reset after writing this code
            del strings[256:]
            next_code = 256
            prev = None
    if acc:
        raise FormatError("lzw: stray bits at the end; the data is truncated or corrupt.")
    return b"".join(out)


class LZWCodec(Codec):
    """LZW in pure Python: slow (a few MB/s), but short enough to read in one sitting."""

    def __init__(self, max_bits: int = LZW_MAX_BITS):
        if not 9 <= max_bits <= 24:
            raise ParameterError(f"lzw max_bits must be 9..24, got {max_bits!r}.")
        self.max_bits = max_bits
        self.name = "lzw" if max_bits == LZW_MAX_BITS else f"lzw:{max_bits}"

    def compress(self, data: bytes) -> bytes:
        return lzw_compress(data, self.max_bits)

    def decompress(self, data: bytes, max_size: int | None = None) -> bytes:
        return lzw_decompress(data, self.max_bits, max_size)


# --------------------------------------------------------------------------- zlib, zstd


class ZlibCodec(Codec):
    """zlib (DEFLATE) at ``level`` 1 (fast) … 9 (small)."""

    def __init__(self, level: int = 6):
        self.level = _level("zlib", level, 1, 9)
        self.name = f"zlib:{self.level}"

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    def decompress(self, data: bytes, max_size: int | None = None) -> bytes:
        try:
            if max_size is None:
                return zlib.decompress(data)
            d = zlib.decompressobj()
            out = d.decompress(data, max_size + 1)  # never more than max_size + 1 bytes
        except zlib.error as exc:
            raise FormatError(f"{self.name}: cannot decompress: {exc}.") from None
        if len(out) > max_size:
            raise _too_big(self.name, max_size)
        if not d.eof:
            raise FormatError(f"{self.name}: cannot decompress: the stream is truncated.")
        return out


class ZstdCodec(Codec):
    """Zstandard at ``level`` 1 (fast) … 19 (small), optionally with a trained dictionary.

    Compressor objects are made once per thread (making one per call costs more than
    compressing a small block) and reused.
    """

    def __init__(self, level: int = 3, dictionary: bytes | None = None):
        import zstandard  # noqa: F401  (fail here, not on first use, if it is missing)

        self.level = _level("zstd", level, 1, 19)
        self.dictionary = bytes(dictionary) if dictionary is not None else None
        self.name = f"zstd-dict:{self.level}" if dictionary is not None else f"zstd:{self.level}"
        self._local = threading.local()

    def __reduce__(self):  # picklable for worker processes: rebuild from level and dictionary
        return (ZstdCodec, (self.level, self.dictionary))

    def _pair(self):
        pair = getattr(self._local, "pair", None)
        if pair is None:
            d = zstandard.ZstdCompressionDict(self.dictionary) if self.dictionary else None
            pair = (zstandard.ZstdCompressor(level=self.level, dict_data=d),
                    zstandard.ZstdDecompressor(dict_data=d))
            self._local.pair = pair
        return pair

    def compress(self, data: bytes) -> bytes:
        return self._pair()[0].compress(data)

    def decompress(self, data: bytes, max_size: int | None = None) -> bytes:
        dctx = self._pair()[1]
        try:
            if max_size is None:
                return dctx.decompress(data)
            # A frame that declares its size is decompressed into a buffer of that size:
            # check the declaration first. One that does not is read at most max_size + 1.
            declared = zstandard.get_frame_parameters(data).content_size
            if declared == zstandard.CONTENTSIZE_UNKNOWN:
                with dctx.stream_reader(data) as reader:
                    out = reader.read(max_size + 1)
            elif declared > max_size:
                raise _too_big(self.name, max_size)
            else:
                out = dctx.decompress(data)
        except zstandard.ZstdError as exc:
            raise FormatError(f"{self.name}: cannot decompress: {exc}.") from None
        if len(out) > max_size:
            raise _too_big(self.name, max_size)
        return out


def train_dictionary(samples, size: int = DEFAULT_DICT_SIZE) -> bytes:
    """A zstd dictionary of ``size`` bytes trained on ``samples`` (a list of bytes).

    Train on pieces shaped like what will be compressed (records, blocks), a few hundred or
    more; zstd's trainer wants the samples to total several times ``size``.
    """
    samples = [bytes(s) for s in samples if len(s)]
    total = sum(map(len, samples))
    try:
        return zstandard.train_dictionary(size, samples).as_bytes()
    except zstandard.ZstdError as exc:
        raise ParameterError(
            f"cannot train a {size:,}-byte zstd dictionary on {len(samples):,} samples "
            f"({total:,} bytes): {exc}. Give it more samples (hundreds, totalling at least "
            "10× the dictionary size) or ask for a smaller dictionary.") from None


# --------------------------------------------------------------------------- by name

NAMES = "none, lzw, zlib:1..9, zstd:1..19, zstd-dict:1..19"


def codec_names() -> list[str]:
    """The codecs a notebook compares: one or a few levels of each family."""
    return ["none", "lzw", "zlib:1", "zlib:6", "zlib:9", "zstd:1", "zstd:3", "zstd:9",
            "zstd:19"]


def _level(family: str, level, lo: int, hi: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int) or not lo <= level <= hi:
        raise ParameterError(f"{family} level must be a whole number {lo}..{hi}, "
                             f"got {level!r}. Valid codecs: {NAMES}.")
    return level


def get_codec(name: str | Codec, *, dictionary: bytes | None = None, samples=None,
              dict_size: int = DEFAULT_DICT_SIZE) -> Codec:
    """The codec called ``name`` (``"zstd:3"``, ``"zlib:6"``, ``"lzw"``, ``"none"``, ...).

    ``"zstd-dict:N"`` needs its dictionary: pass the bytes (``dictionary=``, e.g. read back
    from a file's header) or ``samples=`` to train one of ``dict_size`` bytes now.
    """
    if isinstance(name, Codec):
        return name
    family, _, level = str(name).partition(":")
    if level and not level.isdigit():
        raise ParameterError(f"unknown codec {name!r}; the level after ':' must be a whole "
                             f"number. Valid codecs: {NAMES}.")
    lvl = int(level) if level else None
    if family == "none" and lvl is None:
        return Codec()
    if family == "lzw":
        return LZWCodec(LZW_MAX_BITS if lvl is None else lvl)
    if family == "zlib":
        return ZlibCodec(6 if lvl is None else lvl)
    if family == "zstd":
        return ZstdCodec(3 if lvl is None else lvl)
    if family == "zstd-dict":
        if dictionary is None and samples is None:
            raise ParameterError(f"codec {name!r} needs a dictionary: pass dictionary=<bytes> "
                                 "or samples=[...] to train one.")
        if dictionary is None:
            dictionary = train_dictionary(samples, dict_size)
        return ZstdCodec(3 if lvl is None else lvl, dictionary)
    raise ParameterError(f"unknown codec {name!r}; choose one of: {NAMES}.")
