"""A simulated training loop fed by the loader, and the walk from the naive loader to the pipeline.

:func:`train` stands in for the accelerator with a sleep per step and records, per step, the
wait for data and the compute time: their ratio is the busy fraction a learner predicts with
:class:`~iokit.costs.PipelineModel`. :func:`pipeline_walk` runs the techniques of notebook 05
one after another on the same shards; :func:`prefetch_sweep` varies the prefetch depth.
:func:`run_until_killed` trains in a child process that checkpoints the loader's state and is
killed mid-epoch, for notebook 05's resume. :func:`runs_by_storage` trains on the local disk,
the simulated presets and a real S3 endpoint in turn; :func:`endpoint_differences` says what
the real endpoint did that the presets did not.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iokit.costs import Check, PipelineModel
from iokit.errors import ParameterError
from iokit.loader import Loader, open_loader
from iokit.probe import simulated_step
from iokit.timing import Timeline

# --------------------------------------------------------------------------- the training loop


@dataclass
class TrainRun:
    """What a simulated training run saw: per step, seconds waiting for data and computing."""

    wait_s: list[float]
    compute_s: list[float]
    seconds: float  # wall time of the loop, first request to last step's end
    timeline: Timeline
    step_s: float
    settings: dict = field(default_factory=dict)
    cpu_s: float = 0.0  # CPU seconds this process used in the loop (all its threads)

    @property
    def steps(self) -> int:
        return len(self.compute_s)

    @property
    def busy_fraction(self) -> float:
        """Time the accelerator computed / the loop's wall time: 1.0 = never waited for data."""
        return sum(self.compute_s) / self.seconds if self.seconds > 0 else 0.0

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    def stage_means(self) -> dict[str, float]:
        """Mean seconds per span of each stage (read, decompress, batch, wait, train)."""
        sums: dict[str, list[float]] = {}
        for s in self.timeline.spans:
            sums.setdefault(s.stage, []).append(s.seconds)
        return {k: float(np.mean(v)) for k, v in sums.items()}

    def __str__(self) -> str:
        return (f"{self.steps} steps of {self.step_s * 1e3:.1f} ms in {self.seconds:.2f} s: "
                f"busy {self.busy_fraction:.0%}, {self.steps_per_s:,.1f} steps/s")


def train(loader: Loader, step_s: float, steps: int | None = None, gil_share: float = 0.0
          ) -> TrainRun:
    """Run a simulated training loop: each step takes a batch and computes for ``step_s``.

    The computation is a sleep, standing in for the accelerator (it holds no GIL, as a GPU
    kernel would not); with ``gil_share`` > 0 that share of each step is pure Python holding
    the GIL instead (the Python side of a real step: dispatch, the optimizer, logging), which
    thread workers doing Python work compete for (:func:`iokit.probe.simulated_step`). Per step
    it records the wait for the batch and the compute time, and puts ``wait`` and ``train``
    spans on the loader's timeline (worker ``trainer``).
    """
    if not step_s >= 0:
        raise ParameterError(f"step time must be >= 0 seconds, got {step_s!r}.")
    step = simulated_step(step_s, gil_share)
    if loader.timeline is None:  # a loader records its stages only when given a timeline
        loader.timeline = Timeline()
    tl = loader.timeline
    waits, computes = [], []
    cpu0 = time.process_time()
    start = tl.now()
    it = iter(loader)
    try:
        while steps is None or len(computes) < steps:
            t0 = tl.now()
            batch = next(it, None)
            t1 = tl.now()
            if batch is None:
                break
            tl.add("wait", t0, t1, "trainer")
            _ = batch.x.shape  # the accelerator would copy the batch here
            step(batch)
            t2 = tl.now()
            tl.add("train", t1, t2, "trainer")
            waits.append(t1 - t0)
            computes.append(t2 - t1)
    finally:
        if hasattr(it, "close"):
            it.close()
    settings = {"workers": loader.workers, "prefetch": loader.prefetch,
                "batch_size": loader.batch_size, "block_size": loader.block_size,
                "codec": getattr(loader.source, "codec", "none"), "gil_share": gil_share}
    seconds = tl.now() - start
    return TrainRun(waits, computes, seconds, tl, step_s, settings,
                    time.process_time() - cpu0)


def run_training(folder, *, step_s: float = 0.005, steps: int | None = 40,
                 gil_share: float = 0.0, **loader_kwargs) -> TrainRun:
    """Open a loader on ``folder`` (see :func:`open_loader`), train ``steps`` steps, close."""
    with open_loader(folder, **loader_kwargs) as loader:
        run = train(loader, step_s, steps, gil_share)
    run.settings["storage"] = loader_kwargs.get("storage", "local")
    return run


# --------------------------------------------------------------------------- the walk


@dataclass
class WalkStep:
    """One technique of the walk from the naive loop to the full pipeline."""

    technique: str
    removes: str  # the bottleneck it takes away
    settings: dict


WALK = [
    WalkStep("naive: the loop loads each batch", "(baseline)",
             {"workers": 0, "prefetch": 0}),
    WalkStep("+ background worker, prefetch 1",
             "loading and computing taking turns", {"workers": 1, "prefetch": 1}),
    WalkStep("+ 8 worker threads, prefetch 8",
             "storage latency (one request in flight)", {"workers": 8, "prefetch": 8}),
]
COMPRESSED_STEP = WalkStep("+ zstd:3 compressed blocks",
                           "bytes over the link (pays only when bandwidth-bound)",
                           {"workers": 8, "prefetch": 8, "codec": "zstd:3"})


@dataclass
class WalkRow:
    """A technique, its run, the model's prediction, and its speedup over the naive loop."""

    step: WalkStep
    run: TrainRun
    model: object  # PipelineModel
    speedup: float = 1.0

    @property
    def predicted_busy(self) -> float:
        return self.model.busy_fraction(self.run.steps)


def calibrate(folder, batches: int = 10, **loader_kwargs):
    """Seconds per batch of each stage, one batch at a time (no overlap): the model's input."""
    kwargs = {**loader_kwargs, "workers": 0, "prefetch": 0, "limit": batches}
    run = run_training(folder, step_s=0.0, steps=batches, **kwargs)
    means = run.stage_means()
    return means.get("read", 0.0), means.get("decompress", 0.0), means.get("batch", 0.0)


def walk_steps(compressed: bool = True) -> list[WalkStep]:
    """The walk's steps, with or without the compressed-blocks step at the end."""
    return WALK + ([COMPRESSED_STEP] if compressed else [])


def pipeline_walk(folder, *, storage: str = "object-store", step_s: float = 0.005,
                  steps: int = 40, batch_size: int = 16, block_size: int = 256,
                  walk: list[WalkStep] | None = None, on_row=None, workdir=None
                  ) -> list[WalkRow]:
    """Run every step of the walk on ``storage``; speedups are training steps per second over
    the first step's. Each row carries the model's prediction from a one-batch-at-a-time
    calibration of the same source."""
    rows: list[WalkRow] = []
    calibrations: dict = {}
    common = {"storage": storage, "batch_size": batch_size, "block_size": block_size,
              "seed": 0, "limit": steps, "workdir": workdir}
    for st in walk or walk_steps():
        kwargs = {**common, **st.settings}
        codec = kwargs.get("codec", "none")
        if codec not in calibrations:
            calibrations[codec] = calibrate(folder, **{**kwargs, "storage": storage})
        run = run_training(folder, step_s=step_s, steps=steps, **kwargs)
        model = PipelineModel(*calibrations[codec], step_s, workers=kwargs["workers"],
                              prefetch=kwargs["prefetch"], cores=os.cpu_count() or 1)
        row = WalkRow(st, run, model)
        row.speedup = run.steps_per_s / rows[0].run.steps_per_s if rows else 1.0
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def format_walk(rows: list[WalkRow], model: bool = True) -> str:
    """The walk as a plain-text table: technique, busy (and the model's, unless ``model`` is
    false: :func:`walk_checks` then shows it), steps/s, speedup, removes."""
    head = f" {'model':>6}" if model else ""
    lines = [f"{'technique':<44} {'busy':>5}{head} {'steps/s':>8} {'speedup':>8}  "
             "bottleneck removed"]
    for r in rows:
        predicted = f" {r.predicted_busy:>6.0%}" if model else ""
        lines.append(f"{r.step.technique:<44} {r.run.busy_fraction:>5.0%}{predicted} "
                     f"{r.run.steps_per_s:>8,.1f} {r.speedup:>7.1f}×  {r.step.removes}")
    return "\n".join(lines)


def prefetch_sweep(folder, depths, *, workers: int = 8, storage: str = "object-store",
                   step_s: float = 0.005, steps: int = 30, batch_size: int = 16,
                   block_size: int = 256, stage_s=None) -> list[tuple[int, TrainRun, object]]:
    """Train at each prefetch depth; return (depth, run, model) per depth. ``stage_s`` (read,
    decompress, batch seconds per batch) is calibrated here unless given."""
    common = {"storage": storage, "batch_size": batch_size, "block_size": block_size,
              "seed": 0}
    if stage_s is None:
        stage_s = calibrate(folder, **common)
    out = []
    for d in depths:
        run = run_training(folder, step_s=step_s, steps=steps, workers=workers, prefetch=d,
                           limit=steps, **common)
        out.append((d, run, PipelineModel(*stage_s, step_s, workers=workers, prefetch=d,
                                          cores=os.cpu_count() or 1)))
    return out


def walk_checks(rows: list[WalkRow]) -> list[Check]:
    """Each technique's busy fraction against the pipeline model, whose stage times come from
    a separate one-batch-at-a-time calibration run (no overlap) of the same source."""
    return [Check(f"pipeline busy: {r.step.technique}",
                  "stage times of 10 batches loaded one at a time",
                  f"{r.run.steps} steps, {r.step.settings}", r.predicted_busy,
                  r.run.busy_fraction, unit="fraction") for r in rows]


# --------------------------------------------------------------------------- a real endpoint

WHERE = [("local disk", "local"), ("simulated network-fs", "network-fs"),
         ("simulated object-store", "object-store")]
REAL_ENDPOINT = "real S3 endpoint"


def runs_by_storage(folder, *, max_shard_bytes: int = 4 << 20, workers: int = 8,
                    prefetch: int = 8, **run_kwargs) -> dict[str, TrainRun]:
    """Train the same loader on the local disk, the simulated presets (:data:`WHERE`) and a
    real S3 endpoint (:func:`iokit.remote.s3_endpoint`: yours, or the kit's loopback server,
    stopped afterwards), one after another; a run per place, by name.

    The shards are first written again in pieces of at most ``max_shard_bytes`` (the loopback
    server copies a whole object for every request, so small objects keep its requests
    cheap) and uploaded. ``run_kwargs`` go to :func:`run_training` (a ``storage`` among them
    is replaced by each place's). Needs the ``s3`` extra.
    """
    from iokit.preprocess import rewrite_shards
    from iokit.remote import require_s3, s3_endpoint, upload

    require_s3()  # before any work: the kit's error naming the extra
    run_kwargs.pop("storage", None)
    folder = Path(folder)
    small = folder.parent / f"{folder.name}-{max_shard_bytes >> 20}MiB"
    rewrite_shards(folder, small, codec=None, max_shard_bytes=max_shard_bytes)
    runs: dict[str, TrainRun] = {}
    with s3_endpoint() as endpoint:
        url = f"s3://{endpoint.bucket}/{small.name}"
        upload(small, url)
        for name, store in [*WHERE, (REAL_ENDPOINT, "fsspec")]:
            runs[name] = run_training(url if store == "fsspec" else small, storage=store,
                                      workers=workers, prefetch=prefetch, **run_kwargs)
    return runs


def format_runs_by_storage(runs: dict[str, TrainRun]) -> str:
    """One line per place: busy fraction, steps/s, read time and CPU time per batch."""
    lines = [f"{'where the shards are':<24} {'busy':>5} {'steps/s':>8} {'read/batch':>11} "
             f"{'CPU/batch':>10}"]
    for name, run in runs.items():
        read = run.stage_means().get("read", 0.0)
        lines.append(f"{name:<24} {run.busy_fraction:>5.0%} {run.steps_per_s:>8,.1f} "
                     f"{read * 1e3:>8.2f} ms {run.cpu_s / max(run.steps, 1) * 1e3:>7.2f} ms")
    return "\n".join(lines)


def endpoint_differences(runs: dict[str, TrainRun], cores: int | None = None) -> str:
    """What the real endpoint did that the simulated object store did not, from the runs: its
    read time per batch, the busy fraction, and the CPU the loader's process spent per batch
    (HTTP, parsing, copies; the loopback server's own CPU comes on top, on the same cores)."""
    real, sim = runs[REAL_ENDPOINT], runs["simulated object-store"]
    r_read = real.stage_means().get("read", 0.0)
    s_read = sim.stage_means().get("read", 0.0)
    per = {k: v.cpu_s / max(v.steps, 1) for k, v in runs.items()}
    cores = cores or os.cpu_count() or 1
    ratio = r_read / s_read if s_read > 0 else float("inf")
    return (f"The real endpoint read a batch in {r_read * 1e3:.2f} ms, {ratio:.2g}× the simulated "
            f"object store's {s_read * 1e3:.2f} ms; busy {real.busy_fraction:.0%} against "
            f"{sim.busy_fraction:.0%}. The loader's process used {per[REAL_ENDPOINT] * 1e3:.2f} ms "
            f"of CPU per batch on it against {per['simulated object-store'] * 1e3:.2f} ms on the "
            f"simulation and {per['local disk'] * 1e3:.2f} ms on local disk (HTTP and copies; "
            f"the simulation only sleeps), and a loopback server shares this machine's "
            f"{cores} core(s) with the loader.")


# --------------------------------------------------------------------------- kill and resume

_CHILD = """
import json, os, sys, time
from iokit.atomic import write_bytes_atomic
from iokit.lab.training import batch_digest
from iokit.loader import open_loader

folder, state_path, log_path, settings, batches, parent = sys.argv[1:7]
with open_loader(folder, **json.loads(settings)) as loader, open(log_path, "w") as log:
    for i, b in enumerate(loader, 1):
        log.write(batch_digest(b) + "\\n")
        log.flush()
        # a training step would run here; then the checkpoint, written whole or not at all
        write_bytes_atomic(state_path, loader.state().to_json().encode())
        if i == int(batches):
            print("checkpointed", flush=True)
            while os.getppid() == int(parent):  # wait to be killed (never outlive the parent)
                time.sleep(0.05)
            break
"""


def batch_digest(batch) -> str:
    """A short digest of a batch's x and y, to compare batches across processes."""
    return hashlib.blake2b(batch.x.tobytes() + batch.y.tobytes(), digest_size=8).hexdigest()


def run_until_killed(folder, state_path, *, batches: int, timeout_s: float = 120.0,
                     **loader_kwargs) -> list[str]:
    """Train in a child process that saves the loader's state after every batch, and kill it
    (SIGKILL: no clean-up runs, as when a job is pre-empted) once it has had ``batches``
    batches; return the digests (:func:`batch_digest`) of the batches it got. The state is
    in ``state_path``. ``loader_kwargs`` go to :func:`iokit.loader.open_loader`."""
    log_path = Path(state_path).with_suffix(".log")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(folder), str(state_path), str(log_path),
         json.dumps(loader_kwargs), str(batches), str(os.getpid())],
        stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = child.stdout.readline().strip()
        if line != "checkpointed":
            raise ParameterError(f"the training process ended before {batches} batches (exit "
                                 f"code {child.wait(timeout_s)}); ask for fewer batches.")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout_s)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    return log_path.read_text().split()
