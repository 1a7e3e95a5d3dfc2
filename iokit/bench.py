"""Benchmarks: ratios measured side by side in one run, never absolute thresholds.

Each entry of :data:`FIGURES` is a function ``figure(corpus, workdir) -> list[Figure]``; the
techniques add theirs. ``iokit bench`` prints them all.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Figure:
    """One benchmark figure: what was compared, the measured value, and its unit."""

    name: str
    value: float
    unit: str
    note: str = ""

    def __str__(self) -> str:
        return f"{self.name:<60} {self.value:>10.3g} {self.unit:<10} {self.note}"


FIGURES: list[Callable[[Path, Path], list[Figure]]] = []


def run_bench(corpus, figures=None) -> list[Figure]:
    """Measure every figure on ``corpus`` in one run."""
    out: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="iokit-bench-") as tmp:
        for fn in figures or FIGURES:
            out.extend(fn(Path(corpus), Path(tmp)))
    return out
