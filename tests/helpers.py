"""Helpers several test modules use (the kit itself does not need them).

The small work functions are defined at the top level of a module, so worker processes of
every start method can import them by name.
"""

import json
import os
import signal
import time
from pathlib import Path

from iokit.atomic import TMP_MARK


def interrupt_at(monkeypatch, module, name: str, call: int) -> None:
    """Make ``module.name`` raise KeyboardInterrupt on its ``call``-th call: a Ctrl-C arriving
    in the middle of a run."""
    real = getattr(module, name)
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, interrupted)


def leftover_temp_files(folder) -> list[Path]:
    """Temporary files an interrupted write left in ``folder`` (there should be none)."""
    return sorted(p for p in Path(folder).iterdir() if TMP_MARK in p.name)


def square(x):
    """``x * x``: a stand-in for real work."""
    return x * x


def slow_square(seconds: float, x):
    """``x * x`` after sleeping ``seconds`` (work that waits, as I/O does)."""
    time.sleep(seconds)
    return x * x


def fail_on(bad, x):
    """``x * x``, but raise ValueError on ``bad`` (to see a worker's error reach the caller)."""
    if x == bad:
        raise ValueError(f"item {x!r} is bad")
    return x * x


def die_on(bad, x, *_):
    """``x * x``, but the worker process kills itself (SIGKILL) on ``bad`` (further arguments,
    as an engine passes them, are ignored)."""
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
    return x * x


def pid_of(x) -> int:
    """The id of the process that ran this item."""
    return os.getpid()


_started_pid = 0


def remember_pid_at_start():
    """A pool initializer: record this worker's process id (0 until it has run)."""
    global _started_pid
    _started_pid = os.getpid()


def started_pid(_item):
    """What :func:`remember_pid_at_start` recorded in this worker (0 if it never ran)."""
    return _started_pid


def failing_initializer():
    """A pool initializer that fails (as a model file that cannot be read would)."""
    raise ValueError("initializer failed")


def bad_corpus(tmp_path, bad_doc: int, n: int = 30):
    """A JSONL corpus of ``n`` short documents whose line ``bad_doc`` is broken JSON, and the
    byte offset of that line."""
    lines = [json.dumps({"text": f"document {i} is short."}) for i in range(n)]
    lines[bad_doc] = '{"text": "broken'
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    return corpus, sum(len(line) + 1 for line in lines[:bad_doc])
