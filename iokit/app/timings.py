"""How long each notebook takes: run it at a scale into a temporary copy, time it, and write
the times into the README's notebook table.

    python -m iokit.app.timings --scale small            # every notebook, slowest cells too
    python -m iokit.app.timings 04 06 --update-readme    # some notebooks; README's time column

Each notebook runs with ``jupyter nbconvert --execute`` on a copy in a temporary folder (the
committed notebook is only read), in the scale's ``IOKIT_SCALE``. The slowest cells come from
the execution times the notebook runner records in each cell's metadata.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from iokit.atomic import atomic_write
from iokit.corpus import resolve_scale
from iokit.errors import IokitError, ParameterError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
README = REPO / "README.md"


@dataclass
class NotebookTime:
    """One notebook's wall time, and its slowest cells as (cell index, seconds)."""

    name: str
    seconds: float
    cells: list[tuple[int, float]] = field(default_factory=list)
    error: str = ""

    def __str__(self) -> str:
        slow = ", ".join(f"cell {i} {s:.0f} s" for i, s in self.cells[:3])
        state = f"FAILED: {self.error}" if self.error else f"slowest: {slow}"
        return f"{self.name:<26} {self.seconds:7.1f} s  ({state})"


def _parse_time(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def cell_seconds(notebook: dict) -> list[tuple[int, float]]:
    """Each code cell's execution time from its metadata, slowest first."""
    out = []
    for i, cell in enumerate(notebook.get("cells", [])):
        meta = cell.get("metadata", {}).get("execution", {})
        start, end = meta.get("iopub.execute_input"), meta.get("shell.execute_reply")
        if start and end:
            out.append((i, (_parse_time(end) - _parse_time(start)).total_seconds()))
    return sorted(out, key=lambda c: -c[1])


def pick_notebooks(wanted=()) -> list[Path]:
    """The notebooks whose names start with one of ``wanted`` (all of them when empty)."""
    every = sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
    chosen = [p for p in every if not wanted or any(p.name.startswith(w) for w in wanted)]
    if not chosen:
        raise ParameterError(f"no notebook starts with {', '.join(wanted)}; there are: "
                             f"{', '.join(p.name for p in every)}.")
    return chosen


def time_notebook(path, scale: str, timeout_s: float = 3600) -> NotebookTime:
    """Execute a copy of the notebook at ``scale`` in a temporary folder; its wall time."""
    path = Path(path)
    env = {**os.environ, "IOKIT_SCALE": scale}
    with tempfile.TemporaryDirectory(prefix="iokit-timings-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copy2(path, copy)
        cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
               "--inplace", f"--ExecutePreprocessor.timeout={int(timeout_s)}", str(copy)]
        start = time.perf_counter()
        run = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        error = "" if run.returncode == 0 else (run.stderr.strip().splitlines() or ["?"])[-1]
        cells = cell_seconds(json.loads(copy.read_text(encoding="utf-8")))
    return NotebookTime(path.name, seconds, cells, error)


def minutes(seconds: float) -> str:
    """A notebook time as the README gives it: "<1 min", "~3 min"."""
    return "<1 min" if seconds < 45 else f"~{max(1, round(seconds / 60))} min"


def update_readme(times: list[NotebookTime], readme=README) -> int:
    """Write each time into the last column of its notebook's row; the rows changed."""
    text = Path(readme).read_text(encoding="utf-8")
    changed = 0
    for t in times:
        if t.error:
            continue
        row = re.compile(rf"^(\| \[[^\]]*\]\(notebooks/{re.escape(t.name)}\) \|.*\| )[^|]*( \|)$",
                         re.MULTILINE)
        text, n = row.subn(lambda m, t=t: m.group(1) + minutes(t.seconds) + m.group(2), text)
        changed += n
    with atomic_write(readme, "w", encoding="utf-8") as f:
        f.write(text)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iokit.app.timings",
        description="Run notebooks at a scale (on temporary copies) and print how long each "
        "takes, with its slowest cells; optionally write the times into README.md.")
    parser.add_argument("notebooks", nargs="*", help="name prefixes, e.g. 04 06 (default: all)")
    parser.add_argument("--scale", default="small", help="tiny, small or large (default: small)")
    parser.add_argument("--update-readme", action="store_true",
                        help="write the times into the README's notebook table")
    args = parser.parse_args(argv)
    try:
        scale = resolve_scale(args.scale)
        paths = pick_notebooks(args.notebooks)
    except IokitError as exc:
        print(f"iokit: error: {exc}", file=sys.stderr)
        return 2
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"scale {scale}, {os.cpu_count()} cores, load average {load:.2f} before the runs",
          flush=True)
    times = []
    for path in paths:
        t = time_notebook(path, scale)
        times.append(t)
        print(t, flush=True)
    total = sum(t.seconds for t in times)
    print(f"{'all':<26} {total:7.1f} s")
    if args.update_readme:
        print(f"README.md: {update_readme(times)} row(s) updated")
    return 1 if any(t.error for t in times) else 0


if __name__ == "__main__":
    sys.exit(main())
