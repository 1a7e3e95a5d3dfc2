"""Measuring codecs: ratio and speed, block size against ratio, and reads from slow storage.

The functions notebook 03 and ``iokit bench`` time. Each takes the bytes (or files) to work on
and returns plain dataclasses; plotting lives in :mod:`iokit.lab.plots`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iokit.atomic import make_folder
from iokit.blocks import DEFAULT_BLOCK_BYTES, BlockReader, BlockWriter, write_blocks
from iokit.codecs import get_codec, train_dictionary
from iokit.corpus import iter_documents
from iokit.costs import Check, CodecProfile, access_seconds, predict_read_seconds
from iokit.shards import choose_dtype
from iokit.storage import SimulatedStore
from iokit.timing import MB, Timing, format_seconds, measure, stopwatch
from iokit.tokenize import WordTokenizer, encode_corpus


@dataclass
class CodecResult:
    """One codec on one piece of data: sizes and timings of compress and decompress."""

    name: str
    raw_bytes: int
    stored_bytes: int
    compress: Timing
    decompress: Timing

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 1.0

    @property
    def compress_mb_s(self) -> float:
        return self.raw_bytes / self.compress.median / MB

    @property
    def decompress_mb_s(self) -> float:
        return self.raw_bytes / self.decompress.median / MB

    def __str__(self) -> str:
        return (f"{self.name:<10} ratio {self.ratio:5.2f}   compress {self.compress_mb_s:8.1f} MB/s"
                f"   decompress {self.decompress_mb_s:8.1f} MB/s   ({self.raw_bytes:,} bytes)")


SLOW_RUN_S = 0.25  # compressions slower than this are timed once (after the round-trip check)


def measure_codec(name, data: bytes, *, repeat: int = 3, warmup: int = 1,
                  dictionary: bytes | None = None) -> CodecResult:
    """Compress and decompress ``data`` with codec ``name``, timed; checks the round trip.

    Slow compressions (zstd:19, pure-Python LZW: a first run over ``SLOW_RUN_S``) are timed
    once more rather than ``repeat`` times, so the comparison stays quick.
    """
    codec = get_codec(name, dictionary=dictionary)
    with stopwatch() as sw:
        packed = codec.compress(data)
    first = sw.seconds
    if codec.decompress(packed) != data:
        raise AssertionError(f"{codec.name}: round trip changed the data")  # a bug, not input
    if first > SLOW_RUN_S:  # a run this long is its own fair measurement: time it once more
        repeat, warmup = 1, 0
    ct = measure(lambda: codec.compress(data), repeat=repeat, warmup=warmup, nbytes=len(data),
                 label=f"{codec.name} compress")
    dt = measure(lambda: codec.decompress(packed), repeat=repeat, warmup=warmup,
                 nbytes=len(data), label=f"{codec.name} decompress")
    return CodecResult(codec.name, len(data), len(packed), ct, dt)


def measure_codecs(names, data: bytes, *, slow_sample: int = 256 * 1024, repeat: int = 3):
    """Each codec on ``data``; pure-Python LZW (a few MB/s) only on its first ``slow_sample``
    bytes, once, so the whole comparison stays quick. Yields results as they are measured."""
    for name in names:
        if name.startswith("lzw"):
            yield measure_codec(name, data[:slow_sample], repeat=1, warmup=0)
        else:
            yield measure_codec(name, data, repeat=repeat)


def pareto_front(results, speed: str = "decompress_mb_s") -> list:
    """The results no other beats on both ratio and speed, fastest first."""
    front = []
    for r in sorted(results, key=lambda r: (-getattr(r, speed), -r.ratio)):
        if not front or r.ratio > front[-1].ratio:
            front.append(r)
    return front


# --------------------------------------------------------------------------- block size


@dataclass(frozen=True)
class BlockBytesPoint:
    """Ratio of one codec at one block size (dictionary bytes not counted)."""

    codec: str
    block_bytes: int
    raw_bytes: int
    stored_bytes: int

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes


def dictionary_samples(data: bytes, piece: int = 4096) -> list[bytes]:
    """``data`` cut into ``piece``-byte samples for the dictionary trainer."""
    return [data[i:i + piece] for i in range(0, len(data), piece)]


def block_bytes_sweep(data: bytes, block_bytes, *, codec: str = "zstd:3",
                     train_on: bytes | None = None, dict_size: int = 16 * 1024):
    """Ratio of ``codec`` at each block size, without and with a trained dictionary.

    The dictionary is trained on ``train_on`` (other bytes than ``data``, as in practice: it is
    trained once on a sample and then used for new data), in pieces of 4 KiB. Yields points.
    """
    level = codec.partition(":")[2] or "3"
    dictionary = None
    if train_on is not None:
        dictionary = train_dictionary(dictionary_samples(train_on), dict_size)
    for bs in block_bytes:
        for name, d in [(codec, None), (f"zstd-dict:{level}", dictionary)]:
            if name.startswith("zstd-dict") and d is None:
                continue
            buf = io.BytesIO()
            w = BlockWriter(buf, name, bs, dictionary=d)
            w.write(data)
            table = w.close()
            yield BlockBytesPoint(name, bs, len(data), table.compressed_size)


# --------------------------------------------------------------------------- reads


def write_codec_files(folder, data: bytes, names, block_bytes: int = DEFAULT_BLOCK_BYTES,
                      dictionary: bytes | None = None) -> dict[str, Path]:
    """``data`` as one block file per codec in ``folder``; returns {codec name: path}."""
    folder = make_folder(folder, "the folder for the block files")
    paths = {}
    for name in names:
        path = folder / f"blocks-{name.replace(':', '-')}.blk"
        table = write_blocks(path, data, name, block_bytes, dictionary=dictionary)
        paths[table.codec] = path
    return paths


def stream_seconds(path, storage=None, *, prefetch: bool = False) -> float:
    """Seconds to read a block file start to end (one request per block), decompressing."""
    with stopwatch() as sw, BlockReader(path, storage=storage) as r:
        for _ in r.iter_blocks(prefetch=prefetch):
            pass
    return sw.seconds


def profile_codecs(paths: dict, *, repeat: int = 5, min_run_s: float = 0.02
                   ) -> list[CodecProfile]:
    """Ratio and decode speed of each block file, read warm from the local disk.

    The decode speed is what the reader does per raw byte besides the transfer: checksum,
    decompress (for ``none``: checksum and copy). Each file is read once first (so the page
    cache holds it and the transfer costs next to nothing, and to learn how many passes make a
    run last ``min_run_s``); then the codecs take turns, ``repeat`` runs each, so a busy moment
    on a shared machine slows them all alike. The fastest run gives the speed: the same
    statistic :func:`compare_reads` takes of its reads, so a busy moment on either side does
    not pass for a property of the codec.
    """
    passes, sizes, ratios = {}, {}, {}
    for name, path in paths.items():
        with BlockReader(path) as r:
            sizes[name], ratios[name] = r.size, r.table.ratio
        first = stream_seconds(path)
        passes[name] = max(1, int(min_run_s / max(first, 1e-6)) + 1)
    runs: dict = {name: [] for name in paths}
    for _ in range(repeat):
        for name, path in paths.items():
            with stopwatch() as sw:
                for _ in range(passes[name]):
                    stream_seconds(path)
            runs[name].append(sw.seconds / passes[name])
    return [CodecProfile(name, ratios[name], sizes[name] / Timing(runs[name]).min)
            for name in paths]


def corpus_text(corpus, limit: int | None = None, *, skip: int = 0) -> bytes:
    """The corpus's document texts as UTF-8, one per line: bytes ``skip`` to ``skip + limit``.

    This is the "raw text" a compressor sees (the JSONL wrapping left out).
    """
    out = bytearray()
    want = None if limit is None else skip + limit
    for doc in iter_documents(corpus):
        out += doc.text.encode("utf-8") + b"\n"
        if want is not None and len(out) >= want:
            break
    return bytes(out[skip:want])


# --------------------------------------------------------------------------- break-even


@dataclass(frozen=True)
class ReadComparison:
    """Predicted and measured seconds per codec for one storage, and each side's winner."""

    storage: str
    bandwidth: float
    latency: float
    predicted: dict
    measured: dict
    request_overhead_s: float = 0.0  # calibrated per-request cost beyond the preset's latency
    prefetch: bool = False

    @property
    def predicted_winner(self) -> str:
        return min(self.predicted, key=self.predicted.get)

    @property
    def measured_winner(self) -> str:
        return min(self.measured, key=self.measured.get)

    def contenders(self, tolerance: float = 0.05) -> list[str]:
        """Codecs the model puts within ``tolerance`` of the predicted best (a near-tie)."""
        best = self.predicted[self.predicted_winner]
        return [k for k, v in self.predicted.items() if v <= best * (1 + tolerance)]

    def agrees(self, tolerance: float = 0.05) -> bool:
        """Whether the measured winner is one the model predicted to win or nearly tie."""
        return self.measured_winner in self.contenders(tolerance)

    def checks(self) -> list[Check]:
        """Each codec's read as an out-of-sample check: the model's inputs were measured on
        other reads (the codecs read warm from local disk; the store's own small requests)."""
        how = "overlapped" if self.prefetch else "serial"
        return [Check(f"codec read {self.storage} {name} ({how})",
                      "decode speed from warm local reads, store overhead "
                      f"{format_seconds(self.request_overhead_s)}/request from 4 KiB reads",
                      f"{name} block file read from simulated {self.storage}",
                      self.predicted[name], self.measured[name])
                for name in self.predicted]


def request_overhead(store, path, requests: int = 16, size: int = 4096) -> float:
    """Seconds each request of ``store`` costs beyond what its preset models (the sleep's
    wake-up, the read, the link's lock): ``requests`` sequential reads of ``size`` bytes from
    ``path``, timed, less the modelled latency and transfer, per request (>= 0)."""
    p = store.preset
    total = min(requests * size, store.size(path))
    n = max(1, -(-total // size))
    best = math.inf
    for _ in range(3):
        store._ends.clear()  # the first read seeks
        with stopwatch() as sw:
            for i in range(n):
                store.read(path, i * size, size)
        best = min(best, sw.seconds)
    modelled = access_seconds(p, n) + total / min(p.stream_bandwidth, p.aggregate_bandwidth)
    return max(best - modelled, 0.0) / n


def compare_reads(paths: dict, profiles, preset, *, repeat: int = 1,
                  prefetch: bool = False) -> ReadComparison:
    """Read each codec's block file from a simulated store with ``preset``: predicted vs measured.

    One request per block: the first one pays the preset's latency, the ones after it (each
    continues where the last ended) its sequential latency (an HDD does not seek between
    them), and each the store's own per-request overhead, measured first on small reads
    (:func:`request_overhead`).
    """
    store = SimulatedStore(preset)
    p = store.preset
    bandwidth = min(p.stream_bandwidth, p.aggregate_bandwidth)
    try:
        overhead = request_overhead(store, next(iter(paths.values())))
        predicted, measured = {}, {}
        for prof in profiles:
            with BlockReader(paths[prof.name]) as r:
                n, blocks = r.size, r.table.n_blocks
            latency = access_seconds(p, blocks) / max(blocks, 1) + overhead
            predicted[prof.name] = predict_read_seconds(
                [prof], n, bandwidth, overlap=prefetch, requests=blocks,
                latency=latency)[prof.name]
            runs = []
            for _ in range(repeat):
                store._ends.clear()  # each read starts with a seek, as the model says
                runs.append(stream_seconds(paths[prof.name], store, prefetch=prefetch))
            measured[prof.name] = min(runs)
    finally:
        store.close()
    return ReadComparison(p.name, bandwidth, p.latency, predicted, measured, overhead, prefetch)


def token_bytes(corpus, text: bytes, *, vocab_size: int = 32_768,
                train_bytes: int = 16 << 20) -> bytes:
    """``text`` (documents one per line, as :func:`corpus_text` gives) as word-level token IDs,
    each document ending with the end-of-document ID, stored as the shards store them
    (little-endian ``uint16`` when the vocabulary fits).

    The vocabulary is trained, as notebook 02 trains it, on the corpus (its first
    ``train_bytes`` of text, so large corpora stay quick).
    """
    train = corpus_text(corpus, train_bytes).decode("utf-8").splitlines()
    tok = WordTokenizer.train(train, vocab_size)
    docs = text.decode("utf-8", errors="ignore").splitlines()
    dtype = choose_dtype(tok.vocab_size)
    return b"".join(a.astype(dtype).tobytes() for a in encode_corpus(docs, tok)) \
        if docs else np.empty(0, dtype).tobytes()
