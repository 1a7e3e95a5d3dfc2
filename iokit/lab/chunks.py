"""Chunk-size sweeps: read a file in requests of c bytes, time it, fit the request model.

Small requests are dominated by their fixed cost (a system call, a round trip), large ones by
bandwidth. :func:`chunk_sweep` measures throughput over a range of chunk sizes on any storage
(the real disk, warm or cold, or a simulated store) and :func:`fit_sweep` fits
``time = calls × overhead + bytes / bandwidth`` to the points (see :mod:`iokit.costs`);
:func:`sweep_checks` fits on some chunk sizes and checks on the others.

The same sweep runs on a real S3-protocol endpoint (:func:`measure_endpoint`: the kit's
loopback server, or yours): the request model fitted there gives the per-request overhead and
the bandwidth of one stream, which the simulated object store only assumes, and
:func:`threaded_checks` checks threads against them; :func:`matching_preset` is the preset
that would simulate this endpoint, :func:`endpoint_differences` says how it differs from one.

Notebook 01's loop model is calibrated here too: :func:`calibrate_loop` runs the naive and a
chunked loop on a sample of the corpus and fits each stage's per-call cost and bandwidth;
:func:`loop_checks` compares it with the loops measured on the whole corpus.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iokit.corpus import write_head
from iokit.costs import (
    Check,
    LoopCostModel,
    RequestCostModel,
    ThreadedReadModel,
    fit_request_model,
)
from iokit.errors import check_positive
from iokit.storage import LocalDisk, StoragePreset, drop_cache, is_url, resident_fraction
from iokit.timing import MB, format_bytes, format_seconds, interleaved, measure


@dataclass(frozen=True)
class SweepPoint:
    """One chunk size: how many bytes and calls one run made, and its timing."""

    chunk: int
    nbytes: int
    calls: int
    seconds: float  # median of the repeats
    min_seconds: float
    max_seconds: float
    cold: bool = False

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / MB

    @property
    def request_bytes(self) -> float:
        """Mean bytes per request (smaller than the chunk when the file is)."""
        return self.nbytes / self.calls


def powers_of_two(lo: int, hi: int) -> list[int]:
    """Chunk sizes lo, 2·lo, 4·lo, ... up to hi (both powers of two or not)."""
    lo, hi = check_positive("smallest chunk", lo), check_positive("largest chunk", hi)
    out = [1 << k for k in range(int(math.log2(lo)), int(math.log2(hi)) + 1)]
    return [c for c in out if lo <= c <= hi] or [lo]


def read_all(storage, path, chunk: int, limit: int | None = None) -> tuple[int, int]:
    """Read ``path`` (up to ``limit`` bytes) in ``chunk``-byte requests; return (bytes, calls)."""
    nbytes = calls = 0
    for data in storage.read_chunks(path, chunk, limit):
        nbytes += len(data)
        calls += 1
    return nbytes, calls


def chunk_sweep(path, chunks, storage=None, *, cold: bool = False, max_calls: int = 20_000,
                repeat: int = 3, warmup: int = 1) -> Iterator[SweepPoint]:
    """Measure read throughput at each chunk size, yielding points as they are measured.

    Each run reads at most ``max_calls`` requests (the whole file when that is fewer), so tiny
    chunks stay quick. ``cold=True`` drops the file from the page cache before every run (local
    disk only) and reports whether that worked.
    """
    storage = storage or LocalDisk()
    path = path if is_url(path) else Path(path)
    size = storage.size(path)
    max_calls = check_positive("max_calls", max_calls)
    for chunk in chunks:
        chunk = check_positive("chunk size", chunk, hint="Chunk sizes are bytes, e.g. 65536.")
        yield measure_chunk(storage, path, chunk, min(size, chunk * max_calls), cold=cold,
                            repeat=repeat, warmup=warmup)


def measure_chunk(storage, path, chunk: int, limit: int, *, cold: bool = False,
                  repeat: int = 3, warmup: int = 1) -> SweepPoint:
    """Time reading ``limit`` bytes of ``path`` in ``chunk``-byte requests."""
    made_cold = True
    counted = (0, 0)

    def setup():
        nonlocal made_cold
        if cold:
            made_cold = drop_cache(path) and resident_fraction(path) == 0.0

    def run():
        nonlocal counted
        counted = read_all(storage, path, chunk, limit)

    t = measure(run, repeat=repeat, warmup=0 if cold else warmup, setup=setup)
    nbytes, calls = counted
    return SweepPoint(chunk, nbytes, calls, t.median, t.min, t.max, cold=cold and made_cold)


def interleaved_reads(storage, path, chunks, threads=(), *, request_bytes: int = 256 << 10,
                      requests_per_thread: int = 8, max_calls: int = 20_000, repeat: int = 3,
                      warmup: int = 1) -> tuple[list[SweepPoint], list]:
    """One stream at each request size in ``chunks`` (:func:`chunk_sweep`'s points, at most
    ``max_calls`` requests each) and, for each count in ``threads``, that many threads making
    ``requests_per_thread`` requests of ``request_bytes`` each (:func:`iokit.lab.scaling.
    read_point`'s work), every setting timed in turn in each round
    (:func:`~iokit.timing.interleaved`): on a shared endpoint or a busy machine a slow moment
    then slows every setting alike instead of bending the curve at one. Returns
    ``(sweep points, ScalingPoints)``."""
    from contextlib import ExitStack
    from functools import partial

    from iokit import tasks
    from iokit.lab.scaling import ScalingPoint
    from iokit.parallel import WorkerPool

    path = path if is_url(path) else Path(path)
    size = storage.size(path)
    chunks = [check_positive("chunk size", c, hint="Chunk sizes are bytes, e.g. 65536.")
              for c in chunks]
    counted: dict = {}

    def one_stream(chunk: int):
        def run():
            counted[chunk] = read_all(storage, path, chunk, min(size, chunk * max_calls))
        return run

    fn = partial(tasks.read_request, storage, str(path), request_bytes)
    with ExitStack() as stack:
        pools = [stack.enter_context(WorkerPool(n, "threads")).warm(0.0) for n in threads]
        offsets = [tasks.request_offsets(path, request_bytes, requests_per_thread * p.workers,
                                         total=size) for p in pools]

        def threaded(k: int):
            def run():
                counted["threads", k] = sum(pools[k].map(fn, offsets[k]))
            return run

        timings = interleaved(*(one_stream(c) for c in chunks),
                              *(threaded(k) for k in range(len(pools))),
                              repeat=repeat, warmup=warmup)
    sweep = [SweepPoint(c, *counted[c], t.median, t.min, t.max)
             for c, t in zip(chunks, timings)]
    pts = [ScalingPoint("threads", p.workers, 1, t.median, t.min, t.max, len(offsets[k]),
                        counted["threads", k])
           for k, (p, t) in enumerate(zip(pools, timings[len(chunks):]))]
    return sweep, pts


def fit_sweep(points) -> RequestCostModel:
    """Fit the request-cost model to sweep points."""
    points = list(points)
    return fit_request_model([p.calls for p in points], [p.nbytes for p in points],
                             [p.seconds for p in points])


# --------------------------------------------------------------------------- the loop's costs


@dataclass(frozen=True)
class LoopCalibration:
    """What :func:`calibrate_loop` measured, and the :class:`~iokit.costs.LoopCostModel`."""

    model: LoopCostModel
    sample_bytes: int
    chunk_size: int

    @property
    def calibrated_on(self) -> str:
        return (f"the naive and the {format_bytes(self.chunk_size)} chunked loop over the first "
                f"{self.sample_bytes / MB:.2f} MB")


def calibrate_loop(corpus, tokenize=None, *, folder=None, sample_bytes: int = 2 << 20,
                   chunk_size: int = 4 << 20, repeat: int = 3) -> LoopCalibration:
    """Measure the loop's costs on a sample: the loops themselves, on the corpus' first
    ``sample_bytes`` (at most a quarter of it), naive and chunked at ``chunk_size``.

    The two runs make very different numbers of calls for the same bytes, so each stage's
    per-call cost and bandwidth can be told apart (:func:`~iokit.costs.fit_request_model`):
    reads from one call per byte against a few large calls, writes from one per document
    against a few batches. Each I/O call here runs between tokenizing steps, as in the real
    loops, so it pays the cold caches they leave (a write right after tokenizing costs several
    times one in a tight loop). The output goes to ``folder`` (the corpus' folder by default,
    where the loops write) and is removed.
    """
    import tempfile

    from iokit.lab.loops import chunked_loop, naive_loop
    from iokit.tokenize import word_tokenize

    tokenize = tokenize or word_tokenize
    corpus = Path(corpus)
    folder = Path(folder) if folder is not None else corpus.parent
    size = corpus.stat().st_size
    want = max(1, min(sample_bytes, size // 4))
    with tempfile.TemporaryDirectory(dir=folder, prefix="iokit-calibrate-") as tmp:
        sample = Path(tmp) / "sample.jsonl"
        got, _ = write_head(corpus, sample, want)
        runs = {"naive": [], "chunked": []}
        for _ in range(repeat):
            runs["naive"].append(naive_loop(sample, Path(tmp) / "out-naive", tokenize))
            runs["chunked"].append(chunked_loop(sample, Path(tmp) / "out-chunked", chunk_size,
                                                tokenize))

    return LoopCalibration(fit_loop_model(runs["naive"], runs["chunked"], chunk_size), got,
                           chunk_size)


def fit_loop_model(naive_runs, chunked_runs, chunk_size: int) -> LoopCostModel:
    """The loop cost model from runs of the naive loop and of a ``chunk_size`` chunked loop
    over the same bytes (``LoopResult``s; the median of each stage over the runs)."""
    naive_runs, chunked_runs = list(naive_runs), list(chunked_runs)

    def median(runs, stage: str) -> float:
        return float(np.median([r.stage_seconds.get(stage, 0.0) for r in runs]))

    naive, chunked = naive_runs[0], chunked_runs[0]
    n_calls = loop_calls(naive.bytes_in, None, naive.documents)
    c_calls = loop_calls(chunked.bytes_in, chunk_size, chunked.documents)

    def solve(i: int, stage: str, n_bytes: int, c_bytes: int) -> RequestCostModel:
        # Each run shows one term best: the few large calls of the chunked run its bandwidth,
        # the many calls of the naive run (less those bytes) its per-call cost. Solved in
        # that order, one noisy run cannot turn the other's term negative.
        t_naive, t_chunked = median(naive_runs, stage), median(chunked_runs, stage)
        model = fit_request_model([n_calls[i], c_calls[i]], [n_bytes, c_bytes],
                                  [t_naive, t_chunked])
        if model.overhead_s > 0 and math.isfinite(model.bandwidth):
            return model  # both terms seen: the exact solution of the two runs
        bandwidth = c_bytes / t_chunked if t_chunked > 0 else math.inf
        overhead = max(t_naive - n_bytes / bandwidth, 0.0) / n_calls[i]
        return RequestCostModel(overhead, bandwidth)

    read = solve(0, "read", naive.bytes_in, chunked.bytes_in)
    write = solve(1, "write", naive.bytes_out, chunked.bytes_out)
    process = (naive.bytes_in + chunked.bytes_in) / (median(naive_runs, "process")
                                                     + median(chunked_runs, "process"))
    return LoopCostModel(read, write, process, naive.bytes_out / max(naive.bytes_in, 1))


def loop_calls(bytes_in: int, chunk_size: int | None, documents: int) -> tuple[int, int]:
    """(read calls, write calls) a loop makes over ``bytes_in`` bytes (``chunk_size=None``:
    the naive loop, one read call per byte and one write per document)."""
    if chunk_size is None:
        return bytes_in + 1, documents
    return bytes_in // chunk_size + 1, max(1, bytes_in // chunk_size)


def loop_checks(calibration: LoopCalibration, results) -> list[Check]:
    """Each stage of each measured loop (``LoopResult``s of :mod:`iokit.lab.loops`) against the
    model calibrated on samples: the loops themselves were not part of the calibration."""
    checks = []
    for r in results:
        chunk = None if r.name == "naive" else int(r.name.split()[1].replace(",", ""))
        reads, writes = loop_calls(r.bytes_in, chunk, r.documents)
        pred = calibration.model.stage_seconds(r.bytes_in, reads, writes, r.bytes_out)
        for stage, seconds in r.stage_seconds.items():
            checks.append(Check(f"loop {r.name} {stage}", calibration.calibrated_on,
                                f"the {r.name} loop's {stage} stage", pred[stage], seconds))
    return checks


def sweep_checks(points, held_out, label: str = "reads"):
    """Fit the request model on the sweep's points except the chunk sizes in ``held_out``, and
    check it on those: returns ``(model, checks)`` (a fit: both terms come from the timings)."""
    held = set(held_out)
    fit_on = [p for p in points if p.chunk not in held]
    model = fit_sweep(fit_on)
    on = ", ".join(format_bytes(p.chunk) for p in fit_on)
    checks = [Check(f"{label} in {format_bytes(p.chunk)} requests", f"chunks {on}",
                    f"{format_bytes(p.chunk)} chunks", model.seconds(p.nbytes, p.chunk),
                    p.seconds, kind="fit") for p in points if p.chunk in held]
    return model, checks


# --------------------------------------------------------------------------- a real endpoint


@dataclass(frozen=True)
class EndpointRun:
    """What :func:`measure_endpoint` measured on one S3 endpoint."""

    about: str  # the endpoint, as :class:`~iokit.remote.S3Endpoint` prints it
    url: str  # the object that was read
    points: list  # SweepPoint per request size, one stream
    threads: list  # ScalingPoint per thread count, requests of ``request_bytes``
    request_bytes: int

    def fit(self, held_out) -> tuple[RequestCostModel, list[Check]]:
        """The request model fitted on the one-stream sweep but ``held_out`` request sizes,
        and its checks on those (:func:`sweep_checks`)."""
        return sweep_checks(self.points, held_out, label="S3 endpoint reads")


def measure_endpoint(path, chunks, *, threads=(1, 2, 4, 8), request_bytes: int = 256 << 10,
                     max_calls: int = 16, requests_per_thread: int = 8, repeat: int = 3,
                     warmup: int = 1, object_bytes: int = 8 << 20) -> EndpointRun:
    """Upload the first ``object_bytes`` of ``path`` (repeated if it is shorter) to the S3
    endpoint (:func:`iokit.remote.s3_endpoint`: yours if the environment names one, else the
    kit's loopback server, stopped afterwards), then read it back through fsspec: one stream
    at each request size in ``chunks`` (at most ``max_calls`` requests each, every size timed
    in turn, :func:`interleaved_reads`), and ``request_bytes`` requests from each thread count
    in ``threads``.

    One object of a fixed size: large enough for the largest requests to show the bandwidth,
    and the same whatever the corpus (the loopback server's per-request cost grows with the
    object's size, see :mod:`iokit.remote`)."""
    import tempfile

    from iokit.remote import s3_endpoint, upload
    from iokit.storage import FsspecStorage

    path = Path(path)
    object_bytes = check_positive("object_bytes", object_bytes)
    with s3_endpoint() as endpoint, tempfile.TemporaryDirectory(prefix="iokit-s3-") as tmp:
        with open(path, "rb") as f:
            data = f.read(object_bytes)
        source = Path(tmp) / path.name
        source.write_bytes((data * -(-object_bytes // max(len(data), 1)))[:object_bytes])
        url = upload(source, f"s3://{endpoint.bucket}/iokit-{path.name}")[0]
        points, threaded = interleaved_reads(
            FsspecStorage(), url, chunks, threads, request_bytes=request_bytes,
            requests_per_thread=requests_per_thread, max_calls=max_calls, repeat=repeat,
            warmup=warmup)
    return EndpointRun(str(endpoint), url, points, threaded, request_bytes)


def threaded_checks(model: RequestCostModel, threads, calibrate_on: int = 2
                    ) -> tuple[ThreadedReadModel, list[Check]]:
    """Threads against the endpoint's request model: latency and stream bandwidth from the
    one-stream fit ``model``; the aggregate bandwidth (what all streams share: the link, or
    on a loopback server the cores that client and server share) from the
    ``calibrate_on``-thread point (or the nearest measured); checked on every other thread
    count (seconds per run)."""
    threads = list(threads)
    cal = min(threads, key=lambda p: (abs(p.workers - calibrate_on), p.workers))
    calibrate_on = cal.workers
    tm = ThreadedReadModel(model.overhead_s, model.bandwidth, cal.nbytes / cal.seconds)
    on = f"the one-stream sweep and {calibrate_on} threads"
    checks = [Check(f"threaded reads, {p.workers} threads (S3 endpoint)", on,
                    f"{p.workers} threads, {format_bytes(p.nbytes / p.items)} reads",
                    tm.seconds(p.items, p.workers, p.nbytes / p.items), p.seconds, kind="fit")
              for p in threads if p.workers != calibrate_on]
    return tm, checks


def matching_preset(threaded: ThreadedReadModel, name: str = "measured-endpoint"
                    ) -> StoragePreset:
    """The simulated-store preset with this endpoint's measured figures."""
    return StoragePreset(name, threaded.latency, threaded.stream_bandwidth,
                         threaded.aggregate_bandwidth,
                         f"measured: {format_seconds(threaded.latency)} per request, "
                         f"{threaded.stream_bandwidth / MB:,.0f} MB/s per stream, "
                         f"{threaded.aggregate_bandwidth / MB:,.0f} MB/s in all")


def endpoint_differences(threaded: ThreadedReadModel, preset: StoragePreset) -> list[str]:
    """One line per figure: the endpoint's measured value against the preset's assumption."""
    rows = [("per-request overhead", threaded.latency, preset.latency, format_seconds),
            ("bandwidth of one stream", threaded.stream_bandwidth, preset.stream_bandwidth,
             lambda b: f"{b / MB:,.0f} MB/s"),
            ("bandwidth of all streams", threaded.aggregate_bandwidth,
             preset.aggregate_bandwidth, lambda b: f"{b / MB:,.0f} MB/s"),
            ("knee (overhead × one stream's bandwidth)",
             threaded.latency * threaded.stream_bandwidth,
             preset.latency * preset.stream_bandwidth, format_bytes)]
    return [f"{what:<42} measured {fmt(real):>11}, preset {preset.name} {fmt(assumed):>11} "
            f"({real / assumed:.2g}× the preset's)" for what, real, assumed, fmt in rows]
