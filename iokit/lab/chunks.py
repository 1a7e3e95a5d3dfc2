"""Chunk-size sweeps: read a file in requests of c bytes, time it, fit the request model.

Small requests are dominated by their fixed cost (a system call, a round trip), large ones by
bandwidth. :func:`chunk_sweep` measures throughput over a range of chunk sizes on any storage
(the real disk, warm or cold, or a simulated store) and :func:`fit_sweep` fits
``time = calls × overhead + bytes / bandwidth`` to the points (see :mod:`iokit.costs`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from iokit.costs import RequestCostModel, fit_request_model
from iokit.errors import check_positive
from iokit.storage import LocalDisk, drop_cache, resident_fraction
from iokit.timing import MB, measure


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
    path = Path(path)
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


def fit_sweep(points) -> RequestCostModel:
    """Fit the request-cost model to sweep points."""
    points = list(points)
    return fit_request_model([p.calls for p in points], [p.nbytes for p in points],
                             [p.seconds for p in points])
