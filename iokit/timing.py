"""Measurement: time a function honestly, and record who did what when.

:func:`measure` runs warm-up calls first (they fill caches and import lazily loaded code), then
``repeat`` timed calls, and reports the median with the min and max, never a single run: these
machines are noisy, and one run can be several times off. :class:`Timeline` records
``(stage, worker, start, end)`` spans for breakdowns and execution-timeline plots.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from iokit.errors import check_positive

MB = 1e6  # throughput is reported in decimal megabytes per second, as disks are sold


@dataclass
class Timing:
    """Seconds taken by repeated runs of one thing, and the bytes (or items) each run moved."""

    seconds: list[float]
    nbytes: int | None = None
    label: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: how much the runs disagree (0.1 = 10 %)."""
        return (self.max - self.min) / self.median if self.median > 0 else 0.0

    @property
    def mb_per_s(self) -> float | None:
        """Median throughput in MB/s, when the bytes per run are known."""
        if self.nbytes is None or self.median <= 0:
            return None
        return self.nbytes / self.median / MB

    def __str__(self) -> str:
        text = f"{format_seconds(self.median)} (min {format_seconds(self.min)}, max " \
               f"{format_seconds(self.max)}, {len(self.seconds)} runs)"
        if self.mb_per_s is not None:
            text += f", {self.mb_per_s:,.1f} MB/s"
        return f"{self.label}: {text}" if self.label else text


def format_seconds(s: float) -> str:
    """A duration with a unit that suits it: 12.3 µs, 4.56 ms, 7.89 s."""
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def format_value(value, unit: str) -> str:
    """A value in its unit: 1.43 s, 12.5 MB/s, 1.74×, 90 % (a fraction), zstd:3 (a choice)."""
    if value is None:
        return "—"
    if unit == "choice" or isinstance(value, str):
        return str(value)
    if unit == "s":
        return format_seconds(float(value))
    if unit in ("MB/s", "tok/s"):
        return f"{value:,.1f} {unit}"
    if unit == "×":
        return f"{value:,.2f}×" if value < 10 else f"{value:,.1f}×" if value < 100 else \
            f"{value:,.0f}×"
    return f"{value * 100:.0f} %"


def format_error(err: float | None) -> str:
    """A relative error (predicted − measured) / measured as a signed percentage: +25 %, −8 %."""
    if err is None:
        return ""
    return f"{'+' if err >= 0 else '−'}{abs(err) * 100:,.0f} %"


def format_bytes(n: float) -> str:
    """1 B, 4 KiB, 16 MiB: binary units, as chunk sizes are chosen."""
    if n != n or n in (float("inf"), float("-inf")):
        return f"{n} B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if n == int(n) else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} GiB"  # pragma: no cover


def measure(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1,
            nbytes: int | None = None, setup: Callable[[], object] | None = None,
            label: str = "") -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeat`` timed ones.

    ``setup`` (if given) runs before every call, untimed: use it to drop the page cache for a
    cold read or to delete the previous run's output.
    """
    repeat = check_positive("repeat", repeat)
    if warmup < 0:
        warmup = check_positive("warmup", warmup)
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    seconds = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return Timing(seconds, nbytes, label)


def interleaved(*fns: Callable[[], object], repeat: int = 5, warmup: int = 1,
                nbytes: int | None = None) -> list[Timing]:
    """Time several ``fns`` in turn, ``warmup`` untimed rounds then ``repeat`` timed ones.

    An A/B comparison made this way lets a busy moment of the machine slow every side alike,
    where timing A five times and then B five times would pin it on one. Returns one
    :class:`Timing` per function, in order.
    """
    repeat = check_positive("repeat", repeat)
    if warmup < 0:
        warmup = check_positive("warmup", warmup)
    runs: list[list[float]] = [[] for _ in fns]
    for i in range(warmup + repeat):
        for fn, seconds in zip(fns, runs):
            start = time.perf_counter()
            fn()
            if i >= warmup:
                seconds.append(time.perf_counter() - start)
    return [Timing(s, nbytes) for s in runs]


class Stopwatch:
    """Seconds spent in a ``with`` block: ``with stopwatch() as sw: ...``, then ``sw.seconds``
    (while the block runs, the seconds so far)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.end: float | None = None

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else time.perf_counter()) - self.start

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.end = time.perf_counter()


def stopwatch() -> Stopwatch:
    """A :class:`Stopwatch` for one span of work, used as a context manager."""
    return Stopwatch()


@dataclass(frozen=True)
class Span:
    """One piece of work: which stage, done by which worker, from when to when (seconds)."""

    stage: str
    worker: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Timeline:
    """A thread-safe recorder of spans; times are seconds since the timeline was created."""

    spans: list[Span] = field(default_factory=list)
    origin: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.perf_counter() - self.origin

    def add(self, stage: str, start: float, end: float, worker: str | None = None) -> None:
        worker = worker or threading.current_thread().name
        with self._lock:
            self.spans.append(Span(stage, worker, start, end))

    def add_stamps(self, worker: str, stages, stamps) -> None:
        """Record consecutive spans under one lock: stage ``stages[i]`` from ``stamps[i]`` to
        ``stamps[i + 1]``, the stamps read from ``time.perf_counter()`` as the work went on."""
        o = self.origin
        spans = [Span(st, worker, a - o, b - o) for st, a, b in zip(stages, stamps, stamps[1:])]
        with self._lock:
            self.spans.extend(spans)

    @contextmanager
    def span(self, stage: str, worker: str | None = None):
        """Record the time spent inside the ``with`` block as one span of ``stage``."""
        start = self.now()
        try:
            yield
        finally:
            self.add(stage, start, self.now(), worker)

    def totals(self) -> dict[str, float]:
        """Seconds spent per stage, summed over spans (and workers), in first-seen order."""
        out: dict[str, float] = defaultdict(float)
        for s in self.spans:
            out[s.stage] += s.seconds
        return dict(out)


def timeline_from(spans) -> Timeline:
    """A Timeline of spans recorded elsewhere, given as ``(worker, stage, start, end)`` in one
    clock (say wall-clock seconds from several processes): times count from the first start,
    and workers are renamed ``worker 1``, ``worker 2``, ... in the order they start work."""
    spans = sorted(spans, key=lambda s: s[2])
    t0 = spans[0][2] if spans else 0.0
    tl = Timeline()
    names: dict = {}
    for worker, stage, start, end in spans:
        tl.add(stage, start - t0, end - t0, names.setdefault(worker, f"worker {len(names) + 1}"))
    return tl
