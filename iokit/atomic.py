"""Atomic file writes: a file the kit writes is either complete or absent.

Every output goes through :func:`atomic_write`: the data is written to a temporary file in the
same folder, flushed and fsync'ed, then renamed over the final name. A crash, a full disk or a
Ctrl-C in the middle leaves the final name untouched and removes the temporary file.
"""

from __future__ import annotations

import errno
import os
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
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "the folder is not writable: choose a folder you can write to"
    elif exc.errno == errno.ENOENT:
        advice = "the folder does not exist: create it or choose another"
    elif exc.errno == errno.EISDIR:
        advice = "a folder has that name: choose a file name"
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


@contextmanager
def output_folder(path, what: str = "the output folder") -> Iterator[Path]:
    """:func:`make_folder` for the outputs written inside a ``with`` block: if the block fails
    and this call created the folder, the folder is removed again when it is still empty, so a
    failed first run leaves nothing behind."""
    path = Path(path)
    created = not path.exists()
    make_folder(path, what)
    try:
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
