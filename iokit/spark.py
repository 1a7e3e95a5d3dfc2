"""Spark as an engine: one Spark task per corpus piece, each writing one shard.

::

    run = pretokenize_pieces(pieces, tokenizer, "data/shards", engine="spark", workers=2)
    run = pretokenize_pieces(..., engine="spark", master="spark://host:7077")   # a cluster

:mod:`iokit.engines` hands the same task (:func:`iokit.engines.shard_piece`) to Spark as an RDD
of ``(piece, index, last)`` records, one partition each, and collects the small records the
tasks return. The shards are the processes engine's, byte for byte; they are published (by
the engines module) only when the Spark job succeeded.

==============  ============================================================================
master          ``local[N]`` (the default: N = ``workers`` Python workers on this machine,
                the driver's own JVM), ``spark://host:7077`` (a standalone cluster), ``yarn``
                or ``k8s://...``
the session     one per process, started on first use and reused (:func:`spark_context`):
                its JVM start-up is seconds, paid once; stopped at exit (:func:`stop_spark`)
Spark's UI      :func:`spark_ui_url`: jobs, stages and every task's time, on port 4040 or
                the next free one
JVM logs        only errors, and into a file (:func:`spark_log_path`), not over the output
==============  ============================================================================

Spark needs a Java runtime (17 or newer for pyspark 4): :func:`check_java` looks before a JVM
is started and says what to install. Errors come back as the kit's own: a task's
:class:`~iokit.errors.IokitError` (a bad document names the file and byte offset) travels out
of Spark's Py4J and ``PythonException`` wrapping intact; a worker that dies is a
:class:`~iokit.errors.WorkerDiedError`; a master that does not answer is a
:class:`~iokit.errors.StorageError` within ``timeout_s``.
"""

from __future__ import annotations

import atexit
import base64
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from iokit.errors import IokitError, ParameterError, StorageError, WorkerDiedError, check_positive
from iokit.timing import format_seconds

JAVA_HINT = ("install a Java runtime, 17 or newer (Debian/Ubuntu: apt-get install "
             "default-jre-headless; macOS: brew install openjdk@17), or point JAVA_HOME at one")
# the driver JVM's options on this machine: start-up first (the JVM runs no heavy code here:
# the tokenizing is Python), errors only in the log
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
LOG4J = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
"""
_ERROR_MARK = "IOKIT-ERROR:"  # a kit error, pickled, in the text of Spark's exception

_MASTER = re.compile(r"^(?:local(?:\[(?:\d+|\*)(?:,\d+)?\])?|yarn|k8s://\S+|"
                     r"spark://(?P<hosts>[^/\s]+))$")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")

_lock = threading.Lock()
_state: dict = {}  # "sc": the running SparkContext, "master": its master, "startup": its start
_scratch_dir: dict = {}  # "scratch": the JVM's temporary folder, one per process


def require_spark():
    """The ``pyspark`` module, or a ParameterError saying how to install it."""
    try:
        import pyspark
    except ImportError:
        raise ParameterError(
            "engine='spark' needs the optional 'spark' extra: pip install -e '.[spark]'  "
            "(or: pip install pyspark), and a Java runtime (17 or newer)."
        ) from None
    return pyspark


def find_java() -> str | None:
    """The ``java`` Spark would run: ``$JAVA_HOME/bin/java``, else the one on the PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        return str(java) if os.access(java, os.X_OK) else None
    return shutil.which("java")


@lru_cache(maxsize=4)
def java_version(java: str) -> int | None:
    """The major version of ``java`` (8, 11, 17, 21, ...), or None if it does not run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if m is None:
        return None
    major = int(m[1])
    return int(m[2]) if major == 1 and m[2] else major  # "1.8.0" is Java 8


def check_java(least: int = 17) -> str:
    """The path of a ``java`` of version ``least`` or newer, or a ParameterError saying what to
    install: looked at before a JVM is started, whose own failure says much less."""
    java = find_java()
    where = "JAVA_HOME" if os.environ.get("JAVA_HOME") else "the PATH"
    if java is None:
        raise ParameterError(f"engine='spark' needs Java, and there is no java on {where}; "
                             f"{JAVA_HINT}.")
    version = java_version(java)
    if version is None or version < least:
        found = "a java that does not run" if version is None else f"Java {version}"
        raise ParameterError(f"engine='spark' needs Java {least} or newer; {java} is {found}; "
                             f"{JAVA_HINT}.")
    return java


def check_master(master: str, timeout_s: float = 10.0) -> str:
    """``master`` if it is a Spark master URL (``local[N]``, ``spark://host:port``, ``yarn``,
    ``k8s://...``), else a ParameterError; for ``spark://`` a quick connection to each host
    first, so that an address where nothing listens is the kit's StorageError at once."""
    master = str(master).strip()
    m = _MASTER.match(master)
    if m is None:
        raise ParameterError(f"{master!r} is not a Spark master; give local[N] (this machine, "
                             "N workers) or spark://host:7077 (a standalone cluster).")
    if m["hosts"]:
        for hp in m["hosts"].split(","):
            h = _HOST_PORT.match(hp)
            if h is None or not 0 < int(h["port"]) < 65536:
                raise ParameterError(f"{master!r}: {hp!r} is not host:port; give a master "
                                     "like spark://host:7077.")
            try:
                socket.create_connection((h["host"].strip("[]"), int(h["port"])),
                                         timeout=timeout_s).close()
            except OSError as exc:
                why = exc.strerror or str(exc) or type(exc).__name__
                raise StorageError(f"{master}: cannot reach a Spark master ({why}); check the "
                                   "address and that a master runs there (start one with "
                                   "sbin/start-master.sh).") from None
    return master


def spark_log_path() -> Path:
    """Where this process's Spark JVM writes its log (errors only). It is removed at exit
    unless an error message named it; then the next process to start Spark removes it."""
    return Path(tempfile.gettempdir()) / f"iokit-spark-{os.getpid()}.log"


def _log_file() -> Path:
    _scratch_dir.setdefault("log", spark_log_path())
    return _scratch_dir["log"]


def _named_log() -> Path:
    """The log's path, for an error message: the log is then kept at exit."""
    _scratch_dir["keep_log"] = True
    return spark_log_path()


def _scratch() -> Path:
    """This process's folder for the JVM's temporary files (Spark's block manager, pyspark's
    files), removed at exit even when the JVM could not clean up after itself."""
    if "scratch" not in _scratch_dir:
        _remove_stale()
        _scratch_dir["scratch"] = Path(tempfile.mkdtemp(prefix=f"iokit-spark-{os.getpid()}-"))
    return _scratch_dir["scratch"]


def _remove_stale() -> None:
    """Remove the temporary folders and logs of processes that ended without cleaning up
    (a kernel killed, say): their names carry the process id."""
    for path in Path(tempfile.gettempdir()).glob("iokit-spark-*"):
        m = re.match(r"iokit-spark-(\d+)(?:-|\.log$)", path.name)
        if m is None or _running(int(m[1])):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True


def _conf(master: str, ui: bool):
    from pyspark import SparkConf

    scratch = _scratch()
    log4j = scratch / "log4j2.properties"  # errors only, to the JVM's stderr (the log file)
    log4j.write_text(LOG4J)
    conf = (SparkConf().setMaster(master).setAppName("iokit")
            .set("spark.driver.memory", "512m")
            .set("spark.driver.extraJavaOptions",
                 f"-Dlog4j2.configurationFile=file:{log4j} -Djava.io.tmpdir={scratch} "
                 f"{JVM_OPTIONS}")
            .set("spark.local.dir", str(scratch))
            .set("spark.ui.enabled", "true" if ui else "false")
            .set("spark.ui.showConsoleProgress", "false")
            .set("spark.python.worker.reuse", "true"))  # the tokenizer loads once per worker
    if master.startswith("local"):
        # this machine: the workers run this Python, with this copy of the kit importable
        kit = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (kit, os.environ.get("PYTHONPATH")) if p)
        conf = (conf.set("spark.executorEnv.PYTHONPATH", path)
                .set("spark.driver.host", "127.0.0.1")
                .set("spark.driver.bindAddress", "127.0.0.1"))
    return conf


def _start(master: str, ui: bool, timeout_s: float):
    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway

    proc = getattr(SparkContext._gateway, "proc", None)
    if proc is not None and proc.poll() is not None:  # that JVM has ended: start a new one
        _end_jvm()
    conf = _conf(master, ui)
    t0 = time.perf_counter()
    jvm_s = None  # None: the JVM of an earlier session is reused
    if SparkContext._gateway is None:  # the JVM: started once per process, its stderr to a file
        log = open(_log_file(), "ab")  # noqa: SIM115 - the JVM keeps it open
        SparkContext._gateway = launch_gateway(conf, popen_kwargs={"stderr": log,
                                                                   "stdout": log})
        SparkContext._jvm = SparkContext._gateway.jvm
        jvm_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    sc = SparkContext(conf=conf) if master.startswith("local") else _connect(conf, master,
                                                                             timeout_s)
    _state["startup"] = SparkStartup(master, jvm_s, time.perf_counter() - t1)
    sc.setLogLevel("ERROR")
    if master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        sc.pythonExec = sys.executable  # pyspark reads only the variable, else "python3"
    if not master.startswith("local"):  # a cluster: wait (bounded) for an executor
        _wait_for_executor(sc, master, timeout_s)
    return sc


@dataclass(frozen=True)
class SparkStartup:
    """What starting this process's Spark session took (one measurement: a session starts
    once): the JVM (``spark-submit``, then the Py4J gateway; None when an earlier session's
    JVM was reused) and the SparkContext in it (scheduler, block manager, web UI)."""

    master: str
    jvm_s: float | None
    context_s: float

    @property
    def seconds(self) -> float:
        return (self.jvm_s or 0.0) + self.context_s

    def __str__(self) -> str:
        jvm = ("JVM reused" if self.jvm_s is None else
               f"JVM {format_seconds(self.jvm_s)}")
        return (f"Spark session on {self.master}: {format_seconds(self.seconds)} ({jvm}, "
                f"SparkContext {format_seconds(self.context_s)})")


def _connect(conf, master: str, timeout_s: float):
    """A SparkContext on a cluster's ``master``, or StorageError within ``timeout_s`` seconds:
    Spark's own constructor waits a minute or more for a master that does not answer, so it
    runs in a thread, and the JVM is ended if the time is up (the next session starts anew)."""
    from pyspark import SparkContext

    result: dict = {}

    def create() -> None:
        try:
            result["sc"] = SparkContext(conf=conf)
        except BaseException as exc:  # reported below, in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=create, name="iokit-spark-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "sc" in result:
        return result["sc"]
    if thread.is_alive():
        _end_jvm()
        why = f"no answer in {timeout_s:g} s"
    else:
        err = result["error"]
        why = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
    raise StorageError(f"{master}: no Spark master answered ({why}); check the address and "
                       "that a master runs there (start one with sbin/start-master.sh); JVM "
                       f"log: {_named_log()}.")


def _end_jvm() -> None:
    """End this process's Spark JVM (a session stuck in it cannot be stopped otherwise)."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    if proc is not None:
        proc.kill()
        proc.wait()
    SparkContext._gateway = SparkContext._jvm = None
    SparkContext._active_spark_context = None


def _wait_for_executor(sc, master: str, timeout_s: float) -> None:
    """Return once an executor has joined ``sc``; else stop it and raise StorageError, when
    Spark gives up on the master or after ``timeout_s`` seconds, whichever comes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            stopped = sc._jsc.sc().isStopped()
            joined = not stopped and sc._jsc.sc().getExecutorMemoryStatus().size() >= 2
        except Exception:  # stopped under our feet, or the JVM is gone
            stopped, joined = True, False
        if joined:  # the driver counts as one
            return
        if stopped or time.monotonic() > deadline:
            try:
                sc.stop()
            except Exception:
                pass
            why = ("Spark gave up on it" if stopped else
                   f"no executor joined in {timeout_s:g} s")
            raise StorageError(f"{master}: no Spark master answered ({why}); check the "
                               "address, that a master runs there with workers that have "
                               "free cores, and that they can reach this machine (JVM log: "
                               f"{_named_log()}).")
        time.sleep(0.2)


def spark_startup() -> SparkStartup | None:
    """How long the running session took to start (None before one has started)."""
    return _state.get("startup")


def spark_context(master: str | None = None, workers: int = 2, *, ui: bool = True,
                  timeout_s: float = 10.0):
    """This process's ``SparkContext`` on ``master`` (default ``local[workers]``): the running
    one when it has that master, else a new one (the old one stopped first). Started once, it
    is reused by every run and stopped at exit.

    Before a JVM starts, the master is checked (:func:`check_master`: nothing listening is a
    StorageError at once) and so is Java (:func:`check_java`). On a cluster, no executor within
    ``timeout_s`` seconds is a StorageError.
    """
    workers = check_positive("workers", workers, hint="Use e.g. os.cpu_count().")
    master = check_master(master or f"local[{workers}]", timeout_s)
    require_spark()
    check_java()
    with _lock:
        sc = _state.get("sc")
        if sc is not None and _state.get("master") == master and _alive(sc):
            return sc
        _stop_locked()
        sc = _start(master, ui, timeout_s)
        _state.update(sc=sc, master=master)
        return sc


def _alive(sc) -> bool:
    try:
        return not sc._jsc.sc().isStopped()
    except Exception:  # the JVM is gone
        return False


def _stop_locked() -> None:
    sc = _state.pop("sc", None)
    _state.pop("startup", None)
    _state.pop("master", None)
    if sc is not None:
        try:
            sc.stop()
        except Exception:  # the JVM may be gone already
            pass


def stop_spark() -> None:
    """Stop this process's SparkContext, if one runs (also done at exit)."""
    with _lock:
        _stop_locked()


def _at_exit() -> None:
    stop_spark()
    scratch = _scratch_dir.pop("scratch", None)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    log = _scratch_dir.pop("log", None)
    if log is not None and not _scratch_dir.get("keep_log"):
        log.unlink(missing_ok=True)


atexit.register(_at_exit)


def spark_ui_url(sc=None) -> str | None:
    """The address of Spark's web UI (jobs, stages, each task's time), or None without one."""
    sc = sc if sc is not None else _state.get("sc")
    return None if sc is None else sc.uiWebUrl


def run_task(fn, item):
    """What a Spark task runs: ``fn(*item)``; a kit error travels back pickled in the text of
    the exception Spark wraps it in (:func:`kit_error` takes it out again)."""
    try:
        return fn(*item)
    except IokitError as exc:
        blob = base64.b64encode(pickle.dumps(exc)).decode("ascii")
        raise RuntimeError(f"{_ERROR_MARK}{blob}:{_ERROR_MARK} {exc}") from None


def kit_error(exc: BaseException) -> IokitError | None:
    """The kit's error for an exception out of Spark: the task's own IokitError, or a
    WorkerDiedError for a worker or the JVM that died; None for anything else (a bug)."""
    text = str(exc)
    m = re.search(re.escape(_ERROR_MARK) + r"([A-Za-z0-9+/=]+):" + re.escape(_ERROR_MARK), text)
    if m:
        try:
            err = pickle.loads(base64.b64decode(m[1]))
        except Exception:
            err = None
        if isinstance(err, IokitError):
            return err
    if re.search(r"Python worker exited unexpectedly|ExecutorLostFailure|"
                 r"worker.*(crashed|lost)|EOFException", text, re.IGNORECASE):
        return WorkerDiedError(
            "a Spark worker died while running a shard task (killed, out of memory, or "
            "crashed); nothing was published. Use smaller pieces (more parts) or fewer "
            f"workers, or give them more memory; the JVM log is {_named_log()}.")
    if type(exc).__name__ in ("Py4JNetworkError", "Py4JError") or isinstance(
            exc, ConnectionError):
        return WorkerDiedError(
            f"Spark's JVM stopped answering ({type(exc).__name__}); nothing was published. "
            f"See its log, {_named_log()}; the next run starts a new one.")
    return None


def spark_map(sc, fn, items: list, bar=None) -> list:
    """``[fn(*item) for item in items]`` as one Spark job, one task per item, results in order.

    ``bar`` (a tqdm bar) follows the finished tasks. An error stops the job and comes back as
    the kit's (:func:`kit_error`); Ctrl-C or any other exception cancels the job.
    """
    from functools import partial

    group = f"iokit-{uuid.uuid4().hex[:8]}"
    done = threading.Event()
    watcher = None
    try:
        sc.setJobGroup(group, f"{len(items)} shard tasks", interruptOnCancel=True)
        if bar is not None and not getattr(bar, "disable", False):
            watcher = threading.Thread(target=_follow, args=(sc, group, bar, done),
                                       name="iokit-spark-progress", daemon=True)
            watcher.start()
        rdd = sc.parallelize(items, max(len(items), 1)).map(partial(run_task, fn))
        out = rdd.collect()
    except BaseException as exc:
        try:
            sc.cancelJobGroup(group)
        except Exception:  # the JVM may be gone
            with _lock:
                _state.pop("sc", None)
        err = kit_error(exc) if isinstance(exc, Exception) else None
        if err is not None:
            if isinstance(err, WorkerDiedError) and not _alive(sc):
                with _lock:
                    _state.pop("sc", None)
            raise err from None
        raise
    finally:
        done.set()
        if watcher is not None:
            watcher.join()
    if bar is not None:
        bar.update(len(items) - bar.n)
    return out


def _follow(sc, group: str, bar, done: threading.Event) -> None:
    """Move ``bar`` as the tasks of ``group``'s jobs finish (Spark's status tracker)."""
    tracker = sc.statusTracker()
    while not done.wait(0.25):
        try:
            finished = 0
            for job_id in tracker.getJobIdsForGroup(group):
                job = tracker.getJobInfo(job_id)
                for stage_id in (job.stageIds if job else ()):
                    stage = tracker.getStageInfo(stage_id)
                    finished += stage.numCompletedTasks if stage else 0
        except Exception:  # the job is over, or the JVM is gone: the caller says so
            return
        if finished > bar.n:
            bar.update(finished - bar.n)
