"""The kit's own error types.

Every problem a learner can fix (a missing file, a malformed line, a corrupt shard, a nonsense
parameter) is raised as an :class:`IokitError` whose message says *where* (file, line, offset,
shard, block) and *what to do*. The command line turns these into one line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


class IokitError(Exception):
    """A problem with the input or the settings, explained for the person who can fix it."""


class CorpusError(IokitError):
    """The text corpus is missing, unreadable or malformed."""


class FormatError(IokitError):
    """A file the kit wrote (shard, index, vocabulary) is corrupt, truncated or mismatched."""


class StorageError(IokitError):
    """Reading or writing storage failed (permissions, full disk, missing folder)."""


class ParameterError(IokitError, ValueError):
    """A setting is out of range or unknown (chunk size, scale, preset, codec, ...)."""


class PositionError(ParameterError, IndexError):
    """A document or token position outside what a shard set holds (an IndexError too, so a
    shard set still behaves as a sequence)."""


class WorkerDiedError(IokitError):
    """A worker process ended abruptly (killed, out of memory, crashed) while it had work."""


class LoaderError(IokitError):
    """A loader worker failed; the message names the worker and the batch."""


class ResumeError(ParameterError):
    """A saved loader state that does not fit the loader restoring it (another shard set,
    another epoch plan) or is malformed; the message says what differs and what to do."""


class StopSignal(KeyboardInterrupt):
    """SIGTERM (what ``timeout``, Slurm and Kubernetes send to stop a job), raised where the
    program is, as Ctrl-C is: every clean-up that runs for an interrupt runs for it too."""


def read_kit_file(path, what: str, todo: str) -> bytes:
    """The bytes of a file the kit wrote (an index, a vocabulary); a missing or unreadable one
    is a :class:`FormatError` naming the file, what it should be and what to do."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise FormatError(f"{path}: no such {what}; {todo}.") from None
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the {what} ({exc.strerror}); check the path "
                          "and its permissions.") from None


def check_positive(name: str, value, *, hint: str = "") -> int:
    """Return ``value`` as an int if it is a whole number > 0, else raise ParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise ParameterError(f"{name} must be a whole number > 0, got {value!r}. {hint}".strip())
    if value <= 0:
        raise ParameterError(f"{name} must be > 0, got {value!r}. {hint}".strip())
    return int(value)


def check_choice(name: str, value: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ParameterError listing them."""
    if value not in choices:
        valid = ", ".join(sorted(choices))
        raise ParameterError(f"unknown {name} {value!r}; choose one of: {valid}.")
    return value


def available_memory() -> int | None:
    """Bytes this process may still allocate: the smaller of the machine's available memory
    (``MemAvailable`` in ``/proc/meminfo``, else free physical pages) and the address-space
    limit (``ulimit -v``); None when neither is known."""
    limits = []
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not limits:
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else None


def _size_text(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} bytes"


def check_size(name: str, value, *, item_bytes: float = 1, most: int | None = None,
               of: str = "", hint: str = "") -> int:
    """Return ``value`` as an int if it is a whole number > 0 that the data and the machine
    can take, else raise :class:`ParameterError` before anything is allocated.

    ``most`` is the largest value that makes sense for the data (``of`` says what it is, e.g.
    ``"the shards hold 1,000 tokens"``); ``value × item_bytes`` is the memory the value will
    cost, checked against :func:`available_memory`.
    """
    value = check_positive(name, value, hint=hint)
    if most is not None and value > most:
        raise ParameterError(f"{name} {value:,} is more than {of or f'the most, {most:,}'}; "
                             f"use at most {most:,}. {hint}".strip())
    need = value * item_bytes
    room = available_memory()
    if room is not None and need > room:
        raise ParameterError(
            f"{name} {value:,} needs {_size_text(need)} of memory, but this process can "
            f"allocate about {_size_text(room)}; use a smaller {name}. {hint}".strip())
    return value
