"""Storage: the real local disk (warm or cold cache), and a simulated remote store.

:class:`LocalDisk` reads real files. :func:`drop_cache` asks the OS to forget a file's cached
pages (``posix_fadvise(DONTNEED)``, no root needed on Linux) so the next read comes from the
device; :func:`resident_fraction` checks how much of a file is in the page cache, so the kit
can say honestly whether a read was cold or warm.

:class:`SimulatedStore` stands in for what a training cluster reads from (network file system,
object store). It reads the bytes from local files, then waits as the modelled storage would:

* every request pays ``latency`` (seek, round trip, first byte), or the preset's
  ``sequential_latency`` when it starts where the previous request to the same file ended (an
  HDD's head is already there: no seek);
* one request streams at most ``stream_bandwidth``;
* all concurrent requests share ``aggregate_bandwidth`` (one link), whether they come from
  threads or processes: the link's state lives in a small file, updated under a lock.

So n concurrent readers of ``c``-byte requests get about
``min(n × c / (latency + c / stream_bandwidth), aggregate_bandwidth)``. It says it is simulated
in its name, and its results carry ``simulated=True``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import mmap
import os
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from iokit.errors import ParameterError, StorageError, check_choice, check_positive
from iokit.timing import MB


@dataclass(frozen=True)
class StoragePreset:
    """The figures that model one kind of storage (bandwidths in bytes per second)."""

    name: str
    latency: float  # seconds per random request (a seek, a round trip, the first byte)
    stream_bandwidth: float
    aggregate_bandwidth: float
    about: str
    sequential_latency: float | None = None  # a request that continues the last; None: latency

    def request_latency(self, sequential: bool = False) -> float:
        """Seconds a request waits before its bytes flow: ``sequential`` when it starts where
        the previous request to the same file ended."""
        if sequential and self.sequential_latency is not None:
            return self.sequential_latency
        return self.latency


# Typical published figures, rounded; see each `about`.
PRESETS = {
    p.name: p
    for p in [
        StoragePreset("local-nvme", 100e-6, 2000 * MB, 3000 * MB,
                      "PCIe NVMe SSD: ~100 µs per request, ~2 GB/s per stream, ~3 GB/s in all"),
        StoragePreset("hdd", 8e-3, 160 * MB, 160 * MB,
                      "7,200 rpm disk: ~8 ms seek and rotation per random request, none when "
                      "a request continues the last one; ~160 MB/s", sequential_latency=0.0),
        StoragePreset("network-fs", 1e-3, 400 * MB, 1200 * MB,
                      "NFS or Lustre over 10 GbE: ~1 ms per request, ~1.2 GB/s link"),
        StoragePreset("object-store", 20e-3, 80 * MB, 1000 * MB,
                      "S3-like object store: ~20 ms to first byte, ~80 MB/s per stream, "
                      "~1 GB/s per node"),
    ]
}


def get_preset(name: str) -> StoragePreset:
    """A storage preset by name (``local-nvme``, ``hdd``, ``network-fs``, ``object-store``)."""
    return PRESETS[check_choice("storage preset", name, PRESETS)]


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise StorageError(f"{path}: no such file; check the path.") from None


def _pread(path: Path, offset: int, size: int) -> bytes:
    if offset < 0 or size < 0:
        raise ParameterError(f"{path}: offset and size must be >= 0, got {offset}, {size}.")
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise StorageError(f"{path}: no such file; check the path.") from None
    except IsADirectoryError:
        raise StorageError(f"{path}: is a folder, not a file.") from None
    try:
        # never allocate more than the file holds from there (a huge size is a short read)
        size = max(0, min(size, os.fstat(fd).st_size - offset))
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


class LocalDisk:
    """The machine's own disk, read with plain system calls."""

    name = "local disk"
    simulated = False

    def size(self, path) -> int:
        return _file_size(Path(path))

    def read(self, path, offset: int, size: int) -> bytes:
        """One request: ``size`` bytes at ``offset`` (fewer at the end of the file)."""
        return _pread(Path(path), offset, size)

    def read_chunks(self, path, chunk_size: int, limit: int | None = None) -> Iterator[bytes]:
        """The file in pieces of ``chunk_size`` bytes, one ``read`` system call each."""
        chunk_size = check_positive("chunk size", chunk_size, hint="Use e.g. 65536 (64 KiB).")
        with open(path, "rb", buffering=0) as f:
            left = limit if limit is not None else _file_size(Path(path))
            while left > 0:
                data = f.read(min(chunk_size, left))
                if not data:
                    return
                left -= len(data)
                yield data


def _remove_state_file(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # not in a forked worker that inherited the object
        try:
            os.unlink(path)
        except OSError:
            pass


class SimulatedStore:
    """A simulated remote store over local files (see the module docstring for the model).

    Safe to share between threads, and to send to worker processes: the shared link state is a
    small file that every copy opens by name.
    """

    simulated = True

    def __init__(self, preset: str | StoragePreset = "object-store", state_file=None):
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        if state_file is None:
            fd, state_file = tempfile.mkstemp(prefix="iokit-simstore-", suffix=".state")
            os.write(fd, struct.pack("d", 0.0))
            os.close(fd)
            # The store that made the file removes it when it is dropped or, at the latest,
            # when the process exits (after an error too); copies sent to workers do not.
            weakref.finalize(self, _remove_state_file, state_file, os.getpid())
        self.state_file = str(state_file)
        self._fd = None
        self._fd_pid = None
        self._lock = threading.Lock()
        self._ends: dict = {}  # file -> where its last request ended (sequential or a seek)

    @property
    def name(self) -> str:
        return f"simulated {self.preset.name}"

    def __getstate__(self):
        return {"preset": self.preset, "state_file": self.state_file}

    def __setstate__(self, state):
        self.preset = state["preset"]
        self.state_file = state["state_file"]
        self._fd = None
        self._fd_pid = None
        self._lock = threading.Lock()
        self._ends = {}

    def __repr__(self) -> str:
        p = self.preset
        return (f"SimulatedStore({p.name}: latency {p.latency * 1e3:g} ms, "
                f"{p.stream_bandwidth / MB:g} MB/s per stream, "
                f"{p.aggregate_bandwidth / MB:g} MB/s aggregate — simulated)")

    def _reserve_link(self, ready: float, nbytes: int) -> float:
        """Book ``nbytes`` on the shared link no earlier than ``ready``; return when done."""
        # flock excludes other processes only through a file opened by this process (a forked
        # copy shares its parent's), and never other threads using the same one: so one file
        # per process, and a thread lock around it.
        with self._lock:
            if self._fd is None or self._fd_pid != os.getpid():
                self._fd, self._fd_pid = os.open(self.state_file, os.O_RDWR), os.getpid()
            fd = self._fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                (free_at,) = struct.unpack("d", os.pread(fd, 8, 0))
                done = max(ready, free_at) + nbytes / self.preset.aggregate_bandwidth
                os.pwrite(fd, struct.pack("d", done), 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        return done

    def size(self, path) -> int:
        return _file_size(Path(path))

    def read(self, path, offset: int, size: int) -> bytes:
        """One request: real bytes from the local file, delivered when the model says."""
        start = time.monotonic()
        data = _pread(Path(path), offset, size)
        p = self.preset
        with self._lock:
            sequential = self._ends.get(str(path)) == offset
            self._ends[str(path)] = offset + len(data)
        ready = start + p.request_latency(sequential)
        finish = max(ready + len(data) / p.stream_bandwidth, self._reserve_link(ready, len(data)))
        wait = finish - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return data

    def read_chunks(self, path, chunk_size: int, limit: int | None = None) -> Iterator[bytes]:
        """The file in requests of ``chunk_size`` bytes, one after another."""
        chunk_size = check_positive("chunk size", chunk_size, hint="Use e.g. 1048576 (1 MiB).")
        total = _file_size(Path(path)) if limit is None else min(limit, _file_size(Path(path)))
        for offset in range(0, total, chunk_size):
            yield self.read(path, offset, min(chunk_size, total - offset))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def open_storage(name: str = "local"):
    """``"local"`` for the real disk, or a preset name for a simulated store."""
    if name in ("local", "local-disk"):
        return LocalDisk()
    return SimulatedStore(name)


# --------------------------------------------------------------------------- page cache


def drop_cache(path) -> bool:
    """Ask the OS to evict ``path`` from the page cache. True if the OS supports it.

    Needs no root on Linux. The file must not be dirty (the kit fsyncs what it writes).
    """
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped; the kit's own files are already synced
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def resident_fraction(path) -> float | None:
    """Fraction of the file's pages in the page cache (0 = cold, 1 = warm); None if unknown.

    Maps the file (without touching its pages) and asks ``mincore`` which pages are resident.
    """
    size = _file_size(Path(path))
    if size == 0:
        return 1.0
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name else None
    if libc is None or not hasattr(libc, "mincore"):
        return None
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    n_pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * n_pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            if libc.mincore(addr, size, vec) != 0:
                return None
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec) / n_pages
