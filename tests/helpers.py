"""Helpers several test modules use (the kit itself does not need them)."""

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
