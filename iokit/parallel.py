"""An ordered parallel map over threads or processes, with a worker count and a chunk size.

::

    with WorkerPool(workers=2, kind="processes") as pool:
        counts = pool.map(tokenize_span, spans, chunk_size=16)   # results in input order

or in one call, ``parallel_map(fn, items, workers=2, kind="processes", chunk_size=16)``.

* ``kind``: ``"threads"`` (one process, shared memory; Python code holds the GIL, so threads
  help only while they wait: I/O, sleeps, C code that releases the GIL), ``"processes"`` (one
  interpreter each: real parallelism for Python code, at the price of sending every argument
  and result between processes), or ``"serial"`` (the same code in the caller, a baseline).
* ``chunk_size``: items per task. Each task carries its items to a worker, runs ``fn`` on each
  and brings the results back; too small and per-task overhead dominates, too large and some
  workers sit idle at the end.
* ``start_method`` (processes only): ``fork``, ``spawn`` or ``forkserver``. Spawned and
  forkserver workers start a fresh interpreter and import ``fn`` by its module and name, so
  ``fn`` must live in a module (``iokit/...``), not in a notebook cell; the pool checks this
  before starting and says so.
* ``initializer(*initargs)``: run once in each worker (each process or thread; for
  ``"serial"``, once in the caller) before its first task: load a model or open a file there
  once, not in every task. Like ``fn`` it must live in a module for processes.

What goes wrong, and what the caller sees:

* ``fn`` raises in a worker: the same exception is raised in the caller, with the worker's
  traceback attached (for processes as its ``__cause__``) and a note naming the item.
* a worker process dies (killed, out of memory, a crash in C): :class:`WorkerDiedError`, which
  names the exit code, instead of a hang.
* the caller itself is killed (``kill -9``, the out-of-memory killer): its worker processes
  end too, at once on Linux (``PR_SET_PDEATHSIG``) and within half a second elsewhere (each
  worker watches its parent's process id), so no worker goes on writing for a dead run.
* Ctrl-C (a kernel interrupt): pending tasks are cancelled, worker processes are terminated,
  threads stop after their current item, and ``KeyboardInterrupt`` reaches the caller. The map
  itself writes nothing; write its results with :func:`iokit.atomic.atomic_write` and an
  interrupted run leaves no half-written file.

``workers`` is a whole number >= 1; more than :data:`MAX_WORKERS` (or more than there are
tasks, where the caller knows) would only cost start-up and memory, so :func:`worker_count`
caps it and the pool says so in its ``note``.

Results are kept in input order whatever the number of workers, so the output of a parallel
run is the output of the serial one. At most ``2 × workers`` tasks are in flight at once, so
``imap`` streams: memory stays bounded on a long input.
"""

from __future__ import annotations

import ctypes
import importlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from itertools import islice

from iokit.errors import ParameterError, WorkerDiedError, check_choice, check_positive

KINDS = ("serial", "threads", "processes")
MAX_WORKERS = max(32, 8 * (os.cpu_count() or 1))  # more only costs start-up and memory
PARENT_POLL_S = 0.5  # how often a worker process checks that its parent is alive
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
START_METHODS = tuple(multiprocessing.get_all_start_methods())
TASKS_IN_FLIGHT_PER_WORKER = 2


def _signal_name(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):  # Python >= 3.11
        exc.add_note(note)


_init_error: Exception | None = None  # a worker process's failed initializer


def _run_chunk(fn: Callable, first: int, chunk: list, stop: threading.Event | None = None):
    """Run ``fn`` on each item of one task (in a worker); note which item failed."""
    if _init_error is not None:
        raise _init_error
    out = []
    for i, item in enumerate(chunk):
        if stop is not None and stop.is_set():
            raise CancelledError("stopped")
        try:
            out.append(fn(item))
        except Exception as exc:
            where = (f"process {os.getpid()}" if multiprocessing.parent_process() is not None
                     else f"thread {threading.current_thread().name}")
            _add_note(exc, f"iokit.parallel: {_name(fn)} failed on item {first + i} "
                           f"(in {where}).")
            raise
    return out


def worker_count(workers, tasks: int | None = None) -> int:
    """``workers`` checked (a whole number >= 1) and capped at :data:`MAX_WORKERS` and, when
    known, at the number of ``tasks``: a worker without a task would only be started and
    stopped."""
    n = min(check_positive("workers", workers, hint="Use e.g. os.cpu_count()."), MAX_WORKERS)
    return min(n, max(tasks, 1)) if tasks is not None else n


def capped_note(asked: int, used: int, tasks: int | None = None) -> str:
    """What :func:`worker_count` did, in words ("" when nothing was capped)."""
    if used >= asked:
        return ""
    why = (f"one per task ({tasks:,})" if tasks is not None and used == max(tasks, 1)
           else f"the most this kit starts on {os.cpu_count() or 1} core(s)")
    return f"{asked:,} workers asked for, {used:,} used: {why}"


def _die_with_parent(by_signal: bool, expected: int | None) -> None:
    """End this worker process when its parent ends: ``PR_SET_PDEATHSIG`` on Linux (the
    kernel sends SIGKILL), and on every system a thread that checks the parent's process id.
    ``expected`` is the parent's id when known (fork, spawn; a forkserver worker's parent is
    the server)."""
    parent = os.getppid()
    if by_signal and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent or expected not in (None, parent):  # it ended already
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="iokit-parent-watch", daemon=True).start()


def _init_worker(preload: tuple[str, ...], by_signal: bool = False,
                 parent: int | None = None, initializer: Callable | None = None,
                 initargs: tuple = ()) -> None:
    """Worker processes ignore Ctrl-C (the caller handles it), end with their parent (and
    quietly on SIGTERM), import what they need once, and run the pool's ``initializer``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM ends a worker quietly (the pool terminates workers that way when it stops), even
    # when the parent handles SIGTERM itself and a forked worker inherited that handler.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(by_signal, parent)

    for name in preload:
        importlib.import_module(name)
    if initializer is not None:
        global _init_error
        try:
            initializer(*initargs)
        except Exception as exc:  # raised with the first task, where the caller sees it
            _add_note(exc, f"iokit.parallel: the pool's initializer {_name(initializer)} "
                           f"failed in process {os.getpid()}.")
            _init_error = exc


def _pause(seconds: float, _item=None) -> int:
    time.sleep(seconds)
    return os.getpid()


def _name(fn) -> str:
    inner = fn.func if isinstance(fn, partial) else fn
    return getattr(inner, "__qualname__", None) or repr(inner)


def check_sendable(fn: Callable, start_method: str) -> None:
    """Raise :class:`ParameterError` if worker processes started by ``start_method`` cannot
    receive ``fn``, saying why and what to do."""
    inner = fn.func if isinstance(fn, partial) else fn
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise ParameterError(
            f"cannot send {_name(fn)} to worker processes ({type(exc).__name__}: {exc}). "
            "Processes receive a function by its module and name, so it must be defined at the "
            "top level of a module (not a lambda, not nested in another function). Move it "
            "into a module and import it, or use kind='threads'."
        ) from None
    main = sys.modules.get("__main__")
    if (start_method != "fork" and getattr(inner, "__module__", None) == "__main__"
            and not hasattr(main, "__file__")):
        raise ParameterError(
            f"{_name(fn)} is defined in a notebook cell (module __main__), and a "
            f"{start_method!r} worker starts a fresh interpreter that has no such cell: it "
            "would fail to find the function. Put the function in a module (for example "
            "iokit/tasks.py) and import it, use start_method='fork' (Linux), or use "
            "kind='threads'."
        )


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class WorkerPool:
    """A pool of ``workers`` threads or processes whose :meth:`map` keeps input order.

    Use it as a context manager so the workers are shut down (and, after an error or Ctrl-C,
    terminated) when the block ends. Reusing one pool for several maps pays the start-up cost
    (processes: tens to hundreds of milliseconds) once.
    """

    def __init__(self, workers: int = 1, kind: str = "threads", start_method: str | None = None,
                 preload: tuple[str, ...] = (), initializer: Callable | None = None,
                 initargs: tuple = ()):
        self.workers = worker_count(workers)
        self.note = capped_note(int(workers), self.workers)
        self.kind = check_choice("kind", kind, KINDS)
        if start_method is not None:
            check_choice("start method", start_method, START_METHODS)
        self.start_method = start_method or multiprocessing.get_start_method()
        self.preload = tuple(preload)
        if initializer is not None and not callable(initializer):
            raise ParameterError(f"initializer must be a function, got {initializer!r}.")
        self.initializer, self.initargs = initializer, tuple(initargs)
        self._initialized = False  # serial: the initializer runs in the caller, once
        self._stop = threading.Event()
        self._executor = None

    def __repr__(self) -> str:
        how = f", {self.start_method}" if self.kind == "processes" else ""
        return f"WorkerPool({self.workers} {self.kind}{how})"

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _get_executor(self):
        if self._executor is None:
            if self.kind == "threads":
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="iokit",
                                                    initializer=self.initializer,
                                                    initargs=self.initargs)
            elif self.kind == "processes":
                ctx = multiprocessing.get_context(self.start_method)
                # The kernel's parent-death signal follows the *thread* that started the
                # worker: use it only when that is the main thread (which lives as long as
                # the process); the parent watch covers every case.
                by_signal = threading.current_thread() is threading.main_thread()
                parent = None if self.start_method == "forkserver" else os.getpid()
                self._executor = ProcessPoolExecutor(
                    self.workers, mp_context=ctx, initializer=_init_worker,
                    initargs=(self.preload, by_signal, parent, self.initializer, self.initargs))
        return self._executor

    def warm(self, seconds: float = 0.05) -> WorkerPool:
        """Start every worker now (so a timed map does not include start-up)."""
        if self.kind != "serial":
            self.map(partial(_pause, seconds), range(self.workers))
        return self

    def map(self, fn: Callable, items: Iterable, chunk_size: int = 1) -> list:
        """``[fn(x) for x in items]``, computed by the workers, in input order."""
        return list(self.imap(fn, items, chunk_size))

    def imap(self, fn: Callable, items: Iterable, chunk_size: int = 1) -> Iterator:
        """Like :meth:`map`, but yields each result as soon as it and all before it are done."""
        chunk_size = check_positive("chunk size", chunk_size,
                                    hint="It is the number of items per task; use e.g. 16.")
        if self.kind == "processes":
            check_sendable(fn, self.start_method)
            if self.initializer is not None and self._executor is None:
                check_sendable(self.initializer, self.start_method)
        if self.kind == "serial":
            return self._imap_serial(fn, items, chunk_size)
        return self._imap_pool(fn, items, chunk_size)

    def _imap_serial(self, fn, items, chunk_size):
        if self.initializer is not None and not self._initialized:
            self.initializer(*self.initargs)
            self._initialized = True
        first = 0
        for chunk in chunked(items, chunk_size):
            yield from _run_chunk(fn, first, chunk)
            first += len(chunk)

    def _submit(self, fn, first: int, chunk: list) -> Future:
        if self.kind == "threads":
            return self._get_executor().submit(_run_chunk, fn, first, chunk, self._stop)
        return self._get_executor().submit(_run_chunk, fn, first, chunk)

    def _imap_pool(self, fn, items, chunk_size):
        window: deque[Future] = deque()
        limit = TASKS_IN_FLIGHT_PER_WORKER * self.workers
        first = 0
        try:
            for chunk in chunked(items, chunk_size):
                window.append(self._submit(fn, first, chunk))
                first += len(chunk)
                while len(window) >= limit:
                    yield from window.popleft().result()
            while window:
                yield from window.popleft().result()
        except BrokenProcessPool:
            codes = self.abort()
            died = [c for c in codes if c not in (0, None, -signal.SIGTERM)] or codes
            how = ", ".join(sorted({_signal_name(c) for c in died})) or "cause unknown"
            raise WorkerDiedError(
                f"a worker process ended abruptly ({how}) while the pool had work for it; the "
                "results of this map are incomplete and were not returned. SIGKILL usually "
                "means the out-of-memory killer: use fewer workers or a smaller chunk size, or "
                "send paths and offsets to workers instead of large objects."
            ) from None
        except BaseException as exc:
            for fut in window:
                fut.cancel()
            if isinstance(exc, KeyboardInterrupt):
                self.abort()
            raise

    def abort(self) -> list:
        """Stop now: cancel pending tasks, terminate worker processes, let threads stop.

        Returns the exit codes of the worker processes (empty for threads).
        """
        self._stop.set()
        ex, self._executor = self._executor, None
        if ex is None:
            return []
        procs = list((getattr(ex, "_processes", None) or {}).values())
        codes = [p.exitcode for p in procs]  # before we terminate the others
        manager = getattr(ex, "_executor_manager_thread", None)
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
        if manager is not None:  # it reaps the workers too; let it finish
            manager.join(timeout=5)
        self._stop = threading.Event()
        return [c if c is not None else p.exitcode for c, p in zip(codes, procs)]

    def close(self) -> None:
        """Shut down after all submitted work is done."""
        ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True)


def parallel_map(fn: Callable, items: Iterable, *, workers: int = 1, chunk_size: int = 1,
                 kind: str = "threads", start_method: str | None = None,
                 preload: tuple[str, ...] = (), initializer: Callable | None = None,
                 initargs: tuple = ()) -> list:
    """``[fn(x) for x in items]`` on a fresh :class:`WorkerPool`, in input order."""
    with WorkerPool(workers, kind, start_method, preload, initializer, initargs) as pool:
        return pool.map(fn, items, chunk_size)
