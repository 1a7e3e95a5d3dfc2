"""Scaling sweeps: time a parallel map over worker counts and chunk sizes.

Two stages, two kinds of parallelism:

* the CPU-bound stage, word tokenization (:func:`tokenize_point`): the workers read their own
  documents by byte offset and send back token counts as a small numpy array;
* the I/O-bound stage, many reads from a (simulated) remote store (:func:`read_point`): each
  read mostly waits, so threads overlap the waits.

Every point is measured on a pool that is already running (its start-up is timed apart by
:func:`pool_startup`), with warm-up and repeats; see :mod:`iokit.timing`. Unless told, the
number of repeats suits the scale (:func:`scale_repeat`): bigger corpora take longer per run
and vary less between runs, so they need fewer.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from iokit import tasks
from iokit.atomic import atomic_write
from iokit.corpus import open_corpus, resolve_scale
from iokit.costs import Check, GILThreadModel, amdahl_speedup, fit_serial_fraction
from iokit.parallel import WorkerPool
from iokit.progress import progress_bar
from iokit.timing import MB, Timing, interleaved, measure

SCALE_REPEATS = {"tiny": 3, "small": 2, "large": 2}  # timed runs per point, by corpus scale


def scale_repeat(repeat: int | None = None) -> int:
    """``repeat`` when given, else the timed runs per point for the scale in use."""
    return repeat if repeat is not None else SCALE_REPEATS[resolve_scale()]


@dataclass(frozen=True)
class ScalingPoint:
    """One configuration of a parallel map and how long it took (median of the repeats)."""

    kind: str
    workers: int
    chunk_size: int
    seconds: float
    min_seconds: float
    max_seconds: float
    items: int
    nbytes: int
    baseline_seconds: float | None = None  # one worker, timed in turn with this point's runs

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / MB

    def speedup(self, baseline: ScalingPoint | float | None = None) -> float:
        """How many times faster than ``baseline`` (a point or seconds; by default the
        single-worker runs timed in turn with this point's own)."""
        if baseline is None:
            if self.baseline_seconds is None:
                raise ValueError("this point has no baseline of its own; pass one")
            baseline = self.baseline_seconds
        base = baseline.seconds if isinstance(baseline, ScalingPoint) else baseline
        return base / self.seconds


def _point(pool: WorkerPool, chunk_size: int, t: Timing, items: int, nbytes: int,
           baseline: float | None = None):
    return ScalingPoint(pool.kind, pool.workers, chunk_size, t.median, t.min, t.max, items,
                        nbytes, baseline)


def corpus_sample(path, max_bytes: int | None = None) -> list[tuple[int, int]]:
    """Byte ranges of the first documents of ``path`` (one per document), up to ``max_bytes``.

    ``path`` is any corpus form; the ranges are of the JSONL file it opens as
    (:func:`~iokit.corpus.open_corpus`), which the other functions here read.
    """
    spans = tasks.document_spans(open_corpus(path))
    if max_bytes is None:
        return spans
    return [s for s in spans if s[1] <= max_bytes] or spans[:1]


def spans_bytes(spans) -> int:
    return sum(end - start for start, end in spans)


def tokenize_point(path, spans, kind: str = "processes", workers: int = 1,
                   chunk_size: int = 16, *, start_method: str | None = None,
                   repeat: int | None = None, warmup: int = 1, pool: WorkerPool | None = None,
                   baseline: bool = False) -> ScalingPoint:
    """Time tokenizing the documents at ``spans`` with a pool of ``workers`` (items: documents).

    Pass ``pool`` to reuse a running one (its kind and workers are then used). With
    ``baseline=True``, every pool run alternates with a run in this process alone, and the
    point's :meth:`~ScalingPoint.speedup` compares the two medians: on a shared machine this
    is far steadier than a baseline measured once, earlier.
    """
    fn = partial(tasks.tokenize_span, str(open_corpus(path)))
    repeat = scale_repeat(repeat)
    own = pool is None
    pool = pool or WorkerPool(workers, kind, start_method, preload=("iokit.tasks",))
    try:
        pool.warm()
        run = lambda: pool.map(fn, spans, chunk_size)
        if baseline:
            one, t = interleaved(lambda: [fn(s) for s in spans], run, repeat=repeat, warmup=warmup)
        else:
            one, t = None, measure(run, repeat=repeat, warmup=warmup)
    except BaseException:
        pool.abort()
        raise
    if own:
        pool.close()
    return _point(pool, chunk_size, t, len(spans), spans_bytes(spans),
                  one.median if one is not None else None)


def worker_sweep(path, spans, workers: Iterable[int], kind: str = "processes",
                 chunk_size: int = 16, **kwargs) -> Iterator[ScalingPoint]:
    """:func:`tokenize_point` for each worker count, yielded as measured (with a progress
    bar over the counts)."""
    workers = list(workers)
    with progress_bar(total=len(workers), desc=f"{kind}", unit="count") as bar:
        for n in workers:
            bar.set_postfix_str(f"{n} workers")
            yield tokenize_point(path, spans, kind, n, chunk_size, **kwargs)
            bar.update()


def task_size_sweep(path, spans, task_sizes: Iterable[int], kind: str = "processes",
                    workers: int = 2, **kwargs) -> Iterator[ScalingPoint]:
    """:func:`tokenize_point` for each task size (documents per task, the pool's
    ``chunk_size``) on one running pool, yielded as measured."""
    task_sizes = list(task_sizes)
    with WorkerPool(workers, kind, preload=("iokit.tasks",)) as pool, \
            progress_bar(total=len(task_sizes), desc="task sizes", unit="size") as bar:
        for c in task_sizes:
            bar.set_postfix_str(f"{c} per task")
            yield tokenize_point(path, spans, chunk_size=c, pool=pool, **kwargs)
            bar.update()


def read_point(store, path, workers: int, request_bytes: int = 1 << 20, requests: int = 32,
               *, repeat: int = 3, warmup: int = 0) -> ScalingPoint:
    """Time ``requests`` reads of ``request_bytes`` from ``store`` by ``workers`` threads."""
    offsets = tasks.request_offsets(path, request_bytes, requests, total=store.size(path))
    fn = partial(tasks.read_request, store, str(path), request_bytes)
    got = 0
    with WorkerPool(workers, "threads") as pool:
        pool.warm(0.0)

        def run():
            nonlocal got
            got = sum(pool.map(fn, offsets))

        t = measure(run, repeat=repeat, warmup=warmup)
    return _point(pool, 1, t, requests, got)


def read_sweep(store, path, workers: Iterable[int], request_bytes: int = 1 << 20,
               requests_per_worker: int = 8, **kwargs) -> Iterator[ScalingPoint]:
    """:func:`read_point` for each worker count, each worker making the same number of reads.

    The model describes the steady state; with only one read per worker the first latency
    and the last stragglers are not hidden, so each worker makes several.
    """
    for n in workers:
        yield read_point(store, path, n, request_bytes, requests_per_worker * n, **kwargs)


def pool_startup(start_method: str, workers: int = 2, repeat: int = 3) -> Timing:
    """Seconds from creating a process pool to every worker having run a first task."""
    def run():
        with WorkerPool(workers, "processes", start_method, preload=("iokit.tasks",)) as pool:
            pool.warm(0.0)

    return measure(run, repeat=repeat, warmup=1, label=start_method)


def speedups(points, baseline: ScalingPoint | float) -> np.ndarray:
    """The speedup of each point over ``baseline``."""
    return np.array([p.speedup(baseline) for p in points])


def task_payload_bytes(fn, item) -> int:
    """Bytes pickled to send one single-item task (function and argument) to a process."""
    return len(pickle.dumps((fn, [item])))


def result_payload_bytes(result) -> int:
    """Bytes pickled to send one result back from a process."""
    return len(pickle.dumps(result))


def parallel_token_file(path, out_path, workers: int = 2, chunk_size: int = 16,
                        kind: str = "processes", span_bytes: int = 1) -> tuple[int, int]:
    """Tokenize the corpus with a pool and write what the naive loop writes, atomically.

    Workers read documents by offset and send back finished lines; the parent writes them in
    input order, so the file is byte-identical to the serial loops' output whatever ``workers``
    and ``chunk_size`` are. Returns (bytes read, bytes written).
    """
    path = open_corpus(path)
    spans = tasks.document_spans(path, span_bytes)
    fn = partial(tasks.token_lines_span, str(path))
    written = 0
    with WorkerPool(workers, kind, preload=("iokit.tasks",)) as pool, \
            atomic_write(out_path, "wb") as out:
        for lines in pool.imap(fn, spans, chunk_size):
            out.write(lines)
            written += len(lines)
    return spans_bytes(spans), written


# --------------------------------------------------------------------------- cost-model checks


def cores_note(workers: int, cores: int | None = None) -> str:
    """A word for a sweep's line when ``workers`` exceed the cores (they can only take turns)."""
    cores = cores or os.cpu_count() or 1
    return f"(more workers than the {cores} cores: they take turns)" if workers > cores else ""


def thread_checks(points, calibrate_on=(2, 4), cores: int | None = None):
    """The GIL model for threads on CPU-bound work (:class:`~iokit.costs.GILThreadModel`),
    fitted on the points with ``calibrate_on`` threads (one count up to the cores prices the
    hand-overs across cores, one above them the crowding) and checked on the others.

    ``points`` are :class:`ScalingPoint` of kind ``threads`` measured with ``baseline=True``
    (each one's single-thread runs, timed in turn, give ``T1``). Returns ``(model, checks)``;
    the checks compare speedups (×) and are fits.
    """
    cores = cores or os.cpu_count() or 1
    points = [p for p in points if p.workers >= 1]
    t1 = float(np.median([p.baseline_seconds for p in points]))
    cal = [p for p in points if p.workers in calibrate_on]
    model = GILThreadModel.fit([p.workers for p in cal], [p.seconds / p.baseline_seconds * t1
                                                          for p in cal], t1, cores)
    on = ", ".join(f"{p.workers} threads" for p in cal)
    if not any(p.workers > cores for p in cal):
        on += f" (none above the {cores} cores: crowding not priced)"
    checks = [Check(f"threads (GIL) at {p.workers}", on,
                    f"{p.workers} threads {cores_note(p.workers, cores)}".strip(),
                    float(model.speedup(p.workers)), p.speedup(), kind="fit", unit="×")
              for p in points if p.workers not in calibrate_on and p.workers > 1]
    return model, checks


def amdahl_checks(points, cores: int | None = None):
    """Amdahl's law capped at the cores, its serial fraction fitted on the points with 2 to
    ``cores`` workers and checked on all the others (more workers than cores, or fewer).

    ``points`` are :class:`ScalingPoint` measured with ``baseline=True``. Returns
    ``(serial_fraction, checks)``; the checks compare speedups (×) and are fits (the serial
    fraction is fitted to speedups of the same work).
    """
    cores = cores or os.cpu_count() or 1
    cal = [p for p in points if 2 <= p.workers <= cores]
    s = fit_serial_fraction([p.workers for p in cal], [p.speedup() for p in cal], cores)
    on = ", ".join(f"{p.workers} workers" for p in cal)
    checks = [Check(f"Amdahl (capped at {cores} cores) at {p.workers}", on,
                    f"{p.workers} workers {cores_note(p.workers, cores)}".strip(),
                    float(amdahl_speedup(p.workers, s, cores)), p.speedup(), kind="fit",
                    unit="×")
              for p in points if p not in cal and p.workers > 1]
    return s, checks
