"""Measurements for the batch job (notebook 07): where the model is loaded, how big the tasks
are, the cost model, and a run killed midway and resumed.

* :func:`batch_corpus` — the documents the notebook's runs summarise: the whole corpus at
  ``tiny``, its first 8 MiB above (each configuration runs several times).
* :func:`measure_load`, :func:`measure_work` — the cost model's two measured parameters: one
  load of the model, and one worker's rate at summarising (no I/O), each measured in worker
  processes running as many at once as the runs will.
* :func:`time_batches` — whole runs of :func:`iokit.batch.summarize_corpus` for several
  configurations, timed in turn (:func:`iokit.timing.interleaved`), pool start-up included.
* :func:`fit_batch`, :func:`batch_checks` — :class:`iokit.costs.BatchCostModel` calibrated on
  some runs and checked on the others.
* :func:`run_timeline` — one run's tasks as a timeline (one row per worker process).
* :func:`kill_midway` — ``iokit summarize`` started in a subprocess and killed (SIGKILL) once
  part of its pieces are finished; the next run resumes from them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from iokit.atomic import output_lock
from iokit.batch import (
    OUTPUT_NAME,
    BatchRun,
    finished_pieces,
    manifest_path,
    plan_tasks,
    summarize_corpus,
    work_folder,
)
from iokit.corpus import corpus_head, iter_documents, open_corpus, resolve_scale
from iokit.costs import BatchCostModel, Check
from iokit.errors import StorageError
from iokit.lab.scaling import scale_repeat
from iokit.parallel import WorkerPool
from iokit.summarize import load_summarizer
from iokit.timing import Timeline, Timing, interleaved, timeline_from

HEAD_BYTES = {"tiny": None, "small": 8 << 20, "large": 8 << 20}  # text the runs summarise


def batch_corpus(corpus, folder) -> Path:
    """The corpus the notebook's runs use: all of it at ``tiny``, its first 8 MiB above."""
    return corpus_head(open_corpus(corpus, progress=False), folder,
                       HEAD_BYTES[resolve_scale()])


def _timed_load(model_path: str, _item=None) -> float:
    start = time.perf_counter()
    load_summarizer(model_path)
    return time.perf_counter() - start


_held: dict = {}  # a measuring worker's model and texts, loaded once


def _hold(model_path: str, corpus: str) -> None:
    _held["model"] = load_summarizer(model_path)
    _held["texts"] = [d.text for d in iter_documents(corpus)]


def _timed_work(_item=None) -> float:
    model, texts = _held["model"], _held["texts"]
    start = time.perf_counter()
    for t in texts:
        model.summarize(t)
    return time.perf_counter() - start


def _in_workers(fn, workers: int, repeat: int, **pool) -> list[float]:
    """``fn`` run ``workers`` at a time, ``repeat`` rounds after one warm-up round."""
    with WorkerPool(workers, "processes", **pool) as p:
        return p.map(fn, range(workers * (repeat + 1)))[workers:]


def _processes(n: int) -> str:
    return f"{n} process{'es' if n != 1 else ''}"


def measure_load(model_path, workers: int = 2, repeat: int = 3) -> Timing:
    """One load of the model (read, check, parse) in a worker process, while ``workers`` of
    them load it at once (the conditions of a run on that many workers: on a shared machine a
    worker's speed depends on how many run together)."""
    seconds = _in_workers(partial(_timed_load, str(model_path)), workers, repeat)
    return Timing(seconds, label=f"load the model, {_processes(workers)} at once")


def measure_work(corpus, model_path, workers: int = 2, repeat: int | None = None) -> Timing:
    """Summarising every document of ``corpus`` in a worker process (the model loaded and the
    texts read beforehand: the work alone), ``workers`` of them at once: one worker's rate
    (``nbytes`` is the corpus's size, so it compares with the runs' bytes of input)."""
    seconds = _in_workers(_timed_work, workers, scale_repeat(repeat), initializer=_hold,
                          initargs=(str(model_path), str(corpus)))
    return Timing(seconds, Path(corpus).stat().st_size,
                  label=f"summarise, {_processes(workers)} at once")


@dataclass
class BatchPoint:
    """One configuration of the batch job and its timed runs."""

    label: str
    workers: int
    loads: str
    docs_per_task: int
    task_bytes: list[int]
    timing: Timing | None = None
    runs: list[BatchRun] = field(default_factory=list, repr=False)

    @property
    def last(self) -> BatchRun:
        return self.runs[-1]

    def __str__(self) -> str:
        run = self.last
        return (f"{self.label:<34} {self.timing.median:7.2f} s (min {self.timing.min:.2f}, max "
                f"{self.timing.max:.2f}, {len(self.timing.seconds)} runs); {run.tasks} tasks, "
                f"{run.loads_done} model loads")


def batch_point(corpus, label: str, *, workers: int, loads: str = "worker",
                docs_per_task: int = 16) -> BatchPoint:
    """A configuration to time (its tasks planned, nothing run yet)."""
    return BatchPoint(label, workers, loads, docs_per_task,
                      [p.nbytes for p in plan_tasks(corpus, docs_per_task)])


def time_batches(corpus, model_path, folder, points: list[BatchPoint], *,
                 repeat: int | None = None, warmup: int = 1) -> list[BatchPoint]:
    """Time whole runs of every configuration in ``points``, in turn (each into its own
    folder under ``folder``; its output removed before each run, so each does all the work)."""
    folder = Path(folder)

    def run(i: int, point: BatchPoint):
        out = folder / f"run-{i}"
        (out / OUTPUT_NAME).unlink(missing_ok=True)
        point.runs.append(summarize_corpus(corpus, model_path, out, workers=point.workers,
                                           loads=point.loads,
                                           docs_per_task=point.docs_per_task))

    fns = [lambda i=i, p=p: run(i, p) for i, p in enumerate(points)]
    timings = interleaved(*fns, repeat=scale_repeat(repeat), warmup=warmup,
                          nbytes=Path(corpus).stat().st_size)
    for point, timing in zip(points, timings):
        point.timing = timing
        point.runs = point.runs[warmup:]
    return points


def fit_batch(load: Timing, work: Timing, calibration: list[BatchPoint],
              cores: int | None = None) -> BatchCostModel:
    """The cost model: ``ℓ`` and ``r`` measured apart, ``o`` and ``T₀`` fitted to the
    ``calibration`` runs (medians)."""
    return BatchCostModel.fit(load.median, work.nbytes / work.median,
                              [(p.task_bytes, p.workers, p.loads, p.timing.median)
                               for p in calibration], cores or os.cpu_count() or 1)


def batch_checks(model: BatchCostModel, points: list[BatchPoint], calibrated_on: str
                 ) -> list[Check]:
    """The model's prediction for each of ``points`` (runs it was not fitted to)."""
    return [Check(f"batch job, {p.label}", calibrated_on, p.label,
                  model.predict(p.task_bytes, p.workers, p.loads), p.timing.median, kind="fit")
            for p in points]


def run_timeline(run: BatchRun, stage: str = "summarise") -> Timeline:
    """The tasks of one run as a timeline: one row per worker process, one bar per task."""
    return timeline_from((str(p.worker), stage, p.start, p.end) for p in run.pieces)


# --------------------------------------------------------------------------- kill and resume


def wait_unlocked(folder, timeout_s: float = 10.0) -> None:
    """Wait until no process holds ``folder``'s single-writer lock (a killed run's worker
    processes hold it until they have ended too)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with output_lock(folder):
                return
        except StorageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@dataclass
class Killed:
    """A run killed midway: how many tasks it had, and how many pieces it had finished."""

    tasks: int
    finished: int
    output_there: bool  # was summaries.jsonl there after the kill? (it must not be)
    seconds: float  # from the start of the command to the kill

    def __str__(self) -> str:
        return (f"killed (SIGKILL) after {self.seconds:.2f} s with {self.finished} of "
                f"{self.tasks} pieces finished; {OUTPUT_NAME} there: {self.output_there}")


def kill_midway(corpus, model_path, out_dir, *, workers: int = 2, docs_per_task: int = 8,
                fraction: float = 0.4, timeout_s: float = 120.0) -> Killed:
    """Start ``iokit summarize`` on ``corpus`` in a subprocess and kill it (SIGKILL: no
    clean-up runs) once ``fraction`` of its pieces are in the manifest."""
    tasks = len(plan_tasks(corpus, docs_per_task))
    target = max(1, int(tasks * fraction))
    cmd = [sys.executable, "-m", "iokit", "summarize", "--corpus", str(corpus), "--out",
           str(out_dir), "--model", str(model_path), "--workers", str(workers),
           "--docs-per-task", str(docs_per_task)]
    manifest = manifest_path(out_dir)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "IOKIT_PROGRESS": "0"})
    try:
        while _lines(manifest) < target:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace").strip()
                raise RuntimeError(f"the run ended (exit code {proc.returncode}) before "
                                   f"{target} pieces were finished; nothing to kill. {err}")
            if time.perf_counter() - start > timeout_s:
                raise RuntimeError(f"no {target} pieces after {timeout_s:.0f} s")
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        seconds = time.perf_counter() - start
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    wait_unlocked(out_dir)
    done = len(finished_pieces(work_folder(out_dir)))
    return Killed(tasks, done, (Path(out_dir) / OUTPUT_NAME).exists(), seconds)


def pieces_on_disk(out_dir) -> int:
    """Finished piece files in a run's work folder."""
    work = work_folder(out_dir)
    return len(list(work.glob("piece-*.jsonl"))) if work.is_dir() else 0


def plot_task_timelines(runs: list[BatchRun], titles: list[str]):
    """One Gantt chart per run, stacked, on one time axis from the first task's start: a row
    per worker process, a bar per task (its model load, if it loads one, in red). A gap at a
    row's end is a worker waiting for the others; one before its first bar, its start-up."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 1.0 + 1.3 * len(runs)), squeeze=False,
                             sharex=True)
    t_max = max((p.end - min(q.start for q in r.pieces) for r in runs for p in r.pieces),
                default=1.0)
    for ax, run, title in zip(axes[:, 0], runs, titles):
        t0 = min((p.start for p in run.pieces), default=0.0)
        workers = sorted({p.worker for p in run.pieces},
                         key=lambda w: min(p.start for p in run.pieces if p.worker == w))
        for row, w in enumerate(workers):
            mine = [p for p in run.pieces if p.worker == w]
            ax.broken_barh([(p.start - t0 + p.load_s, max(p.seconds - p.load_s, 1e-5))
                            for p in mine], (row - 0.4, 0.8), facecolors="tab:cyan",
                           edgecolor="white", linewidth=0.5,
                           label="summarise + write a piece" if row == 0 else None)
            loads = [(p.start - t0, p.load_s) for p in mine if p.load_s > 0]
            if loads:
                ax.broken_barh(loads, (row - 0.4, 0.8), facecolors="tab:red",
                               edgecolor="white", linewidth=0.5,
                               label="load the model" if row == 0 else None)
        ax.set_yticks(range(len(workers)), [f"worker {i + 1}" for i in range(len(workers))])
        ax.set_ylim(len(workers) - 0.5, -0.5)
        ax.set_xlim(0, t_max * 1.02)
        ax.set_title(title, fontsize="medium")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    axes[-1, 0].set_xlabel("time since the first task started (s)")
    fig.tight_layout()
    return axes[:, 0]
