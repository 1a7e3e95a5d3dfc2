"""The learner's machine: what it has, printed as the first cell of every notebook."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from importlib import metadata

from iokit.corpus import default_data_dir, resolve_scale

PACKAGES = ("numpy", "matplotlib", "ipywidgets", "zstandard", "nltk", "tqdm", "tokenizers",
            "dask")
OPTIONAL = {"tokenizers": "bpe", "dask": "dask"}


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS), or the
    architecture when the OS does not say."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                 capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            return out
    return platform.processor() or platform.machine() or "unknown"


def describe_machine(data_dir=None) -> dict:
    """Python, OS, cores, free disk, package versions and whether cold reads are possible."""
    data_dir = data_dir or default_data_dir()
    probe = next((p for p in [data_dir, *(data_dir.parents if data_dir else [])] if p.exists()),
                 None)
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "free_disk_gb": shutil.disk_usage(probe).free / 1e9 if probe else None,
        "cold_reads": hasattr(os, "posix_fadvise"),
        "scale": resolve_scale(),
        "data_dir": str(data_dir),
        "packages": versions,
    }


def _shown_path(path) -> str:
    """A path as the learner would type it: relative to the working folder when inside it."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith(".." + os.sep + "..") else str(path)


def setup_check(data_dir=None) -> dict:
    """Print the machine description and what to do about anything missing; return it."""
    info = describe_machine(data_dir)
    print(f"Python {info['python']} on {info['os']}, {info['cores']} cores")
    if info["free_disk_gb"] is not None:
        print(f"free disk where data goes: {info['free_disk_gb']:,.1f} GB "
              f"({_shown_path(info['data_dir'])})")
    print("cold reads (drop a file from the page cache):",
          "possible" if info["cold_reads"] else "not on this OS; every read will be warm")
    print(f"corpus scale: {info['scale']} (set IOKIT_SCALE=tiny|small|large to change)")
    for name, version in info["packages"].items():
        if version:
            print(f"  {name:<11} {version}")
        elif name in OPTIONAL:
            print(f"  {name:<11} not installed (optional: pip install -e '.[{OPTIONAL[name]}]')")
        else:
            print(f"  {name:<11} MISSING: run \"make lab\" (or pip install -e .) to install it")
    return info
