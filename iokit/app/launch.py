"""What ``make lab`` runs: the learner's own copy of the notebooks, then JupyterLab on it.

The committed notebooks in ``notebooks/`` stay the reference (the tests compare against their
outputs). The first run copies them into ``my-notebooks/`` (ignored by git), the Chinese
edition into ``my-notebooks/zh/``; later runs copy
only notebooks that are new there, never over a learner's copy. JupyterLab then opens that
folder, with ``--allow-root`` when running as root (containers, cloud machines) and
``--no-browser`` when there is no display to open one on; it prints the address either way.

    python -m iokit.app.launch [--into my-notebooks] [--dry-run] [JupyterLab options...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "notebooks"
LEARNER_FOLDER = "my-notebooks"
# the notebooks, nbval's masks to check a copy, and the Chinese edition (in zh/)
COPIED = ("*.ipynb", "sanitize.cfg", "zh/*.ipynb")


def copy_notebooks(into, reference=REFERENCE) -> list[Path]:
    """Copy the reference notebooks into ``into`` (the Chinese ones into ``into/zh``), skipping
    every file already there; return the files copied (none on a second run)."""
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    copied = []
    for pattern in COPIED:
        for src in sorted(Path(reference).glob(pattern)):
            dst = into / src.relative_to(reference)
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
                copied.append(dst)
    return copied


def has_display() -> bool:
    """Whether a browser window can be opened here (macOS always; elsewhere X11 or Wayland)."""
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY")
                                            or os.environ.get("WAYLAND_DISPLAY"))


def lab_command(folder, extra=()) -> list[str]:
    """The JupyterLab command line for ``folder``: this Python's ``jupyter lab``, the flags this
    machine needs, then the caller's own options (which come last, so they win)."""
    cmd = [sys.executable, "-m", "jupyterlab", str(folder)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    if not has_display():
        cmd.append("--no-browser")
    return cmd + list(extra)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="make lab", description="Copy the notebooks into your own folder (once per "
        "notebook, never over your copy) and open JupyterLab on it. Other options go to "
        "JupyterLab, e.g. --port 9999.")
    parser.add_argument("--into", default=str(REPO / LEARNER_FOLDER),
                        help=f"your notebooks' folder (default: {LEARNER_FOLDER}/)")
    parser.add_argument("--dry-run", action="store_true",
                        help="copy, print the JupyterLab command, do not start it")
    args, extra = parser.parse_known_args(argv)
    copied = copy_notebooks(args.into)
    shown = os.path.relpath(args.into)
    if copied:
        print(f"copied {len(copied)} file(s) into {shown}/ (your copy: edit and run freely; "
              "notebooks/ keeps the reference)")
    print(f"opening JupyterLab on {shown}/; it prints the address to open (with its token)",
          flush=True)
    cmd = lab_command(args.into, extra)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    os.execv(cmd[0], cmd)  # JupyterLab takes this process's place: Ctrl-C stops it


if __name__ == "__main__":
    sys.exit(main())
