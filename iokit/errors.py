"""The kit's own error types.

Every problem a learner can fix (a missing file, a malformed line, a corrupt shard, a nonsense
parameter) is raised as an :class:`IokitError` whose message says *where* (file, line, offset,
shard, block) and *what to do*. The command line turns these into one line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


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


class WorkerDiedError(IokitError):
    """A worker process ended abruptly (killed, out of memory, crashed) while it had work."""


class LoaderError(IokitError):
    """A loader worker failed; the message names the worker and the batch."""


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
