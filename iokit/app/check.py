"""``iokit check``: is this machine ready for the kit? A few seconds, nothing measured.

Each line is one item (Python, each package and extra, cores, free disk against what the chosen
scale needs, a writable data folder, Chromium for the browser tests) marked ``ok``, ``warn``
(works, with less) or ``FAIL`` (the kit will not run), with what to do; the last line is the
verdict. Exit code 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from iokit.corpus import SCALES, default_data_dir, resolve_scale

MIN_PYTHON = (3, 10)
REQUIRED = ("numpy", "matplotlib", "ipywidgets", "jupyterlab", "zstandard", "nltk", "tqdm")
EXTRAS = {  # extra: (what it is for, the packages it installs)
    "bpe": ("byte-level BPE tokenizer (notebook 02)", ("tokenizers",)),
    "dask": ("the cluster engine and its dashboard (notebook 06)",
             ("dask", "distributed", "bokeh", "jupyter-server-proxy")),
    "s3": ("storage through fsspec and a loopback S3 server (notebook 01)",
           ("fsspec", "s3fs", "moto")),
    "profile": ("sampling profiles and CPU per process (notebook 08)", ("py-spy", "psutil")),
    "dev": ("make test", ("pytest", "nbval", "ruff", "hypothesis", "playwright")),
    "spacy": ("spaCy's rule-based tokenizer (notebook 02, --tokenizer spacy)", ("spacy",)),
    "spark": ("the Spark engine (notebook 06; it also needs Java 17+)", ("pyspark",)),
}
# After every notebook at `small`, data/ held about 14× the corpus (shards, compressed copies,
# parts, sweeps): ask for a little more than that.
DISK_FACTOR = 16
CHROMIUM = ("chromium", "chromium-browser")


@dataclass
class Item:
    """One line of the check."""

    name: str
    status: str  # "ok", "warn" or "FAIL"
    detail: str

    def __str__(self) -> str:
        return f"{self.status:<4}  {self.name:<22} {self.detail}"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _existing(path: Path) -> Path:
    """``path`` or its nearest parent that exists (the data folder may not be made yet)."""
    return next(p for p in [path, *path.parents] if p.exists())


def find_chromium() -> str | None:
    """The Chromium the browser tests would use: ``$IOKIT_CHROMIUM``, else the system's."""
    chosen = os.environ.get("IOKIT_CHROMIUM")
    for candidate in [chosen] if chosen else ["/usr/bin/chromium", *map(shutil.which, CHROMIUM)]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def check_python() -> Item:
    got = sys.version_info[:2]
    ok = got >= MIN_PYTHON
    return Item("Python", "ok" if ok else "FAIL", f"{sys.version.split()[0]}" + (
        "" if ok else f"; the kit needs {'.'.join(map(str, MIN_PYTHON))} or newer "
        "(make PYTHON=python3.11 lab)"))


def check_packages() -> list[Item]:
    items = []
    missing = [p for p in REQUIRED if _version(p) is None]
    items.append(Item("packages", "FAIL" if missing else "ok",
                      f"missing {', '.join(missing)}: run make lab (or pip install -e .)"
                      if missing else ", ".join(f"{p} {_version(p)}" for p in REQUIRED[:3])
                      + f" and {len(REQUIRED) - 3} more"))
    for extra, (purpose, packages) in EXTRAS.items():
        gone = [p for p in packages if _version(p) is None]
        items.append(Item(f"extra '{extra}'", "warn" if gone else "ok",
                          f"{purpose}: missing {', '.join(gone)}; pip install -e '.[{extra}]'"
                          if gone else purpose))
    return items


def check_cores() -> Item:
    cores = os.cpu_count() or 1
    return Item("cores", "ok" if cores >= 2 else "warn",
                f"{cores}" + ("" if cores >= 2 else "; parallel speedups need 2 or more"))


def check_disk(scale: str, data_dir: Path) -> Item:
    need = DISK_FACTOR * SCALES[scale]
    free = shutil.disk_usage(_existing(data_dir)).free
    ok = free >= need
    return Item("free disk", "ok" if ok else "FAIL",
                f"{free / 1e9:,.1f} GB free; scale {scale} needs about {need / 1e9:,.2f} GB"
                + ("" if ok else "; free some space, choose a smaller IOKIT_SCALE or point "
                   "IOKIT_DATA elsewhere"))


def check_data_folder(data_dir: Path) -> Item:
    where = _existing(data_dir)
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as exc:
        return Item("data folder", "FAIL", f"{data_dir} is not writable ({exc.strerror}); "
                    "set IOKIT_DATA to a folder you can write")
    return Item("data folder", "ok", f"{os.path.relpath(data_dir)} writable"
                + ("" if where == data_dir else " (made on first use)"))


def check_chromium() -> Item:
    path = find_chromium()
    return Item("Chromium", "ok" if path else "warn", path or "not found: the browser tests "
                "are skipped (apt-get install chromium, or set IOKIT_CHROMIUM)")


def run_check(scale: str | None = None, data_dir=None) -> list[Item]:
    """Every item of the check, in order."""
    scale = resolve_scale(scale)
    data_dir = Path(data_dir or default_data_dir())
    return [check_python(), *check_packages(), check_cores(), check_disk(scale, data_dir),
            check_data_folder(data_dir), check_chromium()]


def verdict(items: list[Item]) -> str:
    """One line: ready, ready with warnings, or not ready and why."""
    failed = [i.name for i in items if i.status == "FAIL"]
    warned = [i.name for i in items if i.status == "warn"]
    if failed:
        return f"not ready: fix {', '.join(failed)} (see above)"
    if warned:
        return f"ready, with less: {', '.join(warned)} (see above)"
    return "ready: every notebook, the command line and the tests will run"
