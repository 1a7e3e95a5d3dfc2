"""Progress bars for long work (tqdm), quiet where nobody is watching.

Bars show in a terminal or notebook; they are off when ``IOKIT_PROGRESS=0`` (tests and CI set
it), so headless runs print nothing that changes from run to run.
"""

from __future__ import annotations

import os


def progress_enabled() -> bool:
    """Whether progress bars should be shown (``IOKIT_PROGRESS`` is not ``0``)."""
    return os.environ.get("IOKIT_PROGRESS", "1") != "0"


def progress_bar(*, disable: bool = False, **kwargs):
    """A tqdm bar (notebook-aware), disabled when asked or when progress is turned off.

    tqdm is imported here, not at the top: worker processes import the kit without it."""
    from tqdm.auto import tqdm

    return tqdm(disable=disable or not progress_enabled(), **kwargs)
