"""Cost models: predict a technique's time before measuring it, then fit the model to data.

The per-request model is the first one the notebooks use: every read or write call pays a
fixed overhead (a system call, a seek, a network round trip) plus its bytes at the storage's
bandwidth::

    time = calls × overhead + bytes / bandwidth,   calls = ceil(bytes / chunk)

so throughput at chunk size c is ``c / (overhead + c / bandwidth)``: small chunks are
overhead-bound, large ones bandwidth-bound, and the knee sits at ``c = overhead × bandwidth``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .timing import MB, format_bytes, format_seconds


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
        raise ValueError("need at least two runs with calls, bytes and seconds for each")
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
