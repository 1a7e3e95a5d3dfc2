"""Engines for preprocessing at scale: one task per input piece, one shard per task.

::

    pieces = plan_pieces(corpus, parts=8)          # or a folder of part-NNNNN.jsonl files
    run = pretokenize_pieces(pieces, tokenizer, "data/shards", engine="dask", workers=2)

The task, :func:`shard_piece`, is one plain function: read a piece of the corpus (a path and a
byte range), tokenize it, write shard ``i``. What runs it is the *engine*:

==========  ==================================================================================
serial      the caller, one piece after another (the baseline)
threads     a thread pool (:class:`iokit.parallel.WorkerPool`)
processes   a process pool on this machine (:class:`iokit.parallel.WorkerPool`)
dask        ``dask.distributed``: a ``LocalCluster`` of ``workers`` processes on this machine,
            or any running cluster given as ``client=Client("tcp://scheduler:8786")``
spark       Apache Spark (:mod:`iokit.spark`): ``local[workers]`` in this process's JVM, or
            any cluster given as ``master="spark://host:7077"``; one session per process,
            started on first use and reused
==========  ==================================================================================

Only small things travel with a task (a path, two offsets, the shard number, the path of the
saved tokenizer); a worker reads its own input and writes its own shard. That is why the same
function runs unchanged on a cluster, provided every worker sees the same files (a shared file
system) and has iokit installed.

Shard ``i`` depends only on piece ``i``, the tokenizer and the settings, so the shards are
byte-identical whatever the engine, the worker count or the order tasks finish in.

**Nothing half-done is published.** Tasks write into a hidden staging folder inside
``out_dir`` (each file atomically). Only when every task has succeeded are the shards moved
into ``out_dir`` (replacing an older set) and ``vocab.json`` written, last. A failed task,
an error or Ctrl-C cancels the rest and removes the staging folder, leaving ``out_dir`` as it
was; a staging folder left by a crashed machine is removed by the next run. (Hadoop and Spark
commit job output the same way.) A run holds ``out_dir``'s single-writer lock
(:func:`iokit.atomic.output_lock`), so a second run into it fails at once instead of removing
the first one's live staging folder. ``workers`` is capped at the number of pieces.

A remote cluster is reached with :func:`connect_scheduler`, which checks the address first and
bounds the whole connection in time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from iokit import tasks
from iokit.atomic import output_folder
from iokit.errors import (
    ParameterError,
    StorageError,
    WorkerDiedError,
    check_choice,
    check_positive,
)
from iokit.parallel import WorkerPool, worker_count
from iokit.progress import progress_bar
from iokit.shards import (
    VOCAB_FILE,
    _compression,
    _remove_shards,
    _resolve_dtype,
    shard_paths,
    write_shard,
)
from iokit.split import Piece
from iokit.timing import MB, Timeline, timeline_from
from iokit.tokenize import encode_corpus, quiet_fork

ENGINES = ("serial", "threads", "processes", "dask", "spark")
STAGING_PREFIX = ".iokit-staging-"
MAX_PIECES = 100_000  # shard numbers have five digits


@dataclass(frozen=True)
class ShardTask:
    """What one task did: which shard, on which worker, when (wall-clock seconds), how much."""

    index: int
    worker: str
    start: float
    end: float
    docs: int
    tokens: int
    in_bytes: int
    out_bytes: int

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class ShardRun:
    """A preprocessing run: the shards written and the tasks that wrote them."""

    engine: str
    workers: int
    bins: list[Path]
    tasks: list[ShardTask]
    seconds: float  # wall time of the whole run, start-up of the workers excluded

    @property
    def in_bytes(self) -> int:
        return sum(t.in_bytes for t in self.tasks)

    @property
    def tokens(self) -> int:
        return sum(t.tokens for t in self.tasks)

    def timeline(self, stage: str = "tokenize") -> Timeline:
        """The tasks as a :class:`~iokit.timing.Timeline`: one row per worker (named
        ``worker 1``, ``worker 2``, ... in order of first task), one span per task."""
        return timeline_from((t.worker, stage, t.start, t.end) for t in self.tasks)

    def __str__(self) -> str:
        return (f"{self.engine} with {self.workers} worker(s): {len(self.bins)} shards, "
                f"{self.tokens:,} tokens from {self.in_bytes / MB:.1f} MB in "
                f"{self.seconds:.2f} s ({self.in_bytes / MB / self.seconds:.1f} MB/s)")


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def shard_piece(piece: Piece, index: int, last: bool, *, vocab_path: str, out_dir: str,
                dtype: str, codec, block_bytes: int | None, text_field: str) -> ShardTask:
    """The task: tokenize ``piece`` and write it as shard ``index`` in ``out_dir``.

    Runs anywhere iokit is installed and the paths are visible: it loads the tokenizer once
    per worker process and returns only a small record of what it did.
    """
    start = time.time()
    tok = tasks.load_tokenizer_once(vocab_path)
    texts = tasks.read_texts(piece.path, (piece.start, piece.end), text_field)
    counts = []

    def arrays():
        for a in encode_corpus(texts, tok):
            counts.append(len(a))
            yield a

    bin_path = write_shard(arrays(), out_dir, index, last=last, vocab_size=tok.vocab_size,
                           fingerprint=tok.fingerprint, dtype=dtype, codec=codec,
                           block_bytes=block_bytes)
    return ShardTask(index, _worker_name(), start, time.time(), len(counts), sum(counts),
                     piece.nbytes, bin_path.stat().st_size)


# --------------------------------------------------------------------------- dask


def require_dask():
    """``dask.distributed``, or a ParameterError saying how to install it."""
    try:
        import dask.distributed
    except ImportError:
        raise ParameterError(
            "engine='dask' needs the optional 'dask' extra: pip install -e '.[dask]'  "
            "(or: pip install 'dask[distributed]')"
        ) from None
    return dask.distributed


_SCHEDULER = re.compile(r"^(?:(?P<scheme>tcp|tls|ws|wss|ucx)://)?(?P<host>\[[0-9a-fA-F:]+\]|"
                        r"[A-Za-z0-9_.-]+)(?::(?P<port>\d{1,5}))?/?$")


def connect_scheduler(address: str, timeout_s: float = 10.0):
    """A ``dask.distributed.Client`` connected to the scheduler at ``address``, or the kit's
    error within about ``timeout_s`` seconds.

    The address is checked first (``tcp://host:8786``, ``host:8786``); nothing listening is
    found at once, and a port where something else answers (dask's own timeout does not cover
    every such case) gets the same error when the time is up.
    """
    distributed = require_dask()
    m = _SCHEDULER.match(str(address).strip()) if isinstance(address, str) else None
    port = int(m["port"]) if m and m["port"] else None
    if m is None or port is None and m["scheme"] is None or (port is not None and
                                                             not 0 < port < 65536):
        raise ParameterError(f"{address!r} is not a dask scheduler address; give one like "
                             "tcp://host:8786 (scheme, host and port).")
    hint = ("check the address and that a scheduler runs there (start one with "
            "`dask scheduler`)")
    if m["scheme"] in (None, "tcp") and port is not None:
        try:  # a quick look first: nothing listening is known at once
            socket.create_connection((m["host"].strip("[]"), port), timeout=timeout_s).close()
        except OSError as exc:
            why = exc.strerror or str(exc) or type(exc).__name__
            raise StorageError(f"{address}: cannot reach a dask scheduler ({why}); "
                               f"{hint}.") from None
    result: dict = {}

    def connect() -> None:
        try:
            result["client"] = distributed.Client(address, timeout=f"{timeout_s}s")
        except BaseException as exc:  # reported below, in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=connect, name="iokit-connect", daemon=True)
    thread.start()
    thread.join(timeout_s + 2)
    if "client" in result:
        return result["client"]
    why = (f"{type(result['error']).__name__}: {result['error']}" if "error" in result
           else f"no answer in {timeout_s:g} s")
    raise StorageError(f"{address}: no dask scheduler answered ({why}); {hint}.")


def start_local_cluster(workers: int = 2, dashboard: bool = True):
    """A ``dask.distributed.Client`` on a new ``LocalCluster`` of ``workers`` processes.

    One thread per worker: tokenizing is Python code, so threads in one process would share
    the GIL. ``client.dashboard_link`` is the live dashboard (task stream, progress, memory).
    Close with ``client.close(); client.cluster.close()`` (or :func:`close_cluster`).
    """
    distributed = require_dask()
    workers = check_positive("workers", workers, hint="Use e.g. os.cpu_count().")
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, silence_logs=logging.ERROR,
        dashboard_address=":0" if dashboard else None)
    return distributed.Client(cluster)


def scale_cluster(client, workers: int, timeout_s: float = 60.0) -> None:
    """Resize the client's cluster to ``workers`` workers and wait until it has exactly that
    many (a local cluster starts or stops worker processes)."""
    workers = check_positive("workers", workers)
    client.cluster.scale(workers)
    deadline = time.monotonic() + timeout_s
    while len(client.scheduler_info()["workers"]) != workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster did not reach {workers} workers in {timeout_s} s")
        time.sleep(0.05)


def close_cluster(client) -> None:
    """Close a client made by :func:`start_local_cluster`, and its cluster."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def _dask_map(client, fn, items: list, bar) -> list:
    distributed = require_dask()
    token = uuid.uuid4().hex[:8]
    keys = [f"shard-{i:05d}-{token}" for _, i, _ in items]
    futures = client.map(partial(_star, fn), items, key=keys, pure=False)
    try:
        for _ in distributed.as_completed(futures):
            bar.update(1)
        return client.gather(futures)
    except distributed.KilledWorker as exc:
        client.cancel(futures)

        raise WorkerDiedError(
            f"dask workers died while running {exc.task!r} (the scheduler retried it on new "
            "workers, then gave up); nothing was published. The usual cause is memory: a "
            "worker over its memory limit is restarted. Use smaller pieces (more parts) or "
            "fewer workers per machine, or give each worker more memory."
        ) from None
    except BaseException:
        client.cancel(futures)
        raise


# --------------------------------------------------------------------------- the run


def _remove_stale_staging(out_dir: Path) -> None:
    for p in out_dir.glob(STAGING_PREFIX + "*"):
        _remove_tree(p)


def _publish(staging: Path, out_dir: Path, n: int) -> list[Path]:
    """Move the finished shards from ``staging`` into ``out_dir``, replacing an older set."""
    _remove_shards(out_dir, "shard")
    (out_dir / VOCAB_FILE).unlink(missing_ok=True)
    bins = []
    for i in range(n):
        for src in shard_paths(staging, i):
            os.replace(src, out_dir / src.name)
        bins.append(shard_paths(out_dir, i)[0])
    os.replace(staging / VOCAB_FILE, out_dir / VOCAB_FILE)  # last: the set is complete
    staging.rmdir()
    return bins


def pretokenize_pieces(pieces: list[Piece], tokenizer, out_dir, *, engine: str = "processes",
                       workers: int = 2, client=None, master: str | None = None,
                       dtype="auto", codec=None,
                       block_bytes: int | None = None, text_field: str = "text",
                       progress: bool = True, pool: WorkerPool | None = None) -> ShardRun:
    """Tokenize every piece into its own shard, on ``engine``; return what happened.

    Shard ``i`` holds piece ``i``'s documents; the set in ``out_dir`` is published only when
    complete (see the module docstring). ``client`` (dask only) is a running
    ``dask.distributed.Client``; without it a ``LocalCluster`` of ``workers`` processes is
    started for this run and closed after (its start-up is not in ``seconds``). ``master``
    (spark only) is a Spark master URL; without it, ``local[workers]``
    (:func:`iokit.spark.spark_context`: started once per process, its start-up is not in
    ``seconds`` either). ``pool`` (threads and processes) is a running
    :class:`~iokit.parallel.WorkerPool` of that kind to reuse across calls, so its workers start
    once (they load each run's tokenizer by its path); ``workers`` is then its size. Without it
    a pool is started for this run.
    """
    engine = check_choice("engine", engine, ENGINES)
    workers = check_positive("workers", workers, hint="Use e.g. os.cpu_count().")
    if client is not None and engine != "dask":
        raise ParameterError(f"client= is for engine='dask', not {engine!r}.")
    if master is not None and engine != "spark":
        raise ParameterError(f"master= is for engine='spark', not {engine!r}.")
    if pool is not None and pool.kind != engine:
        raise ParameterError(f"pool= is a {pool.kind} pool, but the engine is {engine!r}; give "
                             f"a WorkerPool(kind={engine!r}) or leave pool out.")
    pieces = list(pieces)
    if not pieces:
        raise ParameterError("no pieces to process; plan them with iokit.split.plan_pieces.")
    asked = workers  # a Spark session keeps its size whatever the pieces: it is reused
    # never more workers than pieces (or than MAX_WORKERS): see iokit.parallel.worker_count
    workers = 1 if engine == "serial" else worker_count(
        pool.workers if pool is not None else workers, len(pieces))
    if len(pieces) > MAX_PIECES:
        raise ParameterError(f"{len(pieces):,} pieces, but shard numbers stop at "
                             f"{MAX_PIECES - 1:,}; use fewer, larger pieces.")
    dt = _resolve_dtype(dtype, tokenizer.vocab_size)  # settings fail here, before any work
    _compression(codec, block_bytes, dt, None)
    if engine == "dask":
        require_dask()
    sc = _spark_context(master, asked) if engine == "spark" else None
    with output_folder(out_dir, "the shard folder") as out_dir:
        _remove_stale_staging(out_dir)
        staging = out_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        fn = partial(shard_piece, vocab_path=str(staging / VOCAB_FILE), out_dir=str(staging),
                     dtype=dt.name, codec=codec, block_bytes=block_bytes, text_field=text_field)
        items = [(p, i, i == len(pieces) - 1) for i, p in enumerate(pieces)]
        own_client = None
        try:
            tokenizer.save(staging / VOCAB_FILE)
            with progress_bar(total=len(items), desc=f"shards ({engine})", unit="shard",
                              disable=not progress) as bar:
                if engine == "dask":
                    if client is None:
                        client = own_client = start_local_cluster(workers, dashboard=False)
                        client.wait_for_workers(workers)
                    workers = len(client.scheduler_info()["workers"])
                    start = time.perf_counter()
                    records = _dask_map(client, fn, items, bar)
                elif engine == "spark":
                    workers, records, start = _spark_run(sc, fn, items, bar)
                else:
                    records, start = _local_map(engine, workers, fn, items, bar, pool)
                seconds = time.perf_counter() - start
            bins = _publish(staging, out_dir, len(items))
        except BaseException:
            if own_client is not None:  # stop its workers first: none may still be writing
                close_cluster(own_client)
                own_client = None
            _remove_tree(staging)
            raise
        finally:
            if own_client is not None:
                close_cluster(own_client)
    return ShardRun(engine, workers, bins, records, seconds)


def _spark_context(master: str | None, workers: int):
    """This process's SparkContext (:mod:`iokit.spark`), checked before any work."""
    from iokit import spark

    return spark.spark_context(master, workers)


def _spark_run(sc, fn, items: list, bar) -> tuple[int, list, float]:
    """Run the tasks as one Spark job; return its task slots, the records, when it began."""
    from iokit import spark

    start = time.perf_counter()
    return sc.defaultParallelism, spark.spark_map(sc, fn, items, bar), start


def _remove_tree(folder: Path, attempts: int = 20) -> None:
    """Remove ``folder``; retry while a task of someone else's cluster (which cancelling
    does not stop) may still be writing into it. Its write then fails, harmlessly."""
    for _ in range(attempts):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.1)


def _star(fn, item):
    return fn(*item)


def _local_map(engine: str, workers: int, fn, items: list, bar,
               pool: WorkerPool | None = None) -> tuple[list, float]:
    """Run the tasks on a local pool (``pool``, or one started for this call); return their
    records and when the (warm) pool began."""
    own = pool is None
    if own:
        pool = WorkerPool(workers, engine, preload=("iokit.engines",))
    try:
        with quiet_fork():  # start the workers now, each to encode BPE on one thread
            pool.warm(0.0)
        start = time.perf_counter()
        out = []
        for task in pool.imap(partial(_star, fn), items):
            out.append(task)
            bar.update(1)
    except BaseException:
        pool.abort()  # a given pool starts new workers on its next use
        raise
    if own:
        pool.close()
    return out, start


def shard_checksums(folder) -> dict[str, str]:
    """File name → BLAKE2b digest of every shard file and the vocabulary in ``folder``."""
    out = {}
    for p in sorted(Path(folder).iterdir()):
        if p.is_file() and not p.name.startswith("."):
            out[p.name] = hashlib.blake2b(p.read_bytes(), digest_size=8).hexdigest()
    return out
