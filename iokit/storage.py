"""Storage: the real local disk (warm or cold cache), any fsspec URL, and a simulated store.

Every storage answers the same three calls, so every measurement runs on any of them without
special cases: ``size(path)``, ``read(path, offset, size)`` (one request) and
``read_chunks(path, chunk_size)`` (the file in requests of ``chunk_size`` bytes).

:class:`LocalDisk` reads real files. :func:`drop_cache` asks the OS to forget a file's cached
pages (``posix_fadvise(DONTNEED)``, no root needed on Linux) so the next read comes from the
device; :func:`resident_fraction` checks how much of a file is in the page cache, so the kit
can say honestly whether a read was cold or warm.

:class:`SimulatedStore` stands in for what a training cluster reads from (network file system,
object store). It reads the bytes from another storage (the local disk by default, or any
other here, say an :class:`FsspecStorage` on a real endpoint), then waits as the modelled
storage would:

* every request pays ``latency`` (seek, round trip, first byte), or the preset's
  ``sequential_latency`` when it starts where the previous request to the same file ended (an
  HDD's head is already there: no seek);
* one request streams at most ``stream_bandwidth``;
* all concurrent requests share ``aggregate_bandwidth`` (one link), whether they come from
  threads or processes: the link's state lives in a small file, updated under a lock.

So n concurrent readers of ``c``-byte requests get about
``min(n × c / (latency + c / stream_bandwidth), aggregate_bandwidth)``. It says it is simulated
in its name, and its results carry ``simulated=True``.

:class:`FsspecStorage` reads any URL fsspec knows (``file://``, ``memory://``, ``s3://``,
``http(s)://``; a plain path is a local file), one range request per ``read``: the interface
HF datasets, dask and pandas use for remote files (the ``s3`` extra: fsspec and s3fs). An
``s3://`` URL goes to the endpoint of :mod:`iokit.remote` (yours from ``AWS_ENDPOINT_URL``
and the ``AWS_*`` credentials, or the kit's loopback server), with short timeouts and few
retries, so an unreachable endpoint is an error within seconds, not a hang. It counts its
requests and bytes (``requests``, ``bytes_read``), and an object that changes on the server
while it is read (another ETag, fewer bytes than asked for) is an error naming the URL.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import mmap
import os
import re
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


_COLLAPSED_URL = re.compile(r"^(?P<proto>[a-z][a-z0-9+.-]*):/(?!/)")


def is_url(path) -> bool:
    """True for a URL with a protocol (``s3://bucket/key``, ``memory://x``, ``file:///tmp/x``),
    also after ``Path()`` collapsed its ``//`` (``s3:/bucket/key``)."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    return isinstance(text, str) and ("://" in text or bool(_COLLAPSED_URL.match(text)))


def as_url(path) -> str:
    """``path`` as a URL string, repairing the ``//`` that ``Path()`` collapses
    (``Path("s3://b/k")`` is ``s3:/b/k``); ``file:`` URLs and plain paths become local paths."""
    text = os.fspath(path)
    if "://" not in text:
        text = _COLLAPSED_URL.sub(lambda m: m["proto"] + "://", text, count=1)
    if text.startswith("file://"):
        return text[len("file://"):] or "/"
    return text


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


def _local(path) -> Path:
    """A local path (a ``file://`` URL too); another URL needs :class:`FsspecStorage`."""
    if is_url(path):
        url = as_url(path)
        if "://" in url:
            raise StorageError(f"{url}: the local disk reads local files; read URLs with "
                               "FsspecStorage (open_storage('fsspec')).")
        return Path(url)
    return Path(path)


class LocalDisk:
    """The machine's own disk, read with plain system calls."""

    name = "local disk"
    simulated = False

    def size(self, path) -> int:
        return _file_size(_local(path))

    def read(self, path, offset: int, size: int) -> bytes:
        """One request: ``size`` bytes at ``offset`` (fewer at the end of the file)."""
        return _pread(_local(path), offset, size)

    def read_chunks(self, path, chunk_size: int, limit: int | None = None) -> Iterator[bytes]:
        """The file in pieces of ``chunk_size`` bytes, one ``read`` system call each."""
        chunk_size = check_positive("chunk size", chunk_size, hint="Use e.g. 65536 (64 KiB).")
        path = _local(path)
        with open(path, "rb", buffering=0) as f:
            left = limit if limit is not None else _file_size(Path(path))
            while left > 0:
                data = f.read(min(chunk_size, left))
                if not data:
                    return
                left -= len(data)
                yield data


def _requests_in_turn(store, path, chunk_size: int, limit: int | None) -> Iterator[bytes]:
    """``path`` (its first ``limit`` bytes) as ``store.read`` requests of ``chunk_size`` bytes,
    one after another: what a store without a faster way of streaming does."""
    chunk_size = check_positive("chunk size", chunk_size, hint="Use e.g. 1048576 (1 MiB).")
    total = store.size(path) if limit is None else min(limit, store.size(path))
    for offset in range(0, total, chunk_size):
        yield store.read(path, offset, min(chunk_size, total - offset))


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

    def __init__(self, preset: str | StoragePreset = "object-store", state_file=None,
                 inner=None):
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.inner = inner if inner is not None else LocalDisk()  # where the bytes come from
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
        over = "" if isinstance(self.inner, LocalDisk) else f" over {self.inner.name}"
        return f"simulated {self.preset.name}{over}"

    def __getstate__(self):
        return {"preset": self.preset, "state_file": self.state_file, "inner": self.inner}

    def __setstate__(self, state):
        self.preset = state["preset"]
        self.state_file = state["state_file"]
        self.inner = state.get("inner") or LocalDisk()
        self._fd = None
        self._fd_pid = None
        self._lock = threading.Lock()
        self._ends = {}

    def __repr__(self) -> str:
        p = self.preset
        return (f"SimulatedStore({p.name}: latency {p.latency * 1e3:g} ms, "
                f"{p.stream_bandwidth / MB:g} MB/s per stream, "
                f"{p.aggregate_bandwidth / MB:g} MB/s aggregate"
                f"{'' if isinstance(self.inner, LocalDisk) else ' over ' + self.inner.name}"
                " — simulated)")

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
        return self.inner.size(path)

    def read(self, path, offset: int, size: int) -> bytes:
        """One request: real bytes from the inner storage, delivered when the model says."""
        start = time.monotonic()
        data = self.inner.read(path, offset, size)
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
        return _requests_in_turn(self, path, chunk_size, limit)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if hasattr(self.inner, "close"):
            self.inner.close()


class FsspecStorage:
    """Any fsspec URL (or local path), read with one range request per :meth:`read`.

    Filesystems come from :func:`iokit.remote.filesystem` (``s3://`` on the configured
    endpoint with short timeouts). Counts ``requests`` and ``bytes_read``; safe to share
    between threads (each request is independent) and to send to worker processes.
    """

    simulated = False

    def __init__(self):
        self._lock = threading.Lock()
        self._files: dict[str, object] = {}  # URL -> open remote file (its size and ETag)
        self.requests = 0
        self.bytes_read = 0

    @property
    def name(self) -> str:
        from iokit.remote import endpoint_name

        return f"fsspec ({endpoint_name()})"

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()

    def __repr__(self) -> str:
        return f"FsspecStorage({self.requests:,} requests, {self.bytes_read:,} bytes read)"

    def _open(self, path):
        """(url, fs, fs path, open file or None): a remote file stays open, so its size and
        ETag are asked for once and every later range request must match that ETag."""
        from iokit.remote import filesystem, storage_error

        url = as_url(path)
        fs, fs_path = filesystem(url)
        with self._lock:
            f = self._files.get(url)
        if f is None and not _LOCAL_PROTOCOLS.intersection(_protocols(fs)):
            try:
                f = fs.open(fs_path, "rb", cache_type="none")
            except Exception as exc:  # noqa: BLE001 - every cause becomes the kit's error
                raise storage_error(url, exc) from None
            with self._lock:
                f = self._files.setdefault(url, f)
        return url, fs, fs_path, f

    def size(self, path) -> int:
        from iokit.remote import storage_error

        url, fs, fs_path, f = self._open(path)
        if f is not None:
            return int(f.size)
        try:
            return int(fs.size(fs_path))
        except Exception as exc:  # noqa: BLE001
            raise storage_error(url, exc) from None

    def read(self, path, offset: int, size: int) -> bytes:
        """One range request: ``size`` bytes at ``offset`` (fewer at the end of the object)."""
        from iokit.remote import storage_error

        if offset < 0 or size < 0:
            raise ParameterError(f"{path}: offset and size must be >= 0, got {offset}, {size}.")
        url, fs, fs_path, f = self._open(path)
        total = self.size(path)
        end = max(offset, min(offset + size, total))
        if end == offset:
            return b""
        try:
            if f is not None:  # the file's own range request (S3: If-Match its ETag)
                data = f._fetch_range(offset, end)
            else:
                data = fs.cat_file(fs_path, start=offset, end=end)
        except Exception as exc:  # noqa: BLE001
            raise storage_error(url, exc) from None
        if len(data) != end - offset:
            raise StorageError(
                f"{url}: asked for bytes {offset:,}:{end:,} of an object of {total:,} bytes, "
                f"got {len(data):,}: the object changed on the server while it was read; "
                "open it again (and upload it again if it was overwritten by mistake).")
        with self._lock:
            self.requests += 1
            self.bytes_read += len(data)
        return data

    def read_chunks(self, path, chunk_size: int, limit: int | None = None) -> Iterator[bytes]:
        """The object in range requests of ``chunk_size`` bytes, one after another."""
        return _requests_in_turn(self, path, chunk_size, limit)

    def forget(self, path=None) -> None:
        """Forget the size and ETag of ``path`` (or of every object): the next read sees the
        object as it is now."""
        with self._lock:
            if path is None:
                self._files.clear()
            else:
                self._files.pop(as_url(path), None)

    def close(self) -> None:
        self.forget()


_LOCAL_PROTOCOLS = {"file", "local", "memory"}


def _protocols(fs) -> set:
    proto = fs.protocol
    return set(proto) if isinstance(proto, (tuple, list)) else {proto}


def open_storage(name: str = "local", inner=None):
    """``"local"`` for the real disk, ``"fsspec"`` for any URL (:class:`FsspecStorage`), or a
    preset name for a simulated store over ``inner`` (the local disk by default)."""
    if name in ("local", "local-disk"):
        return LocalDisk()
    if name == "fsspec":
        return FsspecStorage()
    return SimulatedStore(name, inner=inner)


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
