"""Atomic file writes: a file the kit writes is either complete or absent.

Every output goes through :func:`atomic_write`: the data is written to a temporary file in the
same folder, flushed and fsync'ed, then renamed over the final name. A crash, a full disk or a
Ctrl-C in the middle leaves the final name untouched and removes the temporary file.

Output folders are entered with :func:`output_folder`, which first checks that the place can be
written at all (:func:`check_writable`: a read-only mount, a folder without write permission,
a path through a file are said before any work starts) and then holds the folder's
single-writer lock (:func:`output_lock`) for the run: a second run into the same folder fails at
once, naming the process that holds it, instead of removing the first run's files.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from iokit.errors import StorageError

TMP_MARK = ".iokit-tmp-"


def temp_path_for(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed to ``path``."""
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def storage_error(exc: OSError, path: Path, doing: str) -> StorageError:
    """Turn an OSError into a StorageError that names the file and says what to do."""
    if exc.errno == errno.ENOSPC:
        advice = "the disk is full: free some space or write somewhere else"
    elif exc.errno == errno.EROFS:
        advice = "the folder is not writable (a read-only file system): choose a folder you " \
                 "can write to"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        advice = "the folder is not writable: choose a folder you can write to"
    elif exc.errno == errno.ENOENT:
        advice = "the folder does not exist: create it or choose another"
    elif exc.errno == errno.EISDIR:
        advice = "a folder has that name: choose a file name"
    elif exc.errno == errno.ENOTDIR:
        advice = "a file stands where a folder is needed on that path: choose another place"
    else:
        advice = exc.strerror or str(exc)
    return StorageError(f"{path}: cannot {doing}: {advice}.")


def make_folder(path, what: str = "the output folder") -> Path:
    """Create the folder ``path`` (and its parents) if needed and return it; an OSError
    becomes the kit's :class:`StorageError` naming the folder and saying what to do."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, path, f"create {what}") from None
    return path


def check_writable(path, what: str = "the output folder") -> Path:
    """Raise :class:`StorageError` now, before any work, unless files can be created in the
    folder ``path`` (or, if it does not exist yet, in the nearest folder above it that does):
    not writable, read-only, or a file in the way. Tries it (a probe file, removed at once),
    since permission bits alone do not say (root, read-only mounts, ``/proc``)."""
    path = Path(path)
    here = path
    while not here.exists() and here.parent != here:
        here = here.parent
    doing = f"write into {what}" if here == path else f"create {what}"
    if not here.is_dir():
        raise storage_error(OSError(errno.ENOTDIR, "Not a directory"), path, doing)
    try:
        _probe(here)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):  # the folder is there: it refuses files
            exc = OSError(errno.EACCES, "Permission denied")
        raise storage_error(exc, path, doing) from None
    return path


def _probe(folder: Path) -> None:
    """Create and remove a file in ``folder`` (OSError if the folder refuses it)."""
    probe = folder / f"{TMP_MARK}probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.unlink(probe)


LOCK_NAME = ".iokit-lock"
_held: dict[str, list] = {}  # lock path -> [fd, depth]: a process may nest its own lock
_held_guard = threading.Lock()


@contextmanager
def output_lock(folder, what: str = "the output folder") -> Iterator[Path]:
    """Hold the single-writer lock of ``folder`` (an existing folder) for a ``with`` block.

    The lock is ``flock`` on ``folder/.iokit-lock``, which holds the owner's process id; the
    system releases it when the process ends, however it ends. A second holder fails at once
    with a :class:`StorageError` naming that process. The same process may nest it (a writer
    calling another writer on its folder). The file is removed when the lock is released.
    """
    lock_path = Path(folder) / LOCK_NAME
    key = str(lock_path.resolve())
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            nested = True
        else:
            _held[key] = [_acquire(lock_path, what), 1]
            nested = False
    try:
        yield Path(folder)
    finally:
        with _held_guard:
            _held[key][1] -= 1
            if not _held[key][1]:
                fd = _held.pop(key)[0]
                if not nested:
                    lock_path.unlink(missing_ok=True)  # while holding it: see _acquire
                os.close(fd)


def _acquire(lock_path: Path, what: str) -> int:
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise storage_error(exc, lock_path.parent, f"lock {what}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StorageError(
                f"{lock_path.parent}: another iokit run (process {holder}) is writing into "
                f"{what} now; wait for it to finish, or choose another folder.") from None
        try:  # the previous holder may have removed the file just before we locked it
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd
        os.close(fd)


@contextmanager
def output_folder(path, what: str = "the output folder") -> Iterator[Path]:
    """:func:`make_folder` for the outputs written inside a ``with`` block, checked writable
    first and held under its single-writer lock (:func:`output_lock`): if the block fails
    and this call created the folder, the folder is removed again when it is still empty, so a
    failed first run leaves nothing behind."""
    path = Path(path)
    created = not path.exists()
    check_writable(path, what)
    make_folder(path, what)
    try:
        with output_lock(path, what):
            yield path
    except BaseException:
        if created and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        raise


@contextmanager
def atomic_write(path, mode: str = "wb", **open_kwargs):
    """Open ``path`` for writing so that it appears only once complete.

    Use as ``with atomic_write(p) as f: f.write(...)``. On any exception (including
    KeyboardInterrupt) the temporary file is removed and ``path`` is left as it was.
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write needs a write mode, got {mode!r}")
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        f = open(tmp, mode, **open_kwargs)
    except OSError as exc:
        raise storage_error(exc, path, "write") from None
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException as exc:
        f.close()
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise storage_error(exc, path, "write") from None
        raise


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)
