"""Cost models: predict a technique's time before measuring it, then fit the model to data.

The per-request model is the first one the notebooks use: every read or write call pays a
fixed overhead (a system call, a seek, a network round trip) plus its bytes at the storage's
bandwidth::

    time = calls × overhead + bytes / bandwidth,   calls = ceil(bytes / chunk)

so throughput at chunk size c is ``c / (overhead + c / bandwidth)``: small chunks are
overhead-bound, large ones bandwidth-bound, and the knee sits at ``c = overhead × bandwidth``.

The others follow the notebooks: the read → process → write loop (calls and bytes per stage),
epochs from text or shards, window sampling, codecs on slow storage (seeks only on random
requests), threads under the GIL, Amdahl's law capped at the cores, the pipeline's busy
fraction, the cluster of N workers (per-task cost, shared storage's bandwidth), and the batch
job that loads a model per task, per worker or once (:class:`BatchCostModel`). A model is
calibrated on some runs and checked on others: :class:`Check` records which were which.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from iokit.errors import ParameterError
from iokit.shards import choose_dtype
from iokit.storage import get_preset
from iokit.timing import MB, format_bytes, format_error, format_seconds, format_value


@dataclass(frozen=True)
class RequestCostModel:
    """time = calls × overhead_s + bytes / bandwidth (bandwidth in bytes per second)."""

    overhead_s: float
    bandwidth: float

    def seconds(self, nbytes: float, chunk: float) -> float:
        """Predicted seconds to move ``nbytes`` in requests of ``chunk`` bytes."""
        return math.ceil(nbytes / chunk) * self.overhead_s + nbytes / self.bandwidth

    def throughput(self, chunk) -> np.ndarray:
        """Predicted bytes per second at chunk size(s) ``chunk`` (large transfers)."""
        chunk = np.asarray(chunk, dtype=float)
        return chunk / (self.overhead_s + chunk / self.bandwidth)

    @property
    def knee(self) -> float:
        """The chunk size (bytes) at which overhead and transfer time are equal."""
        return self.overhead_s * self.bandwidth

    def __str__(self) -> str:
        return (f"overhead {format_seconds(self.overhead_s)} per call, "
                f"bandwidth {self.bandwidth / MB:,.0f} MB/s, "
                f"knee at {format_bytes(self.knee)}")


def fit_request_model(calls, nbytes, seconds) -> RequestCostModel:
    """Fit overhead and bandwidth to measured runs (least squares on relative error).

    ``calls``, ``nbytes`` and ``seconds`` are one entry per measured run. Both parameters are
    kept non-negative; a parameter the data cannot see (say, overhead when every chunk is huge)
    comes out as zero overhead or infinite bandwidth.
    """
    calls = np.asarray(calls, dtype=float)
    nbytes = np.asarray(nbytes, dtype=float)
    seconds = np.asarray(seconds, dtype=float)
    if not (len(calls) == len(nbytes) == len(seconds)) or len(seconds) < 2:
        raise ParameterError("a request cost model needs at least two runs, with calls, bytes "
                             "and seconds for each; measure more chunk sizes.")
    # Divide each equation by its time, so a 1 ms run counts as much as a 10 s one.
    a = np.column_stack([calls, nbytes]) / seconds[:, None]
    b = np.ones_like(seconds)
    best = None
    for cols in ([0, 1], [0], [1]):  # a tiny non-negative least squares: try each support
        coef, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
        if np.any(coef < 0):
            continue
        full = np.zeros(2)
        full[cols] = coef
        err = float(np.sum((a @ full - b) ** 2))
        if best is None or err < best[0]:
            best = (err, full)
    overhead, inv_bw = best[1]
    return RequestCostModel(float(overhead), float(1 / inv_bw) if inv_bw > 0 else math.inf)


# --------------------------------------------------------------------------- checks
#
# A cost model earns trust only on runs it was not fitted to. Every model of the kit is
# calibrated on some settings (a chunk size, a worker count, a sample of the corpus) and
# then checked on others; a :class:`Check` records which were which.


@dataclass(frozen=True)
class Check:
    """One out-of-sample comparison: a cost model calibrated on some runs, checked on another.

    ``kind`` is ``"model"`` when the parameters are physical quantities measured apart (a
    per-call cost, a bandwidth) or ``"fit"`` when they are fitted to timings of the same
    technique at other settings.
    """

    name: str
    calibrated_on: str
    checked_on: str
    predicted: float  # seconds (or the unit in ``unit``)
    measured: float
    kind: str = "model"
    unit: str = "s"

    @property
    def rel_error(self) -> float:
        """(predicted − measured) / measured: −0.2 means the model said 20 % too little."""
        return (self.predicted - self.measured) / self.measured if self.measured else math.inf

    def __str__(self) -> str:
        return (f"{self.name} ({self.kind}): calibrated on {self.calibrated_on}; checked on "
                f"{self.checked_on}: predicted {format_value(self.predicted, self.unit)}, measured "
                f"{format_value(self.measured, self.unit)} ({format_error(self.rel_error)})")


def median_abs_error(checks) -> float:
    """The median of ``|rel_error|`` over ``checks`` (nan for none)."""
    errors = sorted(abs(c.rel_error) for c in checks)
    if not errors:
        return math.nan
    mid = len(errors) // 2
    return errors[mid] if len(errors) % 2 else (errors[mid - 1] + errors[mid]) / 2


# --------------------------------------------------------------------------- notebook 01
#
# The read → process → write loop prices each stage's system calls and bytes apart:
#
#     read    = read calls × per-call cost  + bytes in  / read bandwidth
#     process = bytes in / processing rate
#     write   = write calls × per-call cost + bytes out / write bandwidth
#
# The naive loop makes one read call per byte (readline on an unbuffered file) and one write
# per document, so its read stage is all per-call cost and its write stage mostly bytes (each
# document's few KB copied into the page cache); the chunked loop makes a handful of calls,
# so both of its I/O stages are bytes over the bandwidth of the store (the page cache when the
# file is warm, the disk when it is cold).


@dataclass(frozen=True)
class LoopCostModel:
    """The loop's three stages: :class:`RequestCostModel` for reads and for writes, and the
    processing rate (JSONL bytes per second parsed, tokenized and formatted)."""

    read: RequestCostModel
    write: RequestCostModel
    process_bps: float
    out_per_in: float = 1.0  # output bytes per input byte (token lines against JSONL)

    def stage_seconds(self, bytes_in: float, read_calls: float, write_calls: float,
                      bytes_out: float | None = None) -> dict[str, float]:
        """Predicted seconds of each stage for a loop that makes these calls."""
        out = self.out_per_in * bytes_in if bytes_out is None else bytes_out
        return {"read": read_calls * self.read.overhead_s + bytes_in / self.read.bandwidth,
                "process": bytes_in / self.process_bps,
                "write": write_calls * self.write.overhead_s + out / self.write.bandwidth}

    def __str__(self) -> str:
        return (f"read: {self.read}; process {self.process_bps / MB:,.1f} MB/s; "
                f"write: {self.write}")


# --------------------------------------------------------------------------- notebook 02
#
# Tokenize on the fly and every epoch pays the tokenizer; tokenize once and every epoch only
# reads the stored IDs, after a one-off preprocessing cost P:
#
#     on the fly:  k epochs cost k × R          (R = read + tokenize the text)
#     pretokenized: k epochs cost P + k × S     (S = read the shards)
#
# so pretokenizing pays from k > P / (R - S) epochs on. Stored IDs take itemsize bytes each:
# 2 (uint16) when the vocabulary has at most 65,536 IDs, else 4 (uint32).


@dataclass(frozen=True)
class EpochCostModel:
    """Cumulative seconds of k epochs on the fly (k × R) or from shards (P + k × S)."""

    preprocess_s: float  # P: tokenize once and write the shards
    raw_epoch_s: float  # R: one epoch from text
    shard_epoch_s: float  # S: one epoch from shards

    def on_the_fly(self, epochs) -> np.ndarray:
        return np.asarray(epochs, dtype=float) * self.raw_epoch_s

    def pretokenized(self, epochs) -> np.ndarray:
        return self.preprocess_s + np.asarray(epochs, dtype=float) * self.shard_epoch_s

    @property
    def break_even(self) -> float:
        """Epochs after which pretokenizing has paid for itself (inf if it never does)."""
        saved = self.raw_epoch_s - self.shard_epoch_s
        return self.preprocess_s / saved if saved > 0 else math.inf

    @property
    def epochs_to_pay(self) -> int:
        """The first whole number of epochs at which pretokenizing is cheaper in total."""
        be = self.break_even
        return math.floor(be) + 1 if math.isfinite(be) else -1

    def __str__(self) -> str:
        return (f"preprocess once {self.preprocess_s:.3g} s; epoch from text "
                f"{self.raw_epoch_s:.3g} s, from shards {self.shard_epoch_s:.3g} s; "
                f"break-even after {self.break_even:.2f} epochs")


def token_itemsize(vocab_size: int) -> int:
    """Bytes per stored token ID, as the shard writer chooses them (:func:`choose_dtype`)."""
    return choose_dtype(vocab_size).itemsize


def shard_bytes(n_tokens: int, vocab_size: int) -> int:
    """Bytes of token data on disk for ``n_tokens`` IDs of a ``vocab_size`` vocabulary."""
    return int(n_tokens) * token_itemsize(vocab_size)


@dataclass(frozen=True)
class SamplingCostModel:
    """time per batch = call_s + batch × window_s + bytes / bandwidth.

    A batch call pays a fixed overhead (drawing random starts, Python), every window a small one
    (finding its shard, one gather), and every byte its copy and widening to int64.
    """

    call_s: float
    window_s: float
    bandwidth: float  # stored bytes per second

    def seconds(self, batch_size, block_size, itemsize: int = 2):
        b = np.asarray(batch_size, dtype=float)
        nbytes = b * (np.asarray(block_size, dtype=float) + 1) * itemsize
        return self.call_s + b * self.window_s + nbytes / self.bandwidth

    def tokens_per_s(self, batch_size, block_size, itemsize: int = 2):
        return (np.asarray(batch_size, dtype=float) * np.asarray(block_size, dtype=float)
                / self.seconds(batch_size, block_size, itemsize))

    def __str__(self) -> str:
        return (f"{self.call_s * 1e6:,.1f} µs per batch + {self.window_s * 1e6:,.2f} µs per "
                f"window + bytes at {self.bandwidth / MB:,.0f} MB/s")


def fit_sampling_model(batch_sizes, block_sizes, seconds_per_batch, itemsize: int = 2
                       ) -> SamplingCostModel:
    """Fit the three terms to measured batches (non-negative, relative error)."""
    b = np.asarray(batch_sizes, dtype=float)
    nbytes = b * (np.asarray(block_sizes, dtype=float) + 1) * itemsize
    t = np.asarray(seconds_per_batch, dtype=float)
    if not (len(b) == len(nbytes) == len(t)) or len(t) < 3:
        raise ParameterError("the sampling cost model needs at least three measured batch "
                             "shapes; measure more batch and block sizes.")
    a = np.column_stack([np.ones_like(b), b, nbytes]) / t[:, None]
    rhs = np.ones_like(t)
    best = None
    for cols in ([0, 1, 2], [0, 2], [1, 2], [0, 1], [2], [0], [1]):
        coef, *_ = np.linalg.lstsq(a[:, cols], rhs, rcond=None)
        if np.any(coef < 0):
            continue
        full = np.zeros(3)
        full[cols] = coef
        err = float(np.sum((a @ full - rhs) ** 2))
        if best is None or err < best[0]:
            best = (err, full)
    call_s, window_s, inv_bw = best[1]
    return SamplingCostModel(float(call_s), float(window_s),
                             float(1 / inv_bw) if inv_bw > 0 else math.inf)


# --------------------------------------------------------------------------- compression


@dataclass(frozen=True)
class CodecProfile:
    """What the break-even model needs to know about a codec, measured on the data at hand.

    ``ratio`` is raw bytes per stored byte; ``decode_bps`` is raw bytes per second the reader
    turns stored bytes back into data (checksum + decompression; for ``none``, checksum + copy).
    """

    name: str
    ratio: float
    decode_bps: float


def read_seconds(nbytes: float, bandwidth: float, ratio: float = 1.0,
                 decode_bps: float = math.inf, *, overlap: bool = False, requests: int = 0,
                 latency: float = 0.0) -> float:
    """Predicted seconds to read ``nbytes`` of data stored compressed ``ratio``:1.

    The transfer moves ``nbytes / ratio`` stored bytes at ``bandwidth`` (plus ``requests`` ×
    ``latency``); decoding takes ``nbytes / decode_bps``. Serially the two add up::
        S / (r·B) + S / D

    and when the next block is fetched while the current one decompresses, the slower one
    sets the pace: ``max(S / (r·B), S / D)``, plus one block of the faster stage that cannot
    overlap (the first fetch, or the last decode): with ``requests`` = n blocks, a pipeline of
    two stages takes ``n × max(a, b) + min(a, b)`` for per-block times a and b. Uncompressed
    (r = 1, D = ∞) both are S / B.
    """
    transfer = requests * latency + nbytes / ratio / bandwidth
    decode = nbytes / decode_bps
    if not overlap:
        return transfer + decode
    fill = min(transfer, decode) / requests if requests > 0 else 0.0
    return max(transfer, decode) + fill


def access_seconds(preset, requests: int, *, sequential: bool = True) -> float:
    """Seconds of per-request latency for ``requests`` reads of one file from ``preset``.

    A random read pays the preset's ``latency`` (an HDD's seek and rotation, a round trip); a
    read that starts where the previous one ended pays its ``sequential_latency`` (an HDD's
    head is already there; a network store still pays its round trip). A sequential scan pays
    the full latency once, for its first request.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    if requests <= 0:
        return 0.0
    if not sequential:
        return requests * p.latency
    return p.latency + (requests - 1) * p.request_latency(sequential=True)


def break_even_bandwidth(ratio: float, decode_bps: float, *, overlap: bool = False,
                         plain_decode_bps: float = math.inf) -> float:
    """The storage bandwidth (bytes/s) below which the codec reads faster than no codec.

    Serially, S/B + S/D0 > S/(rB) + S/D  ⇔  B < (1 − 1/r) / (1/D − 1/D0): with D0 = ∞ (an
    uncompressed read costs nothing but its transfer), B < D·(1 − 1/r). Overlapped, a
    compressed read can never beat the decoder, so the codec pays while B < D (for r > 1).
    """
    if ratio <= 1:
        return 0.0
    if overlap:
        return decode_bps
    extra = 1 / decode_bps - 1 / plain_decode_bps
    return math.inf if extra <= 0 else (1 - 1 / ratio) / extra


def predict_read_seconds(profiles, nbytes: float, bandwidth: float, *, overlap: bool = False,
                         requests: int = 0, latency: float = 0.0) -> dict[str, float]:
    """Predicted seconds to read ``nbytes`` with each codec profile, by codec name."""
    return {p.name: read_seconds(nbytes, bandwidth, p.ratio, p.decode_bps, overlap=overlap,
                                 requests=requests, latency=latency) for p in profiles}


def predict_winner(profiles, bandwidth: float, nbytes: float = 1e9, **kwargs) -> str:
    """The codec that reads fastest at ``bandwidth`` (bytes/s), by the break-even model."""
    times = predict_read_seconds(profiles, nbytes, bandwidth, **kwargs)
    return min(times, key=times.get)


# --------------------------------------------------------------------------- parallel work


@dataclass(frozen=True)
class ThreadedReadModel:
    """n concurrent readers of c-byte requests from a store with per-request latency.

    One stream moves ``c / (latency + c / stream_bandwidth)`` bytes per second; n streams
    overlap their waits, so together they move n times that, until the shared link's
    ``aggregate_bandwidth`` caps them::
        throughput(n, c) = min(n × c / (latency + c / stream_bandwidth), aggregate_bandwidth)
    """

    latency: float
    stream_bandwidth: float
    aggregate_bandwidth: float

    @classmethod
    def from_preset(cls, preset) -> ThreadedReadModel:
        """The model of a storage preset (a name such as ``"object-store"`` or a preset)."""
        p = get_preset(preset) if isinstance(preset, str) else preset
        return cls(p.latency, p.stream_bandwidth, p.aggregate_bandwidth)

    def per_stream(self, chunk) -> np.ndarray:
        """Bytes per second one reader gets with ``chunk``-byte requests."""
        chunk = np.asarray(chunk, dtype=float)
        return chunk / (self.latency + chunk / self.stream_bandwidth)

    def throughput(self, workers, chunk) -> np.ndarray:
        """Bytes per second ``workers`` concurrent readers get together."""
        workers = np.asarray(workers, dtype=float)
        return np.minimum(workers * self.per_stream(chunk), self.aggregate_bandwidth)

    def seconds(self, requests: int, workers: int, chunk: float) -> float:
        """Predicted seconds for ``requests`` reads of ``chunk`` bytes by ``workers`` readers."""
        return float(requests * chunk / self.throughput(workers, chunk))

    def best_workers(self, chunk: float) -> int:
        """The fewest readers that reach the aggregate bandwidth (more only add overhead)."""
        return max(1, math.ceil(self.aggregate_bandwidth / float(self.per_stream(chunk)) - 1e-9))

    def __str__(self) -> str:
        return (f"latency {format_seconds(self.latency)}, "
                f"{self.stream_bandwidth / MB:,.0f} MB/s per stream, "
                f"{self.aggregate_bandwidth / MB:,.0f} MB/s in all")


def amdahl_speedup(workers, serial_fraction: float, cores: int | None = None) -> np.ndarray:
    """Amdahl's law: the speedup of ``workers`` workers when a fraction of the work is serial.

    ``S(n) = 1 / (s + (1 - s) / n)``: however many workers, the speedup stays below ``1 / s``.
    With ``cores`` given, workers beyond the core count only take turns on the cores, so the
    parallel part divides by ``min(n, cores)``: ``S(n) = 1 / (s + (1 - s) / min(n, cores))``.
    """
    workers = np.asarray(workers, dtype=float)
    if cores is not None:
        workers = np.minimum(workers, cores)
    return 1.0 / (serial_fraction + (1.0 - serial_fraction) / workers)


def fit_serial_fraction(workers, speedups, cores: int | None = None) -> float:
    """The serial fraction ``s`` for which Amdahl's law best fits measured speedups.

    ``1/S = s + (1 - s)/n`` is linear in ``s``: ``1/S - 1/n = s (1 - 1/n)``, so least squares
    gives ``s`` in closed form. Runs with one worker carry no information and are ignored; the
    result is clipped to [0, 1] (a superlinear speedup fits as 0). With ``cores`` given, only
    runs with at most ``cores`` workers are used: beyond the cores, workers take turns and the
    law (capped at ``min(n, cores)``) has nothing more to learn from them, only to predict.
    """
    n = np.asarray(workers, dtype=float)
    speedup = np.asarray(speedups, dtype=float)
    if n.shape != speedup.shape:
        raise ParameterError("Amdahl's law needs one speedup per worker count; give lists of "
                             "the same length.")
    if cores is not None:
        keep = n <= cores
        n, speedup = n[keep], speedup[keep]
    a = 1.0 - 1.0 / n
    b = 1.0 / speedup - 1.0 / n
    if not np.any(a > 0):
        raise ParameterError("Amdahl's law needs at least one run with more than one worker"
                             + (f" and at most {cores} (the cores)" if cores is not None else "")
                             + "; measure 2 or more workers.")
    return float(np.clip(np.sum(a * b) / np.sum(a * a), 0.0, 1.0))


@dataclass(frozen=True)
class GILThreadModel:
    """n threads on CPU-bound Python work: the GIL runs one at a time, and handing it over
    *between cores* costs.

    One core's worth of work (``T1``) is never shared out. What makes threads slower than one
    is code that lets the GIL go many times a second (the ``regex`` engine nltk's tokenizers
    use releases it around each match): a waiting thread that runs on *another* core can take
    it in that moment, and the holder must then be woken to get it back, across cores. Pinned
    to one core the same threads cost nothing extra (a waiter cannot run while the holder
    does); with a thread per core (n ≤ cores) a waiter is always on another core, and with
    more threads than cores more waiters are woken onto the other cores at each release and
    contend for it; the loss grows until every core holds two (n = 2 × cores) and then
    levels off (a fitted shape: measure a sweep to see it on your machine)::

        T(n) = T1 × (1 + cross + crowd × min(1, (n − cores) / cores))     (n ≥ 2; n > cores
                                                                            for the crowd)

    ``cross`` and ``crowd`` are seconds lost per second of one thread's work: ``cross`` is
    priced by a count from 2 to ``cores``, ``crowd`` by one above. Both are fitted, so the
    checks are fits; both scale with the machine's free cores (other programs' work on the
    other cores takes the waiters' place, and the loss shrinks towards 1×).
    """

    t1: float  # seconds for the work on one thread
    cross: float  # extra seconds per second of work: waiters on other cores (n ≥ 2)
    crowd: float = 0.0  # more, when threads outnumber the cores (full at 2 × cores)
    cores: int = 2

    def crowding(self, threads) -> np.ndarray:
        """The share of the crowd term at ``threads``: 0 up to the cores, 1 from twice them."""
        n = np.asarray(threads, dtype=float)
        return np.clip((n - self.cores) / self.cores, 0.0, 1.0)

    def seconds(self, threads) -> np.ndarray:
        n = np.asarray(threads, dtype=float)
        return self.t1 * (1.0 + np.where(n >= 2, self.cross, 0.0)
                          + self.crowd * self.crowding(n))

    def speedup(self, threads) -> np.ndarray:
        return self.t1 / self.seconds(threads)

    @classmethod
    def fit(cls, threads, seconds, t1: float, cores: int = 2) -> GILThreadModel:
        """``cross`` and ``crowd`` from runs at ``threads`` (seconds each) and the one-thread
        time ``t1``: least squares on ``T(n)/T1 − 1`` (each >= 0). With no count above the
        cores among ``threads`` the crowd cannot be told and is left at 0."""
        n = np.asarray(threads, dtype=float)
        extra = np.asarray(seconds, dtype=float) / t1 - 1.0
        if n.shape != extra.shape or not np.any(n >= 2):
            raise ParameterError("the thread model needs at least one run with two or more "
                                 "threads and its time; measure 2 threads.")
        m = cls(float(t1), 0.0, 0.0, cores)
        share = m.crowding(n)
        if not np.any(share > 0):
            cross = float(np.mean(extra[n >= 2]))
            return cls(float(t1), max(cross, 0.0), 0.0, cores)
        if not np.any((n >= 2) & (share == 0)):
            raise ParameterError(f"the thread model needs one run with 2 to {cores} threads "
                                 f"(the cores) as well as the runs above them.")
        a = np.column_stack([(n >= 2).astype(float), share])
        (cross, crowd), *_ = np.linalg.lstsq(a, extra, rcond=None)
        cross = max(float(cross), 0.0)
        crowd = max(float(np.sum(share * (extra - cross)) / np.sum(share * share)), 0.0)
        return cls(float(t1), cross, crowd, cores)

    def __str__(self) -> str:
        return (f"one thread {format_seconds(self.t1)}; GIL hand-overs across cores add "
                f"{self.cross:.0%} of it with a thread per core, {self.crowd:.0%} more with "
                f"twice as many threads as the {self.cores} cores")


def serial_fraction_from_timings(t1: float, tn: float, n: int) -> float:
    """The serial fraction implied by one run on 1 worker (``t1`` s) and one on ``n`` (``tn`` s)."""
    return fit_serial_fraction([n], [t1 / tn])


# --------------------------------------------------------------------------- notebook 05
#
# A pipelined loader delivers at the rate of its slowest limit. Each batch takes L seconds to
# make (read + decompress + batch, one worker, C of them CPU seconds); the loop computes S per
# step. With w workers and prefetch depth d, batch q may start once the loop has asked for
# batch q - d, so d + 1 batches share each cycle of one load and one step (Little's law). The
# loop gets a batch every
#
#     P = max(S, (S + L) / (d + 1), L / w, C / cores)      (w ≥ 1)
#     P = S + L                                           (w = 0: the loop loads, then computes)
#
# and the accelerator is busy b = S / P = min(1, (1/P_loader) / (1/S)). Over N steps the first
# batch's L cannot be hidden: b_N = N·S / (L + N·P). The smallest depth that keeps the loop
# busy is d = ceil(L / S), with at least as many workers.
#
# Notebook 08 adds the GIL. A step whose Python side holds it for g·S, fed by thread workers
# that hold it C_py per batch, gets two more limits: the two Pythons take turns (P ≥ g·S +
# C_py), and the workers' Python cuts into the step's when the step holds the GIL longer than
# the interpreter's switch interval i (P ≥ S + min(C_py, k·i), k = ceil(g·S / i) − 1); the
# step's Python also takes a core (C + g·S) / cores. Process workers have their own GIL: only
# the cores count.


@dataclass(frozen=True)
class PipelineModel:
    """Predicted busy fraction of a training loop fed by a pipelined loader."""

    read_s: float  # seconds per batch, one worker (mostly waiting on storage)
    decompress_s: float  # CPU seconds per batch
    batch_s: float  # CPU seconds per batch
    step_s: float  # the training step time
    workers: int = 1
    prefetch: int = 1
    cores: int = 2
    # The GIL (notebook 08): a step whose Python side holds the GIL for ``step_gil_s`` of its
    # ``step_s``, and loader workers that hold it ``loader_gil_s`` per batch (pure-Python
    # decoding, tokenizing). Thread workers share the loop's GIL; process workers have their own.
    step_gil_s: float = 0.0
    loader_gil_s: float = 0.0
    kind: str = "threads"  # or "processes"
    # ``sys.getswitchinterval()``: a thread waiting for the GIL this long makes the holder let go
    switch_interval_s: float = 0.005
    # a woken worker's own latency before it starts waiting for the GIL (futex wake-up and
    # scheduling; about a tenth of a millisecond on a quiet machine, read off the timeline)
    wake_s: float = 1e-4

    @property
    def load_s(self) -> float:
        """Seconds to make one batch, one worker, all stages in turn."""
        return self.read_s + self.decompress_s + self.batch_s

    def _limits(self) -> dict[str, float]:
        """Seconds per step each limit allows, by the bottleneck's name."""
        s, load = self.step_s, self.load_s
        if self.workers == 0:
            return {"serial: loading and computing take turns": s + load}
        cpu = self.decompress_s + self.batch_s
        limits = {"none: the loop's own step time": s,
                  ("serial: loading and computing take turns" if self.prefetch == 0 else
                   "prefetch depth"): (s + load) / (self.prefetch + 1),
                  "workers (storage latency)": load / self.workers,
                  "cpu": (cpu + self.step_gil_s) / self.cores}
        limits.update(self._gil_limits())
        return limits

    def _gil_limits(self) -> dict[str, float]:
        """The GIL's terms, for thread workers (process workers hold their own GIL: none).

        One lock: per batch, the step's Python (``g·S``) and the workers' (``C_py``) take
        turns, so ``P ≥ g·S + C_py``. The workers' Python lands where the GIL is free first:
        the loop's taking a batch wakes a worker as the step begins, and while the step's
        Python holds the GIL the worker gets it only by waiting a switch interval ``i`` (then
        the interpreter makes the holder let go), once per interval. A step whose Python ends
        within ``i`` of the worker's wake-up (``g·S ≤ i + wake``) is never cut into: the
        workers' Python runs while the step's non-Python part (the accelerator) leaves the GIL
        free, and only what does not fit there delays the next step (the turn-taking limit).
        A longer step's Python is cut ``k = ceil((g·S − wake) / i) − 1`` times, each time for
        up to ``i`` of the workers' Python, so ``P ≥ S + min(C_py, k·i)``. A step with no
        Python (a sleep) waits only for its wake-up: left out.
        """
        g_s, c_py, s = self.step_gil_s, self.loader_gil_s, self.step_s
        if self.kind != "threads" or g_s <= 0 or c_py <= 0:
            return {}
        limits = {"the GIL: the step's Python and the workers' take turns": g_s + c_py}
        inside = min(c_py, self.gil_cuts * self.switch_interval_s)
        if inside > 0:
            limits["the GIL: the workers' Python cuts into the step's"] = s + inside
        return limits

    @property
    def gil_cuts(self) -> int | float:
        """How many times thread workers' Python cuts into one step's Python (forced GIL
        switches, one per switch interval past the first): ``ceil((g·S − wake) / i) − 1``."""
        g_s, i = self.step_gil_s, self.switch_interval_s
        if self.kind != "threads" or g_s <= 0:
            return 0
        if i <= 0:
            return math.inf
        return max(0, math.ceil((g_s - self.wake_s) / i - 1e-9) - 1)

    @property
    def period_s(self) -> float:
        """Seconds between batches the loop gets, in steady state."""
        return max(self._limits().values())

    @property
    def bottleneck(self) -> str:
        limits = self._limits()
        return max(limits, key=limits.get)

    @property
    def loader_rate(self) -> float:
        """Batches per second the loader can make at most (workers and cores permitting)."""
        if self.workers == 0:
            return 1 / self.load_s if self.load_s > 0 else math.inf
        cpu = self.decompress_s + self.batch_s
        return min(self.workers / self.load_s if self.load_s > 0 else math.inf,
                   self.cores / cpu if cpu > 0 else math.inf)

    def busy_fraction(self, steps: int | None = None) -> float:
        """Predicted compute time / wall time, over ``steps`` steps (None: steady state)."""
        p = self.period_s
        if steps is None:
            return self.step_s / p if p > 0 else 1.0
        return steps * self.step_s / (self.load_s + steps * p)

    def steps_per_s(self, steps: int | None = None) -> float:
        """Predicted training steps per second (over ``steps`` steps, with the first batch's
        wait; None: steady state). Where a step is stretched (the GIL), the busy fraction
        counts the stretch as computing: steps per second does not."""
        p = self.period_s
        if steps is None:
            return 1 / p if p > 0 else math.inf
        return steps / (self.load_s + steps * p)

    def min_prefetch(self) -> int:
        """The smallest prefetch depth that keeps the loop busy (enough workers): ceil(L/S)."""
        if self.step_s <= 0:
            return math.inf
        return max(1, math.ceil(self.load_s / self.step_s - 1e-9))

    def __str__(self) -> str:
        return (f"batch load {self.load_s * 1e3:.2f} ms (read {self.read_s * 1e3:.2f}, "
                f"decompress {self.decompress_s * 1e3:.2f}, batch {self.batch_s * 1e3:.2f}); "
                f"a batch every {self.period_s * 1e3:.2f} ms for {self.step_s * 1e3:.2f} ms "
                f"steps: busy {self.busy_fraction():.0%} (limit: {self.bottleneck})")


# --------------------------------------------------------------------------- scaling out


def list_schedule(task_seconds, slots: int, overhead_s: float = 0.0) -> float:
    """Seconds until the last task ends when tasks are handed out in order, each to the first
    of ``slots`` workers to come free (as dask's scheduler and a process pool do), and every
    task also pays ``overhead_s`` (scheduling, sending, starting)."""
    if slots < 1:
        raise ParameterError(f"slots must be >= 1, got {slots}.")
    free = [0.0] * min(slots, max(len(task_seconds), 1))
    for t in task_seconds:
        heapq.heapreplace(free, free[0] + t + overhead_s)
    return max(free)


@dataclass(frozen=True)
class ClusterModel:
    """Preprocessing on a cluster of ``machines × cores`` worker slots, from measured costs.

    Each piece costs its bytes at the measured single-worker rate plus a fixed per-task
    overhead paid on its worker; pieces go to slots in order (:func:`list_schedule`); the run
    adds a start-up, and a *dispatch* cost per task that the scheduler (or driver) pays one
    task after another, however many workers there are::
        T = startup + n × dispatch + makespan(bytes_i / rate + overhead, slots)

    With ``n`` equal pieces of a corpus of ``B`` bytes that is ``startup + n × dispatch +
    ceil(n / slots) × (B / n / rate + overhead)``: too few pieces leave slots idle
    (``n < slots``, or a last wave only partly full), too many pay the overhead ``n / slots``
    times and the dispatch ``n`` times.
    """

    bytes_per_s: float  # one worker's rate on the task (read, tokenize, write)
    overhead_s: float  # per task (the scheduler's, sending it, starting it)
    startup_s: float = 0.0
    storage_bandwidth: float = math.inf  # bytes/s the shared storage gives all workers
    dispatch_s: float = 0.0  # per task, paid in turn by the scheduler: no worker shares it

    def rate(self, busy) -> np.ndarray:
        """One worker's bytes per second when ``busy`` workers read the shared storage at once:
        its own rate, or its share of the storage's bandwidth, whichever is less."""
        busy = np.maximum(np.asarray(busy, dtype=float), 1.0)
        return np.minimum(self.bytes_per_s, self.storage_bandwidth / busy)

    def task_seconds(self, piece_bytes, busy: int = 1) -> np.ndarray:
        return np.asarray(piece_bytes, dtype=float) / self.rate(busy)

    def predict(self, piece_bytes, slots: int) -> float:
        """Seconds to process pieces of ``piece_bytes`` on ``slots`` workers."""
        busy = min(slots, max(len(piece_bytes), 1))
        return (self.startup_s + len(piece_bytes) * self.dispatch_s
                + list_schedule(self.task_seconds(piece_bytes, busy), slots, self.overhead_s))

    def predict_even(self, total_bytes: float, pieces, slots) -> np.ndarray:
        """Seconds for ``total_bytes`` cut into ``pieces`` equal pieces on ``slots`` workers
        (arrays broadcast). With a finite ``storage_bandwidth``, however many machines there
        are, the run cannot beat ``total_bytes / storage_bandwidth``."""
        n = np.asarray(pieces, dtype=float)
        slots = np.asarray(slots, dtype=float)
        waves = np.ceil(n / slots)
        rate = self.rate(np.minimum(n, slots))
        return (self.startup_s + n * self.dispatch_s
                + waves * (total_bytes / n / rate + self.overhead_s))

    @classmethod
    def fit_runs(cls, runs, bytes_per_s: float, storage_bandwidth: float = math.inf
                 ) -> ClusterModel:
        """Start-up, per-task overhead and dispatch from measured runs ``(piece_bytes, slots,
        seconds)``, given the single-worker rate from a serial run: least squares on
        ``seconds − makespan without overhead = startup + waves × overhead + n × dispatch``,
        every term >= 0 (``waves``: tasks the busiest worker runs; ``n``: tasks).

        Runs of one piece count (say 8 pieces on 1 and 2 workers) cannot tell the dispatch
        (``n`` the same in every run) from the start-up: it is then left at 0 and the start-up
        holds it. A run at a second piece count separates them; a term the runs cannot tell
        apart from the others is left out.
        """
        bare, waves, tasks, seconds = [], [], [], []
        for pb, slots, sec in runs:
            pb = np.asarray(pb, dtype=float)
            bare.append(list_schedule(pb / bytes_per_s, slots))
            waves.append(math.ceil(len(pb) / slots))
            tasks.append(len(pb))
            seconds.append(sec)
        if len(seconds) < 1:
            raise ParameterError("the cluster model needs at least one measured run; time the "
                                 "engine on 1 and 2 workers.")
        extra = np.asarray(seconds, dtype=float) - np.array(bare)
        a = np.column_stack([np.ones(len(waves)), waves, tasks]).astype(float)
        best = (math.inf, np.zeros(3))
        # every subset of the three terms whose columns the runs tell apart, fewest first:
        # the least-squares fit with all terms >= 0 and the smallest residual wins
        for cols in ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)):
            sub = a[:, cols]
            if np.linalg.matrix_rank(sub) < len(cols):
                continue
            coef, *_ = np.linalg.lstsq(sub, extra, rcond=None)
            if (coef < 0).any():
                continue
            err = float(np.sum((sub @ coef - extra) ** 2))
            if err < best[0] * (1 - 1e-9) - 1e-18:
                full = np.zeros(3)
                full[list(cols)] = coef
                best = (err, full)
        startup, overhead, dispatch = (float(v) for v in best[1])
        return cls(bytes_per_s, overhead, startup, storage_bandwidth, dispatch)

    def best_pieces(self, total_bytes: float, slots: int, max_pieces: int = 1 << 20) -> int:
        """The piece count with the shortest predicted run (the smallest one on a tie)."""
        n = np.arange(1, max_pieces + 1)
        t = self.predict_even(total_bytes, n, slots)
        return int(n[np.argmin(np.round(t, 12))])

    @classmethod
    def fit(cls, piece_bytes, serial_seconds: float, run_seconds: float, slots: int,
            startup_s: float = 0.0) -> ClusterModel:
        """The rate from a serial run over the pieces, and the per-task overhead as what a run
        on ``slots`` workers took beyond the model without overhead (never below 0)."""
        piece_bytes = np.asarray(piece_bytes, dtype=float)
        rate = piece_bytes.sum() / serial_seconds
        bare = list_schedule(piece_bytes / rate, slots)
        waves = math.ceil(len(piece_bytes) / slots)
        return cls(rate, max(run_seconds - bare, 0.0) / waves, startup_s)

    @classmethod
    def fit_sweep(cls, piece_bytes_per_run, seconds, slots: int, bytes_per_s: float
                  ) -> ClusterModel:
        """Start-up and per-task overhead from runs of the same corpus cut into different
        piece counts on ``slots`` workers, given the single-worker rate (a fit: see
        :meth:`fit_runs`)."""
        return cls.fit_runs([(pb, slots, s) for pb, s in zip(piece_bytes_per_run, seconds)],
                            bytes_per_s)

    def __str__(self) -> str:
        cap = ("" if not math.isfinite(self.storage_bandwidth) else
               f", shared storage {self.storage_bandwidth / MB:,.0f} MB/s")
        dispatch = ("" if not self.dispatch_s else
                    f" + {format_seconds(self.dispatch_s)} per task in turn (dispatch)")
        return (f"{self.bytes_per_s / MB:,.1f} MB/s per worker, "
                f"{format_seconds(self.overhead_s)} per task{dispatch}, start-up "
                f"{format_seconds(self.startup_s)}{cap}")


@dataclass(frozen=True)
class ShardReadModel:
    """Trainers reading an epoch's shards from storage, each rank its own share.

    A rank opens each of its shards (one request for the index) and reads it in windows of
    ``window_bytes`` (one request each); every request pays ``latency``, and the bytes move at
    one stream's bandwidth, or a fair share of the link when ``world_size`` ranks share it::
        T_rank = (shards + windows) × latency + bytes / min(stream_bw, aggregate_bw / ranks)

    The epoch lasts as long as the slowest rank. With ``n`` equal shards of a ``B``-byte set,
    that rank holds ``ceil(n / ranks)`` shards: too few shards leave ranks idle, too many small
    ones pay a latency per shard (the per-request cost of notebook 01).
    """

    latency: float
    stream_bandwidth: float
    aggregate_bandwidth: float

    @classmethod
    def from_preset(cls, preset) -> ShardReadModel:
        """The model of a storage preset (a name such as ``"object-store"`` or a preset)."""
        t = ThreadedReadModel.from_preset(preset)
        return cls(t.latency, t.stream_bandwidth, t.aggregate_bandwidth)

    def _bandwidth(self, ranks: int) -> float:
        return min(self.stream_bandwidth, self.aggregate_bandwidth / max(ranks, 1))

    def rank_seconds(self, shard_bytes, window_bytes: float, ranks: int = 1) -> float:
        """Seconds for one rank to read shards of ``shard_bytes`` (its own share)."""
        b = np.asarray(shard_bytes, dtype=float)
        requests = len(b) + np.ceil(b / window_bytes).sum()
        return float(requests * self.latency + b.sum() / self._bandwidth(ranks))

    def epoch_seconds(self, total_bytes: float, shards, ranks, window_bytes: float
                      ) -> np.ndarray:
        """The slowest rank's seconds for ``shards`` equal shards of ``total_bytes`` read by
        ``ranks`` ranks (arrays broadcast)."""
        n = np.asarray(shards, dtype=float)
        w = np.asarray(ranks, dtype=float)
        per_rank = np.ceil(n / w)
        size = total_bytes / n
        requests = per_rank * (1 + np.ceil(size / window_bytes))
        bw = np.minimum(self.stream_bandwidth, self.aggregate_bandwidth / w)
        return requests * self.latency + per_rank * size / bw


# --------------------------------------------------------------------------- the batch job

BATCH_LOADS = ("worker", "task", "fork")


@dataclass(frozen=True)
class BatchCostModel:
    """A batch job that runs a model over documents on ``P`` worker processes::

        T = T₀ + L × ℓ + makespan over min(P, cores) slots of (bytes_i / r + o [+ ℓ])

    ``ℓ`` is one load of the model, ``r`` one worker's rate at running it (bytes of text per
    second), both best measured with as many workers busy at once as the run will have (on a
    shared machine a worker slows when its neighbours work), ``o`` what each task costs
    besides (sending it, reading its documents, writing its piece atomically, the manifest
    line), ``T₀`` the run's fixed cost (starting the pool, publishing the output). Where the
    model is loaded decides ``L`` and the ``[+ ℓ]``:

    * per task (``"task"``): every task pays ``ℓ`` itself, so loads cost ``tasks × ℓ /
      slots``;
    * per worker (``"worker"``, a pool initializer): every worker loads it once before its
      first task, all at once: ``L = ⌈P / cores⌉`` (more workers than cores take turns);
    * inherited by fork (``"fork"``): the parent loads it once before starting the pool,
      ``L = 1``.

    Tasks go, in order, to whichever slot is free first (:func:`list_schedule`), so one big
    task per worker makes the run wait for the largest, where many small tasks even out.
    """

    load_s: float  # ℓ
    bytes_per_s: float  # r
    task_s: float = 0.0  # o
    startup_s: float = 0.0  # T₀
    cores: int = 1

    def _slots(self, workers: int, tasks: int) -> int:
        return max(1, min(int(workers), self.cores, max(tasks, 1)))

    def up_front_loads(self, workers: int, loads: str, tasks: int = 1 << 30) -> int:
        """``L``: loads on the critical path before the tasks start."""
        if loads not in BATCH_LOADS:
            raise ParameterError(f"unknown loads {loads!r}; choose one of: "
                                 f"{', '.join(BATCH_LOADS)}.")
        if loads == "worker":
            return math.ceil(min(int(workers), max(tasks, 1)) / self.cores)
        return 1 if loads == "fork" else 0

    def total_loads(self, workers: int, loads: str, tasks: int) -> int:
        """How many times the run loads the model, in all."""
        if loads == "task":
            return tasks
        return min(int(workers), max(tasks, 1)) if loads == "worker" else 1

    def predict(self, task_bytes, workers: int, loads: str = "worker") -> float:
        """Seconds for tasks of ``task_bytes`` (one entry per task) on ``workers`` workers."""
        b = np.asarray(task_bytes, dtype=float)
        per_task = b / self.bytes_per_s + (self.load_s if loads == "task" else 0.0)
        slots = self._slots(workers, len(b))
        return (self.startup_s + self.up_front_loads(workers, loads, len(b)) * self.load_s
                + list_schedule(per_task, slots, self.task_s))

    @classmethod
    def fit(cls, load_s: float, bytes_per_s: float, runs, cores: int) -> BatchCostModel:
        """``o`` and ``T₀`` fitted (least squares, both >= 0) to runs ``(task_bytes, workers,
        loads, seconds)``, given ``ℓ`` and ``r`` measured apart: each run's time beyond its
        loads is the cluster model's ``T₀ + waves × o`` (:meth:`ClusterModel.fit_runs`)."""
        base = cls(load_s, bytes_per_s, 0.0, 0.0, cores)
        adjusted = []
        for task_bytes, workers, loads, seconds in runs:
            b = np.asarray(task_bytes, dtype=float)
            slots = base._slots(workers, len(b))
            bare = base.predict(b, workers, loads) - list_schedule(b / bytes_per_s, slots)
            adjusted.append((b, slots, seconds - bare))  # what the cluster model explains
        fitted = ClusterModel.fit_runs(adjusted, bytes_per_s)
        return cls(load_s, bytes_per_s, fitted.overhead_s, fitted.startup_s, cores)

    def __str__(self) -> str:
        return (f"load {format_seconds(self.load_s)}, {self.bytes_per_s / MB:,.2f} MB/s per "
                f"worker, {format_seconds(self.task_s)} per task, fixed "
                f"{format_seconds(self.startup_s)}, {self.cores} core(s)")
