"""A probe for any loader: is the training loop waiting for data, why, and what would help?

::

    report = probe(my_loader, step_s=0.005, steps=200)   # any iterable of batches
    print(report)                                          # what it measured, and the advice

:func:`probe` wraps any Python iterable of batches (the kit's :class:`~iokit.loader.Loader`, a
plain generator, a PyTorch ``DataLoader``, a tf.data or Hugging Face datasets iterator) with a
training step (a function of the batch, or a step time simulated by :func:`simulated_step`),
runs a bounded number of steps and measures, from the outside:

========================  ==================================================================
signal                    how
========================  ==================================================================
batches/s delivered       steps / wall time of the loop
time waiting for data     ``next(iterator)``, timed per step
busy fraction             step time / wall time (1.0: never waited)
CPU in the loop's thread  ``time.thread_time`` around each ``next``: the loader working inline
CPU per process           this process and its child processes (worker processes), in cores
per-stage spans           the kit's loader only: its timeline (one lent for the run if none)
========================  ==================================================================

:func:`diagnose` turns such :class:`Signals` into a :class:`Verdict`: the bottleneck, the
evidence, the technique that removes it (and the notebook that measures it), and what the
pipeline cost model (:class:`~iokit.costs.PipelineModel`) predicts once it is applied. The
same function reads the richer signals of a one-batch-at-a-time calibration (per-stage CPU
seconds, bytes per token) when they are known. :data:`DECISION_TABLE` is the guide it follows.

``iokit probe script.py:make_loader --step-ms 5 --steps 200`` runs it on a learner's own
loader, without a change to their code (:func:`load_target`).
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from iokit.costs import PipelineModel
from iokit.errors import ParameterError, check_positive
from iokit.timing import Timeline, format_seconds

BUSY_ENOUGH = 0.9  # a loop busy this much of the time is not input-bound
CPU_SHARE = 0.5  # a batch whose solo time is at least this share CPU is CPU-bound
STEP_STRETCHED = 1.2  # a step taking this many times its own time waited for the GIL or a core


# --------------------------------------------------------------------------- the decision guide


@dataclass(frozen=True)
class Rule:
    """One row of the decision guide."""

    key: str
    symptom: str
    measure: str
    bottleneck: str
    technique: str
    notebook: str
    model: str


DECISION_TABLE = [
    Rule("none", "busy ≥ 90 %", "busy fraction", "the training step itself",
         "none on the data side: make the step faster", "05",
         "at most 1 / busy faster from data"),
    Rule("serial", "the loop waits; CPU during the wait is in the loop's own thread",
         "CPU in the loop's thread during next(); the timeline has no worker rows",
         "loading and computing take turns", "background workers + prefetch", "05",
         "b = S / max(S, L / w, (S + L) / (d + 1)) instead of S / (S + L)"),
    Rule("latency", "the loop waits; the loader's CPU is low; read ≫ step",
         "per-stage times (read), CPU per process, batches in flight",
         "storage latency: too few requests in flight",
         "more workers and prefetch ≥ L / S (threads suffice)", "04, 05",
         "P = max(S, L / w, (S + L) / (d + 1))"),
    Rule("tokenize", "CPU-bound; the loader reads more bytes per token than an ID takes",
         "per-stage CPU, bytes per token", "tokenizing text every epoch",
         "pretokenize once to .bin/.idx shards", "02",
         "the CPU stage goes, reads shrink to 2 or 4 bytes per token"),
    Rule("decompress", "CPU-bound; the loader reads fewer bytes per token than an ID takes",
         "decompress span and its CPU, bytes per token", "decompression on the CPU",
         "a faster codec, or none when the link is fast", "03",
         "read = bytes / ratio / bandwidth + bytes / decode speed"),
    Rule("oversubscribed", "CPU-bound; more workers than cores; spans stretched",
         "span time / CPU time per stage, CPU per process", "workers beyond the cores",
         "workers = cores (no faster, less contention and memory)", "04",
         "Amdahl capped at the cores: nothing gained beyond them"),
    Rule("gil", "threads doing Python work; the process uses about one core of several",
         "CPU per process, the step stretched beyond its time", "the GIL",
         "process workers", "04",
         "one GIL: the step's Python and the workers' take turns (P ≥ g·S + C_py)"),
    Rule("cpu", "CPU-bound at all the cores", "CPU per process", "the machine's cores",
         "less work per batch (02, 03) or more machines", "06",
         "P ≥ C / cores"),
]
RULES = {r.key: r for r in DECISION_TABLE}


def decision_table() -> str:
    """The decision guide as a plain-text table."""
    lines = [f"{'symptom':<64} {'bottleneck':<40} {'technique (notebook)'}"]
    for r in DECISION_TABLE:
        lines.append(f"{r.symptom:<64} {r.bottleneck:<40} {r.technique} ({r.notebook})")
    return "\n".join(lines)


@dataclass
class Signals:
    """What was measured of one run (and, optionally, of a one-batch-at-a-time calibration).

    Times are seconds; per-batch figures are means. ``stage_s`` and ``stage_cpu_s`` come from
    batches made one at a time (no overlap); ``run_stage_s`` from the run itself.
    """

    steps: int
    seconds: float  # wall time of the loop
    compute_s: float  # time in the training step, summed
    wait_s: float  # time waiting for batches, summed
    cores: int
    process_cpu_s: float = 0.0  # CPU seconds of the loop's process (all its threads)
    children_cpu_s: float = 0.0  # CPU seconds of its child processes (worker processes)
    inline_cpu_s: float = 0.0  # CPU seconds of the loop's own thread inside next()
    step_cpu_s: float = 0.0  # CPU seconds of the loop's own thread inside the step
    workers: int | None = None  # loader workers, when known (0: the loop loads)
    prefetch: int | None = None
    kind: str = "unknown"  # "threads", "processes" or "unknown"
    stage_s: dict = field(default_factory=dict)  # solo seconds per batch, by stage
    stage_cpu_s: dict = field(default_factory=dict)  # solo CPU seconds per batch, by stage
    run_stage_s: dict = field(default_factory=dict)  # mean span seconds in the run, by stage
    bytes_per_token: float | None = None  # bytes the loader fetched per token delivered
    itemsize: int | None = None  # bytes of one stored token ID
    nominal_step_s: float | None = None  # the step's own time, when known (a simulated step)

    @property
    def busy(self) -> float:
        """Time in the step / wall time; with a known step time and steps stretched by more
        than :data:`STEP_STRETCHED` (they waited for the GIL or a core), the step's own time:
        waiting inside a step is not computing."""
        compute = self.steps * self.nominal_step_s if self.stretch >= STEP_STRETCHED \
            else self.compute_s
        return min(compute / self.seconds, 1.0) if self.seconds > 0 else 0.0

    @property
    def step_s(self) -> float:
        if self.stretch >= STEP_STRETCHED:
            return self.nominal_step_s
        return self.compute_s / self.steps if self.steps else 0.0

    @property
    def stretch(self) -> float:
        """A step's measured wall time / its own time (1.0 when unknown)."""
        if not self.nominal_step_s or not self.steps:
            return 1.0
        return self.compute_s / self.steps / self.nominal_step_s

    @property
    def batches_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    @property
    def loader_cores(self) -> float:
        """Cores the loader kept busy: all CPU of the run but the step's, per wall second."""
        cpu = self.process_cpu_s + self.children_cpu_s - self.step_cpu_s
        return max(cpu, 0.0) / self.seconds if self.seconds > 0 else 0.0

    @property
    def in_flight(self) -> int:
        """Batches the loader may have in the making at once (1 when unknown)."""
        if not self.workers:
            return 1
        return max(1, min(self.workers, (self.prefetch if self.prefetch is not None
                                         else self.workers) + 1))


@dataclass
class Verdict:
    """The diagnosis: which bottleneck, why (evidence from the run), what to do, and the gain."""

    key: str
    evidence: list[str]
    advice: str
    predicted_busy: float | None = None
    predicted_speedup: float | None = None  # steps per second, after / before
    settings: dict = field(default_factory=dict)  # loader settings the advice asks for
    model: PipelineModel | None = None  # the pipeline model behind the forecast, if any

    @property
    def rule(self) -> Rule:
        return RULES[self.key]

    @property
    def input_bound(self) -> bool:
        return self.key != "none"

    def __str__(self) -> str:
        r = self.rule
        text = (f"bottleneck: {r.bottleneck} ({self.key})\n"
                + "".join(f"  evidence: {e}\n" for e in self.evidence)
                + f"  technique: {r.technique} (notebook {r.notebook})\n  advice: {self.advice}")
        if self.predicted_busy is not None:
            text += (f"\n  predicted: busy {self.predicted_busy:.0%}"
                     + (f", {self.predicted_speedup:.2f}× the steps per second"
                        if self.predicted_speedup else ""))
        return text


def _ms(s: float) -> str:
    return format_seconds(s)


def _model(stage: dict, step_s: float, workers: int, prefetch: int, cores: int,
           scale_read: float = 1.0, drop: tuple = ()) -> PipelineModel:
    return PipelineModel(stage.get("read", 0.0) * scale_read,
                         0.0 if "decompress" in drop else stage.get("decompress", 0.0),
                         stage.get("batch", 0.0), step_s, workers=workers, prefetch=prefetch,
                         cores=cores)


def diagnose(sig: Signals) -> Verdict:
    """The bottleneck the signals show, following :data:`DECISION_TABLE` top to bottom.

    Only measurements decide: the busy fraction, where CPU time went (the loop's thread, the
    loader's threads or processes, each stage) and against the cores, how far spans stretch
    beyond their CPU time, how many batches were in flight, and bytes per token.
    """
    S, busy, cores = sig.step_s, sig.busy, max(sig.cores, 1)
    before = sig.batches_per_s
    evidence = [f"busy {busy:.0%}: the loop computed {_ms(S)} per step and waited "
                f"{_ms(sig.wait_s / max(sig.steps, 1))} per step on average"]
    if busy >= BUSY_ENOUGH:
        return Verdict("none", evidence, "the loader keeps up; time the step itself next",
                       busy, 1.0)

    def gain(model_busy: float, period: float | None = None) -> float:
        after = 1 / period if period else model_busy / S if S > 0 else 0.0
        return after / before if before > 0 else math.inf

    if sig.stretch >= STEP_STRETCHED:
        evidence.append(f"each step took {sig.stretch:.1f}× its own {_ms(S)}: it waited for "
                        "the GIL or a core")
    stage = dict(sig.stage_s)
    if stage:  # the kit's loader, calibrated one batch at a time
        L = sum(stage.values())
        cpu_of = {k: sig.stage_cpu_s.get(k, v if k == "batch" else 0.0)
                  for k, v in stage.items()}
        evidence.append("one batch alone: " + ", ".join(f"{k} {_ms(v)} (CPU {_ms(cpu_of[k])})"
                                                        for k, v in stage.items()))
        slowest = max(stage, key=stage.get)
        if slowest == "read" and cpu_of["read"] < CPU_SHARE * stage["read"]:
            need = max(1, math.ceil(L / S - 1e-9)) if S > 0 else sig.in_flight
            need = max(need, sig.in_flight + 1)
            m = _model(stage, S, need, need, cores)
            evidence.append(f"{sig.in_flight} batch(es) in flight at a time; each waits "
                            f"{_ms(stage['read'] - cpu_of['read'])} on storage")
            if not sig.workers:
                evidence.append("no background worker: the loop loads each batch itself")
            return Verdict("latency", evidence,
                           f"keep at least L / S = {L / S:.1f} batches in flight: "
                           f"workers = prefetch = {need}", m.busy_fraction(),
                           gain(m.busy_fraction(), m.period_s),
                           {"workers": need, "prefetch": need}, m)
        # CPU-bound: which CPU work, and can more workers run it?
        solo = stage[slowest]
        ran = sig.run_stage_s.get(slowest, solo)
        evidence.append(f"the slowest stage, {slowest}, is CPU work: {_ms(ran)} per batch in "
                        f"the run ({ran / solo if solo else 1:.1f}× alone); the loader used "
                        f"{sig.loader_cores:.2f} of {cores} cores")
        workers = sig.workers or 0
        # thread workers whose CPU work kept less than about 1.5 cores busy: it holds the GIL
        # (or other programs hold the cores), so the forecast gives them one core
        usable = 1 if sig.kind == "threads" and sig.loader_cores < 1.5 else cores
        if usable < cores:
            evidence.append(f"thread workers on about one core: forecasts with {usable} core")
        if workers > cores:
            m = _model(stage, S, cores, max(sig.prefetch or cores, cores), usable)
            return Verdict("oversubscribed", evidence,
                           f"{workers} workers take turns on {cores} cores: use {cores}, as "
                           "fast; to go faster, cut the CPU per batch (02, 03) or add cores",
                           m.busy_fraction(), gain(m.busy_fraction(), m.period_s),
                           {"workers": cores, "prefetch": m.prefetch}, m)
        if sig.bytes_per_token and sig.itemsize:
            bpt, isz = sig.bytes_per_token, sig.itemsize
            evidence.append(f"{bpt:.2f} bytes fetched per token; a stored ID takes {isz}")
            scale = isz / bpt
            m = _model(stage, S, max(workers, 1), max(sig.prefetch or 1, 1), usable,
                       scale_read=scale, drop=("decompress",))
            if bpt > 1.2 * isz:
                return Verdict("tokenize", evidence,
                               "tokenize once, before training, and read token IDs",
                               m.busy_fraction(), gain(m.busy_fraction(), m.period_s), {}, m)
            if bpt < 0.95 * isz:
                return Verdict("decompress", evidence,
                               f"read plain shards ({1 / scale:.2f}× the bytes, no "
                               "decompression) or a faster codec", m.busy_fraction(),
                               gain(m.busy_fraction(), m.period_s), {}, m)
    # no stage information (any iterable), or CPU-bound on plain IDs
    loader_cores = sig.loader_cores
    evidence.append(f"CPU: the loader kept {loader_cores:.2f} of {cores} cores busy "
                    f"({sig.children_cpu_s / sig.seconds if sig.seconds else 0:.2f} in child "
                    "processes)")
    per_wait = sig.inline_cpu_s / sig.wait_s if sig.wait_s > 0 else 0.0
    if per_wait >= CPU_SHARE:
        L = sig.wait_s / sig.steps
        evidence.append(f"the loop's own thread was on the CPU {per_wait:.0%} of its waits: "
                        "the batch is made in the loop, not beside it")
        m = PipelineModel(0.0, 0.0, L, S, workers=1, prefetch=1, cores=cores)
        return Verdict("serial", evidence,
                       "make batches beside the loop: a background worker and a prefetch "
                       "queue (processes if the work is Python)", m.busy_fraction(),
                       gain(m.busy_fraction(), m.period_s))
    if loader_cores >= 0.8 * cores:
        return Verdict("cpu", evidence, "every core is busy making batches: cut the CPU per "
                       "batch (pretokenize, a faster codec) or add machines", busy, 1.0)
    if cores > 1 and sig.children_cpu_s < 0.1 * sig.process_cpu_s and \
            0.7 <= loader_cores + sig.step_cpu_s / max(sig.seconds, 1e-9) <= 1.3 and \
            sig.kind != "processes":
        return Verdict("gil", evidence,
                       f"one process used about one core of {cores}: move the Python work to "
                       "process workers", min(1.0, busy * cores), min(cores, 1 / busy))
    # waiting with the CPU mostly idle: too few requests in flight
    period = sig.seconds / sig.steps
    need = max(1, math.ceil(sig.in_flight * period / S - 1e-9)) if S > 0 else sig.in_flight
    return Verdict("latency", evidence,
                   f"the loader is mostly waiting: keep about {need} batches in flight "
                   f"(now {sig.in_flight}; more workers, deeper prefetch)", 1.0, 1 / busy)


# --------------------------------------------------------------------------- the simulated step


def hold_gil(cpu_seconds: float) -> None:
    """Run pure Python for ``cpu_seconds`` of this thread's CPU time, holding the GIL as
    Python-side work does (the interpreter hands it over only every switch interval). Time
    spent waiting for the GIL or a core does not count: contention makes it take longer."""
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        pass


def simulated_step(step_s: float, gil_share: float = 0.0):
    """A training step of ``step_s`` seconds: ``gil_share`` of it pure Python holding the GIL
    (dispatch, logging, the optimizer's Python side), the rest a sleep standing in for the
    accelerator (a GPU kernel holds no Python lock)."""
    if not step_s >= 0:
        raise ParameterError(f"step time must be >= 0 seconds, got {step_s!r}.")
    if not 0.0 <= gil_share <= 1.0:
        raise ParameterError(f"gil_share is the share of the step that holds the GIL, from 0 "
                             f"to 1; got {gil_share!r}.")

    def step(batch=None) -> None:
        if gil_share > 0:
            hold_gil(gil_share * step_s)
        rest = (1.0 - gil_share) * step_s
        if rest > 0:
            time.sleep(rest)

    step.step_s, step.gil_share = step_s, gil_share
    return step


# --------------------------------------------------------------------------- the probe


def _children_cpu() -> float | None:
    """CPU seconds of this process's live child processes (None without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _kit_loader(batches):
    """The kit's Loader behind ``batches`` (itself, or None)."""
    return batches if hasattr(batches, "timeline") and hasattr(batches, "source") and \
        hasattr(batches, "prefetch") else None


@dataclass
class ProbeReport:
    """What :func:`probe` measured, and the verdict."""

    what: str
    signals: Signals
    verdict: Verdict
    timeline: Timeline
    wait_s: list[float]
    compute_s: list[float]
    step_about: str
    notes: list[str] = field(default_factory=list)

    @property
    def busy_fraction(self) -> float:
        return self.signals.busy

    @property
    def batches_per_s(self) -> float:
        return self.signals.batches_per_s

    @property
    def input_bound(self) -> bool:
        return self.verdict.input_bound

    def __str__(self) -> str:
        s = self.signals
        lines = [f"iokit probe: {s.steps} steps of {self.step_about}, on {self.what}",
                 f"  delivered      {s.batches_per_s:,.1f} batches/s "
                 f"({_ms(s.seconds / max(s.steps, 1))} per batch), {s.seconds:.2f} s in all",
                 f"  waiting        {s.wait_s:.2f} s ({s.wait_s / s.seconds:.0%} of the time), "
                 f"{_ms(s.wait_s / max(s.steps, 1))} per step",
                 f"  busy fraction  {s.busy:.0%}"]
        if self.verdict.input_bound:
            lines.append(f"  input-bound    yes: {1 / s.busy if s.busy else math.inf:.1f}× the "
                         "steps per second if the data were always ready")
        else:
            lines.append("  input-bound    no: the loop computes almost all the time")
        lines.append(f"  CPU            loader {s.loader_cores:.2f} cores of {s.cores} "
                     f"(child processes {s.children_cpu_s / s.seconds:.2f}); the loop's thread "
                     f"in next(): {_ms(s.inline_cpu_s / max(s.steps, 1))} per step")
        if s.run_stage_s:
            lines.append("  stages         " + ", ".join(
                f"{k} {_ms(v)}" for k, v in s.run_stage_s.items())
                + f" per batch (the kit's loader: {s.workers} workers, prefetch {s.prefetch})")
        lines += [f"  note           {n}" for n in self.notes]
        lines += ["  " + line for line in str(self.verdict).splitlines()]
        return "\n".join(lines)


def probe(batches, step=None, *, step_s: float | None = None, steps: int = 200,
          warmup: int = 2, what: str = "") -> ProbeReport:
    """Run ``steps`` training steps over ``batches`` (any iterable) and diagnose the loader.

    ``step`` is a function called with each batch, or give ``step_s`` for a simulated step of
    that many seconds (a sleep: :func:`simulated_step`). ``warmup`` batches are taken first
    and not counted (worker start-up, first requests). Nothing of ``batches`` is changed; the
    kit's own loader adds its per-stage spans (read, decompress, batch) to the report.
    """
    steps = check_positive("steps", steps, hint="Use e.g. 200.")
    if step is None:
        if step_s is None:
            raise ParameterError("give a training step: a function of the batch (step=) or a "
                                 "step time in seconds (step_s=, e.g. 0.005).")
        step = simulated_step(step_s)
    elif not callable(step):
        raise ParameterError(f"step must be a function of the batch, got {step!r}.")
    about = (f"{_ms(step.step_s)} (simulated)" if hasattr(step, "step_s") else
             f"{getattr(step, '__name__', 'the step')}()")
    kit = _kit_loader(batches)
    lent = kit is not None and kit.timeline is None  # a loader records only with a timeline:
    if lent:  # lend it one for the run (and take it back after)
        kit.timeline = Timeline()
    tl = kit.timeline if kit is not None else Timeline()
    first = len(tl.spans)
    it = iter(batches)
    waits, computes = [], []
    inline_cpu = step_cpu = 0.0
    notes = []
    try:
        for _ in range(warmup):
            if next(it, None) is None:
                break
        first = len(tl.spans)
        cpu0, kids0 = time.process_time(), _children_cpu()
        start = tl.now()
        while len(computes) < steps:
            c0, t0 = time.thread_time(), tl.now()
            batch = next(it, None)
            t1, c1 = tl.now(), time.thread_time()
            if batch is None:
                notes.append(f"the iterable ended after {len(computes)} steps")
                break
            step(batch)
            t2 = tl.now()
            step_cpu += time.thread_time() - c1
            inline_cpu += c1 - c0
            tl.add("wait", t0, t1, "trainer")
            tl.add("train", t1, t2, "trainer")
            waits.append(t1 - t0)
            computes.append(t2 - t1)
        seconds = tl.now() - start
        cpu = time.process_time() - cpu0
        kids1 = _children_cpu()
    finally:
        if hasattr(it, "close"):
            it.close()
        if lent:
            kit.timeline = None
    if not computes:
        raise ParameterError(f"{what or 'the iterable'} gave no batch after {warmup} warm-up "
                             "batches; give a loader with more batches, or --warmup 0.")
    if kids0 is None or kids1 is None:
        kids = 0.0
        notes.append("child processes' CPU not counted (needs psutil: pip install psutil)")
    else:
        kids = max(kids1 - kids0, 0.0)  # workers that ended during the run are not counted
    sig = Signals(len(computes), seconds, sum(computes), sum(waits), os.cpu_count() or 1,
                  process_cpu_s=cpu, children_cpu_s=kids, inline_cpu_s=inline_cpu,
                  step_cpu_s=step_cpu, nominal_step_s=getattr(step, "step_s", None))
    if kit is not None:
        sig.workers, sig.prefetch, sig.kind = kit.workers, kit.prefetch, "threads"
        sums: dict[str, list[float]] = {}
        for sp in tl.spans[first:]:
            if sp.worker != "trainer":
                sums.setdefault(sp.stage, []).append(sp.seconds)
        sig.run_stage_s = {k: sum(v) / len(v) for k, v in sums.items()}
        made = [sp.worker for sp in tl.spans[first:] if sp.stage == "batch"]
        own = made.count("loop")
        if own:  # the loader's workers stood down: its batches were quicker than a hand-off
            notes.append(f"the loop made {own} of {len(made)} batches itself (batches this "
                         "quick gain nothing from a hand-off, so the workers stood down; "
                         "its CPU in next() is that work)")
        what = what or f"the kit's loader ({kit.workers} workers, prefetch {kit.prefetch})"
    else:
        for name in ("num_workers", "workers"):  # a PyTorch DataLoader says how many
            n = getattr(batches, name, None)
            if isinstance(n, int):
                sig.workers = n
                sig.kind = "processes" if name == "num_workers" and n > 0 else sig.kind
                pf = getattr(batches, "prefetch_factor", None)
                sig.prefetch = (pf or 2) * n if name == "num_workers" and n else sig.prefetch
                break
    return ProbeReport(what or type(batches).__name__, sig, diagnose(sig), tl, waits,
                       computes, about, notes)


# --------------------------------------------------------------------------- a learner's loader


def load_target(target: str, args: tuple = ()):
    """The iterable named by ``path/to/script.py:name`` (or ``module.name:attr``): ``name`` is
    an iterable, or a callable returning one (called with ``args``). The script is imported
    as a module, so code under ``if __name__ == "__main__"`` does not run."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise ParameterError(f"{target!r}: give the loader as path/to/script.py:name (a "
                             "function that returns an iterable of batches, or the iterable).")
    path = Path(where)
    if where.endswith(".py"):
        if not path.is_file():
            raise ParameterError(f"{where}: no such script; check the path.")
        spec = importlib.util.spec_from_file_location(f"probed_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent.resolve()))  # the script's own imports
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent.resolve()))
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ParameterError(f"{where}: cannot import it ({exc}); give a .py path or an "
                                 "importable module.") from None
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            names = [k for k, v in vars(module).items() if not k.startswith("_")
                     and not isinstance(v, type(sys))]  # modules it imported are not its own
            raise ParameterError(f"{where} has no {name!r}; it defines "
                                 + (", ".join(names) or "nothing to probe") + ".")
        obj = getattr(obj, part)
    if callable(obj) and not hasattr(obj, "__iter__"):
        obj = obj(*args)
    if not hasattr(obj, "__iter__") and not hasattr(obj, "__next__"):
        raise ParameterError(f"{target}: gave {type(obj).__name__}, not an iterable of "
                             "batches; return a generator, a list or a DataLoader.")
    return obj
