"""Notebook 08's measurements: broken pipelines diagnosed from what they do, and the GIL step.

:func:`measure_pipeline` runs a pipeline twice through the kit's :class:`~iokit.loader.Loader`:
once one batch at a time (no overlap: each stage's seconds and CPU seconds, and the bytes
fetched per token) and once for real (the busy fraction, each stage's spans, the CPU the
process used), and hands the signals to :func:`iokit.probe.diagnose`, which never sees the
pipeline's name. :data:`BROKEN` holds four pipelines built to go wrong, each with the
bottleneck it should show (for the check) and how to build its fixed version.

:class:`ProcessTextLoader` makes the same batches as :class:`TextBatches` in worker
processes, so a training step that holds the GIL can be run against thread and process
workers (:func:`gil_runs`).

A speed ratio that one run of each side would give is mostly noise on a shared machine:
:func:`paired` runs both sides in turn, round after round (:func:`iokit.timing.interleaved`),
takes each round's ratio, and says whether the ratios' range leaves the noise
(:class:`Paired`); :func:`fewer_workers` and :func:`gil_paired` use it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from iokit.costs import Check, PipelineModel
from iokit.errors import ParameterError
from iokit.loader import Batch, Loader, ShardBatches, make_batch
from iokit.parallel import WorkerPool
from iokit.probe import Signals, Verdict, diagnose, hold_gil, simulated_step
from iokit.shards import open_shards
from iokit.storage import LocalDisk, open_storage
from iokit.tasks import load_tokenizer_once
from iokit.timing import Timeline, interleaved, measure

# --------------------------------------------------------------------------- sources


def _nbytes(payload) -> int:
    """The stored bytes in a source's payload (bytes, or nested lists and tuples of them;
    the numbers a payload carries along, such as a shard piece's bounds, count nothing)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return len(payload)
    if isinstance(payload, (list, tuple)):
        return sum(_nbytes(p) for p in payload)
    return 0


class Metered:
    """A batch source that counts what another one does: bytes fetched, and the CPU seconds
    of each ``fetch`` and ``decode`` (the thread's own CPU time: waiting for storage, the GIL
    or a core does not count)."""

    def __init__(self, source):
        self.source = source
        self.n_batches, self.tokens_per_batch = source.n_batches, source.tokens_per_batch
        self.dtype = source.dtype
        self.codec = getattr(source, "codec", "none")
        self.fetched = 0
        self.cpu = {"read": [], "decompress": []}
        self._lock = threading.Lock()

    def fetch(self, k: int):
        c0 = time.thread_time()
        payload = self.source.fetch(k)
        cpu = time.thread_time() - c0
        with self._lock:
            self.fetched += _nbytes(payload)
            self.cpu["read"].append(cpu)
        return payload

    def decode(self, k: int, payload) -> np.ndarray:
        c0 = time.thread_time()
        tokens = self.source.decode(k, payload)
        with self._lock:
            self.cpu["decompress"].append(time.thread_time() - c0)
        return tokens

    def close(self) -> None:
        self.source.close()


def text_tokens(tokenizer, data: bytes, tokens: int, dtype) -> np.ndarray:
    """The first ``tokens`` token IDs of a slice of raw corpus bytes (the JSONL as it is: a
    loader that tokenizes what it reads), repeated if the slice held fewer."""
    ids = tokenizer.encode(data.decode("utf-8", errors="ignore"))
    if len(ids) == 0:
        ids = np.zeros(1, dtype=np.uint32)
    return np.resize(ids, tokens).astype(dtype)


class TextBatches:
    """Batches tokenized from the corpus text as they are read: the loader that tokenizes in
    the loop. Batch ``k`` is the corpus' bytes ``[k·b, (k+1)·b)``, read from ``storage``
    (stage ``read``) and tokenized (stage ``decompress``: bytes → IDs)."""

    def __init__(self, corpus, tokenizer, tokens_per_batch: int, storage=None,
                 bytes_per_token: float = 6.0):
        self.path = Path(corpus)
        self.tokenizer = tokenizer
        self.tokens_per_batch = tokens_per_batch
        self.dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 65536 else np.uint32)
        self.bytes_per_batch = int(tokens_per_batch * bytes_per_token)
        self.storage = storage if storage is not None else LocalDisk()
        self.n_batches = self.path.stat().st_size // self.bytes_per_batch
        if self.n_batches == 0:
            raise ParameterError(f"{self.path} holds less than one batch of text "
                                 f"({self.bytes_per_batch:,} bytes); use smaller batches.")
        self.codec = "text"

    def fetch(self, k: int) -> bytes:
        return self.storage.read(self.path, k * self.bytes_per_batch, self.bytes_per_batch)

    def decode(self, k: int, payload: bytes) -> np.ndarray:
        return text_tokens(self.tokenizer, payload, self.tokens_per_batch, self.dtype)

    def close(self) -> None:
        if hasattr(self.storage, "close"):
            self.storage.close()


# --------------------------------------------------------------------------- one measurement


@dataclass
class PipelineRun:
    """A pipeline measured one batch at a time and for real, its signals and the verdict."""

    name: str
    signals: Signals
    verdict: Verdict
    timeline: Timeline
    settings: dict = field(default_factory=dict)

    @property
    def busy(self) -> float:
        return self.signals.busy

    @property
    def steps_per_s(self) -> float:
        return self.signals.batches_per_s


def _stage_means(tl: Timeline, skip=("trainer",)) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for s in tl.spans:
        if s.worker not in skip:
            sums.setdefault(s.stage, []).append(s.seconds)
    return {k: float(np.mean(v)) for k, v in sums.items()}


def measure_pipeline(make_source, *, workers: int, prefetch: int, step_s: float,
                     steps: int = 40, batch_size: int = 16, block_size: int = 256,
                     calibrate: int = 8, name: str = "", gil_share: float = 0.0
                     ) -> PipelineRun:
    """Calibrate (``calibrate`` batches one at a time) and run (``steps`` steps) the pipeline
    whose batch source ``make_source()`` builds; diagnose it from the measurements alone."""
    from iokit.lab.training import train

    cores = os.cpu_count() or 1
    src = Metered(make_source())
    with Loader(src, batch_size=batch_size, block_size=block_size, workers=0, prefetch=0,
                limit=calibrate, timeline=Timeline()) as solo:
        train(solo, 0.0, calibrate)
    stage = _stage_means(solo.timeline)
    stage_cpu = {k: float(np.mean(v)) for k, v in src.cpu.items() if v}
    stage_cpu["batch"] = stage.get("batch", 0.0)  # numpy work: CPU all along
    bytes_per_token = src.fetched / (calibrate * src.tokens_per_batch)

    run_src = Metered(make_source())
    # adaptive=False: the pipeline is measured as its settings say, its workers making every
    # batch (the diagnosis and the model's forecast are about what those workers do; the
    # loader's stand-down would have the loop make quick batches itself)
    loader = Loader(run_src, batch_size=batch_size, block_size=block_size, workers=workers,
                    prefetch=prefetch, limit=steps, timeline=Timeline(), adaptive=False)
    with loader:
        cpu0 = time.process_time()
        run = train(loader, step_s, steps, gil_share)
        cpu = time.process_time() - cpu0
    sig = Signals(run.steps, run.seconds, sum(run.compute_s), sum(run.wait_s), cores,
                  process_cpu_s=cpu, step_cpu_s=gil_share * step_s * run.steps,
                  workers=workers, prefetch=prefetch, kind="threads",
                  stage_s={k: stage.get(k, 0.0) for k in ("read", "decompress", "batch")},
                  stage_cpu_s=stage_cpu, run_stage_s=_stage_means(loader.timeline),
                  bytes_per_token=bytes_per_token, itemsize=src.dtype.itemsize,
                  nominal_step_s=step_s)
    if workers == 0:  # the loop loads inline: its CPU in next() is the loading
        sig.inline_cpu_s = sum(sum(v) for v in run_src.cpu.values())
    return PipelineRun(name, sig, diagnose(sig), loader.timeline,
                       {"workers": workers, "prefetch": prefetch, "step_s": step_s})


# --------------------------------------------------------------------------- broken pipelines


@dataclass
class Broken:
    """A pipeline built to go wrong: how to build its source, its settings, the bottleneck
    it should show (only the check reads it), and the source of its fixed version."""

    name: str
    expected: str
    source: str  # "text", "plain", "lzw"
    storage: str
    workers: int
    prefetch: int
    step_s: float
    fixed_source: str


BROKEN = [
    Broken("tokenizing in the loop", "tokenize", "text", "local", 2, 4, 0.001, "plain"),
    Broken("one request in flight on a latency-bound store", "latency", "plain",
           "object-store", 1, 0, 0.005, "plain"),
    Broken("compression on a CPU-bound loader", "decompress", "lzw", "local", 2, 4, 0.001,
           "plain"),
    Broken("workers beyond the cores", "oversubscribed", "lzw", "local", 8, 8, 0.001, "lzw"),
]


@dataclass
class Lab:
    """What the broken pipelines are built from: the corpus, a tokenizer, plain shards, and
    a folder for compressed copies."""

    corpus: Path
    tokenizer: object
    folder: Path  # plain token shards of the corpus
    workdir: Path
    batch_size: int = 16
    block_size: int = 256

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * (self.block_size + 1)

    def source(self, kind: str, storage: str):
        if kind == "text":
            return TextBatches(self.corpus, self.tokenizer, self.tokens_per_batch,
                               open_storage(storage))
        folder = self.folder
        if kind != "plain":
            from iokit.loader import open_loader

            with open_loader(self.folder, codec=kind, batch_size=self.batch_size,
                             block_size=self.block_size, workdir=self.workdir) as probe:
                folder = probe.source.shards.folder  # the compressed copy, made once
        return ShardBatches(open_shards(folder), self.tokens_per_batch, open_storage(storage))


def run_broken(lab: Lab, b: Broken, steps: int = 40) -> PipelineRun:
    """Measure one broken pipeline and diagnose it (the verdict never reads ``b.name``)."""
    return measure_pipeline(partial(lab.source, b.source, b.storage), workers=b.workers,
                            prefetch=b.prefetch, step_s=b.step_s, steps=steps,
                            batch_size=lab.batch_size, block_size=lab.block_size, name=b.name)


def run_fixed(lab: Lab, b: Broken, verdict: Verdict, steps: int = 40) -> PipelineRun:
    """The pipeline with the verdict's advice applied: its settings, and the fixed source."""
    settings = {"workers": b.workers, "prefetch": b.prefetch, **verdict.settings}
    return measure_pipeline(partial(lab.source, b.fixed_source, b.storage), step_s=b.step_s,
                            steps=steps, batch_size=lab.batch_size, block_size=lab.block_size,
                            name=f"{b.name}: fixed", **settings)


def format_diagnoses(rows) -> str:
    """(broken, run, fixed run) rows as a table: busy before, the verdict, predicted and
    measured busy after the fix."""
    lines = [f"{'pipeline':<48} {'busy':>5}  {'verdict':<15} {'predicted':>9} {'after':>6} "
             f"{'speedup':>8}"]
    for b, run, fixed in rows:
        after = f"{fixed.busy:>6.0%}" if fixed else f"{'—':>6}"
        speed = f"{fixed.steps_per_s / run.steps_per_s:>7.2f}×" if fixed else f"{'—':>8}"
        pb = run.verdict.predicted_busy
        lines.append(f"{b.name:<48} {run.busy:>5.0%}  {run.verdict.key:<15} "
                     f"{pb if pb is not None else 0:>9.0%} {after} {speed}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- paired rounds


@dataclass
class Paired:
    """A speed ratio measured in paired rounds: in each round side A ran, then side B, and
    the round's ratio is B's steps per second over A's. The ratios' range is the noise."""

    name: str
    ratios: list[float]
    a_runs: list = field(default_factory=list)
    b_runs: list = field(default_factory=list)
    model: float | None = None  # the cost model's ratio, if any

    @property
    def median(self) -> float:
        return float(np.median(self.ratios))

    @property
    def low(self) -> float:
        return min(self.ratios)

    @property
    def high(self) -> float:
        return max(self.ratios)

    @property
    def beyond_noise(self) -> bool:
        """True when every round's ratio lies on the same side of 1."""
        return self.low > 1 or self.high < 1

    def verdict(self) -> str:
        """This run's answer in words, from the ratios alone."""
        n = len(self.ratios)
        spread = f"{n} paired rounds, {self.low:.2f}× to {self.high:.2f}×"
        if self.low > 1:
            return f"faster in every one of {spread}: beyond the noise"
        if self.high < 1:
            return f"slower in every one of {spread}: beyond the noise"
        return f"within the noise of {spread}: no difference this run can tell"

    def comparison(self, guess=None, misses: str = ""):
        """The median ratio as a :func:`~iokit.lab.compare.compare`, with the model's ratio."""
        from iokit.lab.compare import compare

        return compare(self.name, self.median, model=self.model, guess=guess, unit="×",
                       low=self.low, high=self.high, runs=len(self.ratios), misses=misses,
                       note=f"median of {len(self.ratios)} paired rounds, {self.low:.2f}× to "
                            f"{self.high:.2f}×")

    def __str__(self) -> str:
        return f"{self.name}: {self.median:.2f}×, {self.verdict()}"


def paired(name: str, run_a, run_b, *, rounds: int = 5, warmup: int = 1) -> Paired:
    """Call ``run_a()`` and ``run_b()`` in turn (:func:`~iokit.timing.interleaved`),
    ``warmup`` untimed rounds then ``rounds`` paired ones; each returns a run with
    ``steps_per_s``. The ratio of a round is B's steps per second over A's."""
    got: tuple[list, list] = ([], [])
    interleaved(lambda: got[0].append(run_a()), lambda: got[1].append(run_b()),
                repeat=rounds, warmup=warmup)
    a, b = got[0][warmup:], got[1][warmup:]
    return Paired(name, [y.steps_per_s / x.steps_per_s for x, y in zip(a, b)], a, b)


def fewer_workers(lab: Lab, b: Broken, verdict: Verdict, *, rounds: int = 5,
                  steps: int = 120) -> Paired:
    """The broken pipeline ``b`` with its own workers and prefetch (A) against the settings
    the verdict asks for (B), ``rounds`` paired rounds of ``steps`` steps, with the pipeline
    model's ratio (the verdict's calibration, both settings)."""
    from iokit.lab.training import train

    def run(settings):
        src = lab.source(b.fixed_source, b.storage)
        n = min(steps, src.n_batches)
        with Loader(src, batch_size=lab.batch_size, block_size=lab.block_size, limit=n,
                    timeline=Timeline(), adaptive=False, **settings) as loader:
            return train(loader, b.step_s, n)

    before = {"workers": b.workers, "prefetch": b.prefetch}
    after = {**before, **verdict.settings}
    p = paired(f"{after['workers']} workers over {b.workers}", partial(run, before),
               partial(run, after), rounds=rounds)
    if verdict.model is not None:
        was = replace(verdict.model, workers=b.workers, prefetch=b.prefetch)
        p.model = was.period_s / verdict.model.period_s
    return p


# --------------------------------------------------------------------------- the GIL step


def text_batch(corpus: str, vocab_path: str, bytes_per_batch: int, batch_size: int,
               block_size: int, k: int):
    """Batch ``k`` of :class:`TextBatches`, made in a worker process: (x, y, (start, end,
    pid)) with ``time.perf_counter`` times (one clock for every process on Linux)."""
    start = time.perf_counter()
    tok = load_tokenizer_once(vocab_path)
    fd = os.open(corpus, os.O_RDONLY)
    try:
        data = os.pread(fd, bytes_per_batch, k * bytes_per_batch)
    finally:
        os.close(fd)
    dtype = np.uint16 if tok.vocab_size <= 65536 else np.uint32
    x, y = make_batch(text_tokens(tok, data, batch_size * (block_size + 1), dtype),
                      batch_size, block_size)
    return x, y, (start, time.perf_counter(), os.getpid())


class ProcessTextLoader:
    """The batches of :class:`TextBatches` made by ``workers`` worker processes (the kit's
    :class:`~iokit.parallel.WorkerPool`, two tasks in flight per worker), on a timeline with
    one row per process (stage ``tokenize``: read and tokenize)."""

    def __init__(self, corpus, vocab_path, *, batch_size: int = 16, block_size: int = 256,
                 workers: int = 2, limit: int | None = None, bytes_per_token: float = 6.0):
        self.corpus, self.vocab_path = str(corpus), str(vocab_path)
        self.batch_size, self.block_size, self.workers = batch_size, block_size, workers
        self.prefetch = 2 * workers
        self.bytes_per_batch = int(batch_size * (block_size + 1) * bytes_per_token)
        n = Path(corpus).stat().st_size // self.bytes_per_batch
        self.n_batches = n if limit is None else min(n, limit)
        self.timeline = Timeline()
        self.source = self
        self.codec = "text"
        self.pool = WorkerPool(workers, "processes").warm()
        fn = partial(text_batch, self.corpus, self.vocab_path, self.bytes_per_batch,
                     batch_size, block_size)
        self.pool.map(fn, range(workers))  # each worker loads the tokenizer now
        self._fn = fn

    def __iter__(self):
        tl, origin = self.timeline, self.timeline.origin
        names: dict = {}
        for p, (x, y, (a, b, pid)) in enumerate(self.pool.imap(self._fn,
                                                               range(self.n_batches))):
            worker = names.setdefault(pid, f"process-{len(names)}")
            tl.add("tokenize", a - origin, b - origin, worker)
            yield Batch(p, p, x, y)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class GilRun:
    """A training run with a GIL-holding step, the workers' kind, and the model's forecast."""

    kind: str
    gil_share: float
    run: object  # TrainRun
    model: PipelineModel
    step_alone_s: float = 0.0  # the step's median wall time with nothing else running

    @property
    def steps_per_s(self) -> float:
        return self.run.steps_per_s

    @property
    def worker_kind(self) -> str:
        """"thread" or "process", as in "thread workers"."""
        return "thread" if self.kind == "threads" else "process"

    @property
    def step_wall_s(self) -> float:
        """The mean wall time of a step: stretched beyond ``step_s`` when it waited for the GIL."""
        return float(np.mean(self.run.compute_s))


def gil_runs(lab: Lab, vocab_path, *, step_s: float = 0.010, shares=(0.0, 0.5),
             workers: int = 2, steps: int = 40, calibrate: int = 8, rounds: int = 1
             ) -> list[GilRun]:
    """Tokenizing in the loop with thread workers and with process workers, under a step that
    holds the GIL for each share of ``shares`` (``rounds`` times each, thread run then process
    run); every run with the pipeline model's forecast from a one-batch-at-a-time calibration
    (the tokenize stage's CPU seconds)."""
    calib = _gil_calibrate(lab, calibrate)
    out = []
    for share in shares:
        for _ in range(rounds):
            for kind in ("threads", "processes"):
                out.append(_gil_run(lab, vocab_path, calib, kind, share, step_s=step_s,
                                    workers=workers, steps=steps))
    return out


def _gil_calibrate(lab: Lab, calibrate: int) -> tuple:
    """The text pipeline one batch at a time: its stage seconds (read, decompress, batch)
    and the Python the workers hold the GIL for per batch (tokenizing and batching)."""
    from iokit.lab.training import train

    src = Metered(lab.source("text", "local"))
    with Loader(src, batch_size=lab.batch_size, block_size=lab.block_size, workers=0,
                prefetch=0, limit=calibrate, timeline=Timeline()) as solo:
        train(solo, 0.0, calibrate)
    stage = _stage_means(solo.timeline)
    read, dec, bat = (stage.get(k, 0.0) for k in ("read", "decompress", "batch"))
    return read, dec, bat, float(np.mean(src.cpu["decompress"])) + bat


def _gil_run(lab: Lab, vocab_path, calib: tuple, kind: str, share: float, *, step_s: float,
             workers: int, steps: int) -> GilRun:
    """One training run of the text pipeline fed by ``kind`` workers under a step that holds
    the GIL for ``share`` of its time, with the pipeline model's forecast."""
    from iokit.lab.training import train

    read, dec, bat, py = calib
    step = simulated_step(step_s, share)
    # the step alone, just before the run: what it takes on this machine now; and its Python
    # part alone (the rest is the sleep standing in for the accelerator, with its oversleep)
    alone = measure(step, repeat=15, warmup=2).median
    held = measure(partial(hold_gil, share * step_s), repeat=15, warmup=2).median if share \
        else 0.0
    model = PipelineModel(read, dec, bat, alone, workers=workers, prefetch=2 * workers,
                          cores=os.cpu_count() or 1, step_gil_s=held, loader_gil_s=py,
                          kind=kind, switch_interval_s=sys.getswitchinterval())
    if kind == "threads":
        # adaptive=False: the lesson is the thread workers' Python competing with the step
        # for the GIL, so the workers make every batch
        loader = Loader(lab.source("text", "local"), batch_size=lab.batch_size,
                        block_size=lab.block_size, workers=workers, prefetch=2 * workers,
                        limit=steps, timeline=Timeline(), adaptive=False)
    else:
        loader = ProcessTextLoader(lab.corpus, vocab_path, batch_size=lab.batch_size,
                                   block_size=lab.block_size, workers=workers, limit=steps)
    with loader:
        run = train(loader, step_s, steps, share)
    return GilRun(kind, share, run, model, alone)


def gil_paired(lab: Lab, vocab_path, *, step_s: float = 0.010, share: float = 0.5,
               workers: int = 2, steps: int = 40, rounds: int = 5, calibrate: int = 8
               ) -> Paired:
    """Process workers against thread workers under a step that holds the GIL for ``share``:
    ``rounds`` paired rounds (thread run, then process run), the ratio of steps per second
    in each, and the pipeline model's ratio (the median over the rounds' forecasts)."""
    calib = _gil_calibrate(lab, calibrate)
    run = partial(_gil_run, lab, vocab_path, calib, share=share, step_s=step_s,
                  workers=workers, steps=steps)
    p = paired(f"process over thread workers, {share:.0%} GIL step",
               partial(run, "threads"), partial(run, "processes"), rounds=rounds, warmup=0)
    p.model = float(np.median([a.model.period_s / b.model.period_s
                               for a, b in zip(p.a_runs, p.b_runs)]))
    return p


def gil_checks(runs: list[GilRun]) -> list[Check]:
    """Steps per second of each GIL run against the pipeline model with its GIL term."""
    return [Check(f"seconds per step, {r.worker_kind} workers, step {r.gil_share:.0%} GIL",
                  "the tokenize stage's CPU, one batch at a time; the step's GIL share",
                  f"{r.run.steps} steps, {r.worker_kind} workers",
                  1 / r.model.steps_per_s(r.run.steps),
                  1 / r.steps_per_s) for r in runs]
