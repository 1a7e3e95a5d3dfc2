"""Measurements for scaling out (notebook 06): engines, piece counts, trainers reading shards.

* :func:`time_engine` — one engine's preprocessing time over repeats (its workers already up).
* :func:`piece_sweep` — the same corpus cut into more and more pieces, on the same workers.
* :func:`task_stream_timeline` — dask's own record of its tasks (``get_task_stream``) as a
  :class:`~iokit.timing.Timeline`, to draw with :func:`iokit.lab.plots.timeline_gantt`.
* :func:`shards_for` — the corpus as ``n`` shards (one per piece), made once and reused.
* :func:`fit_cluster`, :func:`cluster_checks` — the cluster model fitted on runs of 1 and 2
  workers and a second piece count, checked on a piece-count sweep.
* :func:`empty_tasks`, :func:`task_costs` — what an engine (dask, Spark) costs per task and
  per job, from tasks that do nothing, at two task counts; :class:`TaskCost` turns them into
  the cluster model of that engine.
* :func:`corpus_head` — the corpus's first documents, up to a size that suits the scale: the
  piece-count sweep and the shard-count panel run many times over, so above ``tiny`` they take
  a slice (the whole corpus at ``tiny``).
* :func:`read_by_rank` — ``world_size`` trainers, one thread each, reading their part of an
  epoch (:mod:`iokit.ranks`) through one storage at the same time; each rank's time.
  :func:`rank_reads_by_storage` — the same on simulated presets and on a real S3 endpoint.
* :func:`use_server_proxy` — under JupyterHub, dask's dashboard link goes through the Jupyter
  server's proxy (jupyter-server-proxy), since ``127.0.0.1`` is the hub's machine, not yours.
  Done when this module is imported, before the notebook starts its cluster.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iokit.corpus import corpus_head, resolve_scale
from iokit.costs import Check, ClusterModel
from iokit.engines import ShardRun, pretokenize_pieces
from iokit.errors import FormatError
from iokit.lab.scaling import scale_repeat
from iokit.progress import progress_bar
from iokit.ranks import rank_windows
from iokit.shards import open_shards
from iokit.split import plan_pieces
from iokit.storage import get_preset, open_storage
from iokit.timing import Timeline, Timing, format_seconds, interleaved, timeline_from

DASK_LINK_KEY = "distributed.dashboard.link"
DASK_DEFAULT_LINK = "{scheme}://{host}:{port}/status"
PROXY_LINK = "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status"  # dask fills in both from env


def server_proxy_link(environ=None) -> str | None:
    """dask's dashboard link template for a JupyterLab behind JupyterHub (the server's
    ``/proxy/<port>/`` route, from the ``jupyter-server-proxy`` package in the ``dask`` extra),
    or None when not under JupyterHub."""
    environ = os.environ if environ is None else environ
    return PROXY_LINK if environ.get("JUPYTERHUB_SERVICE_PREFIX") else None


def use_server_proxy(environ=None) -> bool:
    """Under JupyterHub, make ``client.dashboard_link`` go through the server's proxy, unless
    the link was already configured; True when set. Works whether dask is imported yet or not."""
    link = server_proxy_link(environ)
    if link is None:
        return False
    os.environ.setdefault("DASK_DISTRIBUTED__DASHBOARD__LINK", link)  # read when dask loads
    if "dask" in sys.modules:
        import dask

        if dask.config.get(DASK_LINK_KEY, DASK_DEFAULT_LINK) == DASK_DEFAULT_LINK:
            dask.config.set({DASK_LINK_KEY: link})
    return True


use_server_proxy()


SWEEP_BYTES = {"tiny": None, "small": 16 << 20, "large": 32 << 20}  # None: the whole corpus
PANEL_BYTES = {"tiny": None, "small": 8 << 20, "large": 16 << 20}


@dataclass
class EngineTiming:
    """An engine's preprocessing time over repeats, and its last run."""

    engine: str
    workers: int
    timing: Timing
    run: ShardRun

    @property
    def label(self) -> str:
        return f"{self.engine}, {self.workers} worker{'s' * (self.workers != 1)}"


def time_engine(pieces, tokenizer, out_dir, *, engine: str, workers: int = 2, client=None,
                repeat: int | None = None, warmup: int = 1, progress: bool = True
                ) -> EngineTiming:
    """Preprocess ``pieces`` ``warmup + repeat`` times; time the last ``repeat`` runs (by
    default as many as suit the scale: :func:`iokit.lab.scaling.scale_repeat`), with a
    progress bar over the runs unless ``progress`` is false.

    Each run's time is :attr:`ShardRun.seconds`: from the first task handed out to the set
    published, with the workers already running (a local pool is started and warmed before
    its clock starts; a dask cluster is running already or started before).
    """
    runs = []
    repeat = scale_repeat(repeat)
    with progress_bar(total=warmup + repeat, desc=engine, unit="run",
                      disable=not progress) as bar:
        for _ in range(warmup + repeat):
            runs.append(pretokenize_pieces(pieces, tokenizer, out_dir, engine=engine,
                                           workers=workers, client=client, progress=False))
            bar.update()
    timed = runs[warmup:]
    nbytes = sum(p.nbytes for p in pieces)
    timing = Timing([r.seconds for r in timed], nbytes, f"{engine} ×{timed[-1].workers}")
    return EngineTiming(engine, timed[-1].workers, timing, timed[-1])


@dataclass
class PiecePoint:
    """One piece count of a sweep: the pieces' sizes and the time to preprocess them."""

    parts: int
    piece_bytes: list[int]
    timing: Timing


def piece_sweep(corpus, tokenizer, out_dir, parts, *, engine: str = "dask", workers: int = 2,
                client=None, repeat: int | None = None, warmup: int = 1, on_point=None
                ) -> list[PiecePoint]:
    """Time preprocessing ``corpus`` cut into each of ``parts`` pieces, on the same workers.

    Above the ``tiny`` scale the sweep cuts the corpus's first :data:`SWEEP_BYTES` (its
    documents, whole): the many runs then take minutes, not a quarter of an hour; each point's
    ``piece_bytes`` are what it really cut. The ``warmup`` runs come before the first piece
    count only: the same workers then stay warm for the others. ``on_point(point)`` is called
    after each piece count (to plot it as it comes); a progress bar follows the counts.
    """
    points = []
    parts = list(parts)
    corpus = corpus_head(corpus, Path(out_dir).parent, SWEEP_BYTES[resolve_scale()])
    with progress_bar(total=len(parts), desc="piece counts", unit="count") as bar:
        for i, n in enumerate(parts):
            bar.set_postfix_str(f"{n} pieces")
            pieces = plan_pieces(corpus, n)
            t = time_engine(pieces, tokenizer, out_dir, engine=engine, workers=workers,
                            client=client, repeat=repeat, warmup=warmup if i == 0 else 0,
                            progress=False).timing
            points.append(PiecePoint(n, [p.nbytes for p in pieces], t))
            bar.update()
            if on_point is not None:
                on_point(points[-1])
    return points


def task_stream_timeline(records, stage: str = "tokenize") -> Timeline:
    """Dask's task stream (the ``data`` of ``get_task_stream``) as a Timeline.

    Each record's ``compute`` span becomes a span of ``stage`` and each ``transfer`` one of
    ``"transfer"``, on a row per worker (``worker 1``, ``worker 2``, ... in order of first
    work).
    """
    return timeline_from((r["worker"], stage if s["action"] == "compute" else s["action"],
                          s["start"], s["stop"])
                         for r in records for s in r.get("startstops", ()))


def shards_for(corpus, tokenizer, folder, parts: int, *, engine: str = "processes",
               workers: int = 2) -> Path:
    """``folder`` holding ``corpus`` as ``parts`` shards (one per piece), made if needed."""
    folder = Path(folder)
    try:
        with open_shards(folder, tokenizer=tokenizer) as s:
            if len(s.shards) == parts:
                return folder
    except FormatError:
        pass
    pretokenize_pieces(plan_pieces(corpus, parts), tokenizer, folder, engine=engine,
                       workers=workers, progress=False)
    return folder


@dataclass
class RankRead:
    """One epoch read by ``world_size`` ranks at once: per-rank seconds, tokens, requests."""

    seconds: np.ndarray
    tokens: np.ndarray
    requests: np.ndarray
    nbytes: np.ndarray
    shard_bytes: list[int]

    @property
    def world_size(self) -> int:
        return len(self.seconds)

    @property
    def epoch_seconds(self) -> float:
        """When the slowest rank finished: the epoch, for trainers in lockstep."""
        return float(self.seconds.max())

    @property
    def idle_fraction(self) -> float:
        """Share of the ranks' time spent waiting for the slowest (``1 - mean / max``)."""
        most = self.epoch_seconds
        return 1.0 - float(self.seconds.mean()) / most if most > 0 else 0.0


def read_by_rank(folder, world_size: int, storage="object-store", *,
                 window_tokens: int = 32_768, epoch: int = 0, seed: int = 0,
                 url: str | None = None) -> RankRead:
    """Every rank reads its shards of one epoch, all ranks at once (one thread each).

    A rank opens each of its shards (one request for the ``.idx``) and reads its windows of
    ``window_tokens`` tokens, one request each, through ``storage`` (a name for
    :func:`iokit.storage.open_storage`, or a storage). Ranks with no shard finish at once.
    With ``url`` (the same shard set uploaded there, e.g. with :func:`iokit.remote.upload`),
    the files are read from that URL instead (``storage="fsspec"``).
    """
    store = open_storage(storage) if isinstance(storage, str) else storage

    def where(path: Path):
        return f"{url.rstrip('/')}/{path.name}" if url else path

    with open_shards(folder) as s:
        tokens = [sh.n_tokens for sh in s.shards]
        paths = [(where(sh.bin_path), where(sh.idx_path), sh.idx_path.stat().st_size)
                 for sh in s.shards]
        itemsize = s.dtype.itemsize
        shard_bytes = [sh.bin_size for sh in s.shards]
    plans = [rank_windows(tokens, r, world_size, window_tokens, epoch=epoch, seed=seed)
             for r in range(world_size)]
    seconds = np.zeros(world_size)
    requests = np.zeros(world_size, dtype=np.int64)
    nbytes = np.zeros(world_size, dtype=np.int64)
    start = threading.Barrier(world_size)

    errors: list[BaseException] = []

    def rank(r: int) -> None:
        try:
            read_plan(r)
        except BaseException as exc:  # reaches the caller below
            errors.append(exc)

    def read_plan(r: int) -> None:
        opened = set()
        start.wait()
        t0 = time.perf_counter()
        for w in plans[r]:
            bin_path, idx_path, idx_size = paths[w.shard]
            if w.shard not in opened:
                opened.add(w.shard)
                nbytes[r] += len(store.read(idx_path, 0, idx_size))
                requests[r] += 1
            nbytes[r] += len(store.read(bin_path, w.start * itemsize, len(w) * itemsize))
            requests[r] += 1
        seconds[r] = time.perf_counter() - t0

    threads = [threading.Thread(target=rank, args=(r,), name=f"rank {r}")
               for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    per_rank = np.array([sum(len(w) for w in plan) for plan in plans], dtype=np.int64)
    return RankRead(seconds, per_rank, requests, nbytes, shard_bytes)


REAL_ENDPOINT = "real S3 endpoint"


def rank_reads_by_storage(folder, world_size: int, presets=("object-store",), *,
                          window_tokens: int = 32_768, max_shard_bytes: int = 4 << 20
                          ) -> dict[str, RankRead]:
    """:func:`read_by_rank` on each simulated preset, then on a real S3 endpoint
    (:func:`iokit.remote.s3_endpoint`: yours, or the kit's loopback server, stopped
    afterwards) holding an upload of the same shards; one :class:`RankRead` per place.

    The loopback server copies a whole object for every request, so shards larger than
    ``max_shard_bytes`` are refused (write smaller ones). Needs the ``s3`` extra.
    """
    from iokit.remote import require_s3, s3_endpoint, upload

    require_s3()  # before any work: the kit's error naming the extra
    folder = Path(folder)
    with open_shards(folder) as s:
        largest = max(sh.bin_size for sh in s.shards)
    if largest > max_shard_bytes:
        raise FormatError(f"{folder}: a shard of {largest:,} bytes; the loopback S3 server "
                          f"copies a whole object per request, so upload shards of at most "
                          f"{max_shard_bytes:,} bytes (iokit.preprocess.rewrite_shards with "
                          f"max_shard_bytes).")
    reads = {f"simulated {p}": read_by_rank(folder, world_size, p, window_tokens=window_tokens)
             for p in presets}
    with s3_endpoint() as endpoint:
        url = f"s3://{endpoint.bucket}/{folder.parent.name}-{folder.name}"
        upload(folder, url)
        reads[REAL_ENDPOINT] = read_by_rank(folder, world_size, "fsspec",
                                            window_tokens=window_tokens, url=url)
    return reads


def format_rank_reads(reads: dict[str, RankRead]) -> str:
    """Per place: each rank's epoch read time, the epoch (slowest rank), idle share, and the
    time per request."""
    lines = []
    for name, got in reads.items():
        ranks = ", ".join(f"{t:.3f}" for t in got.seconds)
        per_request = float(got.seconds.sum() / max(int(got.requests.sum()), 1))
        lines.append(f"{name:<24} ranks' read time (s): {ranks}; epoch {got.epoch_seconds:.3f} "
                     f"s, idle {got.idle_fraction:.0%}, {per_request * 1e3:.2f} ms per request "
                     f"({int(got.requests.sum())} requests)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the cluster model


def run_piece_bytes(timing: EngineTiming) -> list[int]:
    """The sizes of the pieces a timed run processed, in piece order (from its tasks)."""
    return [t.in_bytes for t in sorted(timing.run.tasks, key=lambda t: t.index)]


def fit_cluster(serial: EngineTiming, runs, pieces, storage=None) -> ClusterModel:
    """The cluster model from measured runs: the single-worker rate from the ``serial`` engine's
    run of ``pieces`` (no scheduler), then the start-up, per-task and dispatch costs from
    ``runs`` (say 8 pieces on 1 and 2 workers, and a second piece count on 2 workers, which
    tells the dispatch from the start-up; each run's own pieces are read from its tasks;
    :meth:`~iokit.costs.ClusterModel.fit_runs`).

    ``storage`` (a preset name or preset) sets the shared storage's bandwidth, the cap of a
    forecast for many machines; without it the forecast has no cap.
    """
    sizes = [p.nbytes for p in pieces]
    rate = sum(sizes) / serial.timing.median
    cap = math.inf
    if storage is not None:
        cap = (get_preset(storage) if isinstance(storage, str) else storage).aggregate_bandwidth
    return ClusterModel.fit_runs([(run_piece_bytes(r), r.workers, r.timing.median)
                                  for r in runs], rate, cap)


def cluster_checks(model: ClusterModel, sweep, slots: int, calibrated_on: str,
                   skip_parts=()) -> list[Check]:
    """The cluster model against a piece-count sweep (:func:`piece_sweep`) it was not fitted
    to; piece counts in ``skip_parts`` (those of the calibration runs) are left out."""
    return [Check(f"cluster {p.parts} pieces on {slots} workers", calibrated_on,
                  f"{p.parts} pieces on {slots} workers",
                  model.predict(p.piece_bytes, slots), p.timing.median)
            for p in sweep if p.parts not in skip_parts]


# --------------------------------------------------------------------------- engines' own costs


def empty_tasks(engine: str, n: int, *, client=None, sc=None) -> list:
    """Run ``n`` tasks that do nothing (``int(i)``) as one job on ``engine``: ``"dask"`` on
    ``client``, ``"spark"`` on the SparkContext ``sc``. What such a job takes is the engine's
    own cost: handing out tasks, sending them, starting them, collecting their results."""
    if engine == "dask":
        return client.gather(client.map(int, range(n), pure=False))
    if engine == "spark":
        from iokit.spark import spark_map

        return spark_map(sc, int, [(i,) for i in range(n)])
    raise ValueError(f"empty tasks run on dask or spark, not {engine!r}")


@dataclass
class TaskCost:
    """An engine's cost per job and per task, from empty-task jobs at two or more task counts
    on ``slots`` workers (each count's median over repeats)."""

    engine: str
    slots: int
    counts: list[int]
    timings: list[Timing]

    def model(self, bytes_per_s: float, storage_bandwidth: float = math.inf) -> ClusterModel:
        """The cluster model of this engine: its start-up (per job) and per-task overhead fitted
        to the empty tasks, the work at ``bytes_per_s`` (a serial run's rate)."""
        return ClusterModel.fit_runs([([0] * n, self.slots, t.median)
                                      for n, t in zip(self.counts, self.timings)],
                                     bytes_per_s, storage_bandwidth)

    @property
    def per_task_s(self) -> float:
        """Seconds of a worker's time each task costs (the fitted per-task overhead)."""
        return self.model(1.0).overhead_s

    @property
    def per_job_s(self) -> float:
        """Seconds every job costs, whatever its task count (the fitted start-up)."""
        return self.model(1.0).startup_s

    def __str__(self) -> str:
        runs = ", ".join(f"{n} tasks {format_seconds(t.median)}"
                         for n, t in zip(self.counts, self.timings))
        return (f"{self.engine} on {self.slots} workers: empty jobs of {runs} (medians): "
                f"{format_seconds(self.per_task_s)} per task, {format_seconds(self.per_job_s)} "
                "per job")


def task_costs(engines: dict, counts=(8, 32), *, repeat: int | None = None,
               warmup: int = 1) -> dict[str, TaskCost]:
    """Each engine's :class:`TaskCost`: empty-task jobs of each of ``counts`` tasks, all
    engines and counts taken in turn (:func:`iokit.timing.interleaved`, so a busy moment of
    the machine slows every side alike). ``engines`` maps ``"dask"`` to its client and
    ``"spark"`` to its SparkContext."""
    from functools import partial

    jobs, slots = [], {}
    for engine, handle in engines.items():
        kw = {"client": handle} if engine == "dask" else {"sc": handle}
        slots[engine] = (len(handle.scheduler_info()["workers"]) if engine == "dask"
                         else handle.defaultParallelism)
        jobs += [(engine, partial(empty_tasks, engine, n, **kw)) for n in counts]
    timings = interleaved(*(fn for _, fn in jobs), repeat=scale_repeat(repeat), warmup=warmup)
    out = {}
    for engine in engines:
        mine = [t for (e, _), t in zip(jobs, timings) if e == engine]
        out[engine] = TaskCost(engine, slots[engine], list(counts), mine)
    return out
